"""Taps through the nfcpy driver on nfcpy's ``udp:`` radio link, beside nfcpy's own NDEF read.

Each tap: the simulated NTAG 424 DNA card comes onto the UDP "antenna", the driver senses
it, activates it with nfcpy's tag code, reads its NDEF file over ISO-DEP and emits a TapEvent;
``dockgate.gateway.taps`` verifies it with the real SUN verifier. Latency runs from "tag
presented" to
the verified tap; the reader-stack time (APDU round trips) and the gateway's own time are
shown apart. The baseline is nfcpy's own loop (sense, activate, ``tag.ndef``) with no thread,
no event loop and no verification.

    .venv/bin/python bench/tap_nfcpy.py --taps 50
    .venv/bin/python bench/tap_nfcpy.py --taps 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from tap import print_driver, summarize

from dockgate.drivers.readers.nfcpy_reader import NfcpyReader
from dockgate.gateway.sun import KeySetSettings, ReplayStore, SunSettings, SunVerifier
from dockgate.gateway.taps import Tap, TapHandler
from dockgate.sim.ntag424 import card
from dockgate.sim.transports.nfcpy_udp import NfcpyUdpTag

META = bytes.fromhex("00112233445566778899aabbccddeeff")
FILE = bytes.fromhex("ffeeddccbbaa99887766554433221100")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _baseline(radio: NfcpyUdpTag, taps: int) -> float:
    """Reads per second with nfcpy's own sense / activate / NDEF loop on the same radio."""
    import nfc
    import nfc.clf

    tag = card(meta_read_key=META, file_read_key=FILE)
    clf = nfc.ContactlessFrontend(radio.path)
    try:
        started = time.perf_counter()
        for _ in range(taps):
            radio.present(tag)
            found = nfc.tag.activate(clf, clf.sense(nfc.clf.RemoteTarget("106A")))
            assert found is not None and found.ndef is not None and found.ndef.records
            radio.remove()
        return taps / (time.perf_counter() - started)
    finally:
        clf.close()


async def _driver_run(radio: NfcpyUdpTag, taps: int, db: Path) -> dict:
    settings = SunSettings(
        key_sets={"default": KeySetSettings(meta_read_key=META, file_read_key=FILE)}
    )
    store = ReplayStore(db)
    handler = TapHandler(SunVerifier(settings, store), window=0.0)
    tag = card(meta_read_key=META, file_read_key=FILE)
    rows: list[tuple[float, Tap]] = []
    try:
        async with NfcpyReader(radio.path) as reader:
            events = aiter(reader.taps())
            started = time.perf_counter()
            for _ in range(taps):
                while not radio.awaiting_tag:
                    await asyncio.sleep(0.001)
                presented = radio.present(tag)
                event = await asyncio.wait_for(anext(events), 10)
                verdict = handler.handle(event)
                if not verdict.accepted:
                    raise RuntimeError(f"tap rejected: {verdict.reason}")
                rows.append((presented, verdict))
                radio.remove()
            elapsed = time.perf_counter() - started
    finally:
        store.close()
    return summarize("nfcpy", rows, elapsed)


def measure(taps: int = 50) -> dict:
    """Driver figures plus ``baseline_reads_per_s``; starts and stops its own UDP radio."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-nfcpy-"))
    with NfcpyUdpTag() as radio:
        baseline = _baseline(radio, taps)
        figures = asyncio.run(_driver_run(radio, taps, tmp / "replay.db"))
    shutil.rmtree(tmp, ignore_errors=True)
    figures["baseline_reads_per_s"] = round(baseline, 1)
    figures["driver"] = "nfcpy"
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
    title = f"nfcpy on udp:, {figures['taps']} taps (NTAG 424 DNA card, SUN verified)"
    print_driver(title, figures, "nfcpy's own NDEF loop")


if __name__ == "__main__":
    main()
