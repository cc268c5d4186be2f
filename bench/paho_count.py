"""The raw paho baseline as its own process: resume a persistent session, count ``--count``
QoS 1 messages in the plain callback, exit 0 (1 if they did not all come within ``--wait``).

bench/ingest.py times it from spawn to exit, the starting line ``dockgate run`` and
``mosquitto_sub`` are timed from: interpreter start and paho's import are in the window.

    .venv/bin/python bench/paho_count.py --port 1883 --cid ingest-p0 --count 30000
"""

from __future__ import annotations

import argparse
import sys
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cid", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--wait", type=float, default=300.0)
    args = parser.parse_args()
    count = 0
    done = threading.Event()

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count >= args.count:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=args.cid, protocol=paho.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 65535
    client.connect("127.0.0.1", args.port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(args.wait)
    client.disconnect()
    client.loop_stop()
    return 0 if count >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
