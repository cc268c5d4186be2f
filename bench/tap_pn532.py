"""Taps through the PN532 driver over a real socat pty, beside a bare blocking read loop.

Each tap: the simulated PN532 gets a fresh NTAG 424 DNA card on its antenna, the driver
lists it, reads its NDEF file with InDataExchange and emits a TapEvent; ``dockgate.gateway.taps``
verifies it with the real SUN verifier. Latency runs from "tag presented" to the verified tap;
the reader-stack time (frame round trips) and the gateway's own time are shown apart.
The baseline is the same read done by one blocking loop on a Pn532Link (no thread, no
event loop, no verification): the floor the line and the simulator allow.

    .venv/bin/python bench/tap_pn532.py --taps 50
    .venv/bin/python bench/tap_pn532.py --taps 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import serial
from tap import print_driver, summarize

from dockgate.drivers.readers import ndef_type4
from dockgate.drivers.readers import pn532_frames as pf
from dockgate.drivers.readers.pn532 import Pn532Link, Pn532Reader
from dockgate.gateway.sun import KeySetSettings, ReplayStore, SunSettings, SunVerifier
from dockgate.gateway.taps import Tap, TapHandler
from dockgate.sim.ntag424 import card
from dockgate.sim.services.socat import SocatPty
from dockgate.sim.transports.pn532_serial import Pn532Simulator

META = bytes.fromhex("00112233445566778899aabbccddeeff")
FILE = bytes.fromhex("ffeeddccbbaa99887766554433221100")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _baseline(pty: SocatPty, sim: Pn532Simulator, taps: int) -> float:
    """Reads per second with a bare blocking loop on the same line and simulator."""
    tag = card(meta_read_key=META, file_read_key=FILE)
    port = serial.Serial(str(pty.host_path), 115200, timeout=0)
    try:
        link = Pn532Link(port)
        link.wake()
        link.command(pf.CMD_SAM_CONFIGURATION, b"\x01\x14\x01")
        started = time.perf_counter()
        for _ in range(taps):
            sim.present(tag)
            link.command(pf.CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")
            read = ndef_type4.read_ndef_url(
                lambda apdu: link.command(pf.CMD_IN_DATA_EXCHANGE, b"\x01" + apdu)[1:]
            )
            assert read.url is not None, read
            link.command(pf.CMD_IN_RELEASE, b"\x01")
            sim.remove()
        return taps / (time.perf_counter() - started)
    finally:
        port.close()


async def _driver_run(pty: SocatPty, sim: Pn532Simulator, taps: int, db: Path) -> dict:
    settings = SunSettings(
        key_sets={"default": KeySetSettings(meta_read_key=META, file_read_key=FILE)}
    )
    store = ReplayStore(db)
    handler = TapHandler(SunVerifier(settings, store), window=0.0)
    tag = card(meta_read_key=META, file_read_key=FILE)
    rows: list[tuple[float, Tap]] = []
    try:
        async with Pn532Reader(str(pty.host_path)) as reader:
            events = aiter(reader.taps())
            started = time.perf_counter()
            for _ in range(taps):
                await asyncio.to_thread(sim.awaiting_tag.wait, 5)
                presented = sim.present(tag)
                event = await asyncio.wait_for(anext(events), 10)
                verdict = handler.handle(event)
                if not verdict.accepted:
                    raise RuntimeError(f"tap rejected: {verdict.reason}")
                rows.append((presented, verdict))
                sim.remove()
            elapsed = time.perf_counter() - started
    finally:
        store.close()
    return summarize("pn532", rows, elapsed)


def measure(taps: int = 50) -> dict:
    """Driver figures plus ``baseline_reads_per_s``; starts and stops its own socat."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-pn532-"))
    with SocatPty(tmp / "socat") as pty, Pn532Simulator(pty.device_path) as sim:
        baseline = _baseline(pty, sim, taps)
        figures = asyncio.run(_driver_run(pty, sim, taps, tmp / "replay.db"))
    shutil.rmtree(tmp, ignore_errors=True)
    figures["baseline_reads_per_s"] = round(baseline, 1)
    figures["driver"] = "pn532"
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taps", type=int, default=50)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    figures = measure(args.taps)
    if args.json:
        print(json.dumps(figures))
        return
    title = f"PN532 over a socat pty, {figures['taps']} taps (NTAG 424 DNA card, SUN verified)"
    print_driver(title, figures, "bare blocking loop")


if __name__ == "__main__":
    main()
