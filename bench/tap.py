"""Taps per second and latency from "tag presented" to "verified tap event", per driver.

For every driver the figures are split into the reader stack (detection by the stack, APDU
round trips) and the gateway's own time (tag data read -> verified tap: hand-off to the event
loop, SUN verification with a replay store, duplicate folding). The same-run baseline is the
simulated tag read in-process (no reader stack) and verified by the same TapHandler.

    .venv/bin/python bench/tap.py               # table
    .venv/bin/python bench/tap.py --json        # one JSON object with the same figures
    .venv/bin/python bench/tap.py --taps 4 --gateway-taps 2000

Other drivers plug in as modules next to this file (``tap_nfcpy.py``, ``tap_pn532.py``) that
expose ``measure(taps: int) -> dict`` returning the keys of :func:`summarize`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

from dockgate.drivers.readers.ndef_type4 import read_ndef_url
from dockgate.gateway.readers import TapEvent
from dockgate.gateway.sun import ReplayStore, SunSettings, SunVerifier
from dockgate.gateway.taps import Tap, TapHandler
from dockgate.sim.ntag424 import card

META = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
FILE = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
OTHER_DRIVERS = ("tap_nfcpy", "tap_pn532")


def make_handler(workdir: Path) -> TapHandler:
    """The gateway side every driver is measured with: verifier, replay store, dedup."""
    settings = SunSettings.model_validate(
        {"key_sets": {"default": {"meta_read_key": META.hex(), "file_read_key": FILE.hex()}}}
    )
    return TapHandler(SunVerifier(settings, ReplayStore(workdir / "replay.db")))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(driver: str, rows: list[tuple[float, Tap]], elapsed: float) -> dict[str, object]:
    """Figures for one driver from (tag presented at, verified tap) pairs (monotonic s)."""
    ev = [t.event for _, t in rows]
    per_apdu = [e.stack_seconds / e.apdus * 1e3 for e in ev if e.apdus]
    gateway = [t.gateway_seconds * 1e3 for _, t in rows]
    total = [(t.verified_at - start) * 1e3 for start, t in rows]
    return {
        "driver": driver,
        "taps": len(rows),
        "accepted": sum(t.accepted for _, t in rows),
        "taps_per_s": len(rows) / elapsed if elapsed > 0 else 0.0,
        "total_ms_p50": statistics.median(total) if total else float("nan"),
        "detect_ms_p50": statistics.median([(t.event.presented_at - s) * 1e3 for s, t in rows])
        if rows
        else float("nan"),
        "stack_ms_per_tap_p50": statistics.median([e.stack_seconds * 1e3 for e in ev])
        if ev
        else float("nan"),
        "apdus_per_tap": statistics.mean([e.apdus for e in ev]) if ev else 0.0,
        "stack_ms_per_apdu_p50": _pct(per_apdu, 0.5),
        "stack_ms_per_apdu_p99": _pct(per_apdu, 0.99),
        "gateway_ms_p50": _pct(gateway, 0.5),
        "gateway_ms_p99": _pct(gateway, 0.99),
    }


def print_driver(title: str, figures: dict, baseline_note: str) -> None:
    """One driver's figures, for the driver benchmarks run on their own."""
    print(title)
    print(f"  driver taps/s               {figures['taps_per_s']:>7.1f}")
    baseline = figures["baseline_reads_per_s"]
    print(f"  baseline reads/s            {baseline:>7.1f}  ({baseline_note})")
    print(f"  presented -> verified p50 ms {figures['total_ms_p50']:>7.3f}")
    print(
        f"  reader stack per tap p50 ms {figures['stack_ms_per_tap_p50']:>7.3f}  "
        f"({figures['apdus_per_tap']:.0f} APDUs, p50 {figures['stack_ms_per_apdu_p50']:.3f} / "
        f"p99 {figures['stack_ms_per_apdu_p99']:.3f} ms each)"
    )
    print(
        f"  gateway p50 / p99 ms        {figures['gateway_ms_p50']:>7.3f} / "
        f"{figures['gateway_ms_p99']:.3f}"
    )


def measure_direct(taps: int) -> dict[str, object]:
    """Baseline: the simulated tag read in-process, verified by the same handler."""
    with tempfile.TemporaryDirectory() as tmp:
        handler = make_handler(Path(tmp))
        tag = card(meta_read_key=META, file_read_key=FILE)
        rows = []
        start_all = time.monotonic()
        for _ in range(taps):
            start = time.monotonic()
            tag.reset()
            read = read_ndef_url(tag.transceive)
            done = time.monotonic()
            event = TapEvent(
                "direct",
                tag.uid,
                read.url,
                start,
                done,
                time.time(),
                read.stack_seconds,
                read.apdus,
                read.error,
            )
            rows.append((start, handler.handle(event)))
            handler._recent.clear()  # every read is a new physical tap, not a re-read
        return summarize("sim-direct (baseline)", rows, time.monotonic() - start_all)


async def _measure_pcsc(taps: int) -> dict[str, object]:
    from dockgate.drivers.readers.pcsc import PcscDriver
    from dockgate.sim.services.pcscd import ensure_pcscd
    from dockgate.sim.transports import VpcdCard

    service = ensure_pcscd()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            handler = make_handler(Path(tmp))
            tag = card(meta_read_key=META, file_read_key=FILE)
            vpcd = VpcdCard(tag, port=service.port)
            rows = []
            async with PcscDriver([service.readers[0]]) as driver:
                stream = driver.taps()
                start_all = time.monotonic()
                for _ in range(taps):
                    start = time.monotonic()
                    vpcd.insert()
                    event = await asyncio.wait_for(anext(stream), 10)
                    rows.append((start, handler.handle(event)))
                    vpcd.remove()
                    await asyncio.sleep(0.5)  # let pcscd's poll see the removal
                elapsed = time.monotonic() - start_all
            return summarize("pcsc (pcscd+vpcd)", rows, elapsed)
    finally:
        service.stop()


def measure_pcsc(taps: int) -> dict[str, object]:
    """Through the real pcscd: the stack's card detection is pcscd's ~0.44 s poll of vpcd."""
    return asyncio.run(_measure_pcsc(taps))


def measure_gateway(taps: int) -> dict[str, object]:
    """The gateway's own time alone, on many pre-read events (p99 needs many samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        handler = make_handler(Path(tmp))
        tag = card(meta_read_key=META, file_read_key=FILE)
        urls = [tag.source.next_url() for _ in range(taps)]
        times = []
        for i, url in enumerate(urls):
            event = TapEvent("r", tag.uid, url, float(i * 10), float(i * 10), 0.0)
            start = time.perf_counter()
            handler.handle(event)
            times.append((time.perf_counter() - start) * 1e3)
        return {
            "taps": taps,
            "gateway_ms_p50": _pct(times, 0.5),
            "gateway_ms_p99": _pct(times, 0.99),
            "taps_per_s": taps / (sum(times) / 1e3),
        }


def _other(module: str, taps: int) -> dict[str, object]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        return importlib.import_module(module).measure(taps)
    except ModuleNotFoundError as exc:
        return {"driver": module, "error": f"not available: {exc}"}
    except Exception as exc:
        return {
            "driver": module,
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(limit=3),
        }


COLUMNS = [
    ("driver", "{}"),
    ("taps", "{}"),
    ("taps_per_s", "{:.1f}"),
    ("total_ms_p50", "{:.1f}"),
    ("detect_ms_p50", "{:.1f}"),
    ("stack_ms_per_tap_p50", "{:.2f}"),
    ("apdus_per_tap", "{:.0f}"),
    ("stack_ms_per_apdu_p50", "{:.3f}"),
    ("stack_ms_per_apdu_p99", "{:.3f}"),
    ("gateway_ms_p50", "{:.3f}"),
    ("gateway_ms_p99", "{:.3f}"),
]


def _table(rows: list[dict[str, object]]) -> str:
    head = [c for c, _ in COLUMNS]
    lines = [head]
    for row in rows:
        if "error" in row:
            lines.append([str(row.get("driver")), f"ERROR {row['error']}"])
            continue
        lines.append([fmt.format(row.get(c, float("nan"))) for c, fmt in COLUMNS])
    full = [r for r in lines if len(r) == len(head)]
    widths = [max(len(r[i]) for r in full) for i in range(len(head))]
    return "\n".join(
        "  ".join(v.rjust(widths[i]) if len(r) == len(head) else v for i, v in enumerate(r))
        for r in lines
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=4, help="taps per reader-stack driver")
    parser.add_argument("--direct-taps", type=int, default=500)
    parser.add_argument("--gateway-taps", type=int, default=2000)
    parser.add_argument("--drivers", default="pcsc," + ",".join(OTHER_DRIVERS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wanted = [d for d in args.drivers.split(",") if d]
    rows = [measure_direct(args.direct_taps)]
    for name in wanted:
        if name == "pcsc":
            rows.append(measure_pcsc(args.taps))
        else:
            rows.append(_other(name if name.startswith("tap_") else f"tap_{name}", args.taps))
    gateway = measure_gateway(args.gateway_taps)
    if args.json:
        print(json.dumps({"drivers": rows, "gateway_only": gateway}))
        return
    print(_table(rows))
    print(
        f"\ngateway only ({gateway['taps']} pre-read taps, verify + replay store + dedup): "
        f"p50 {gateway['gateway_ms_p50']:.3f} ms, p99 {gateway['gateway_ms_p99']:.3f} ms, "
        f"{gateway['taps_per_s']:.0f} taps/s"
    )
    print(
        "targets: gateway p99 < 2 ms; pcsc stack per APDU < 1 ms. "
        "detect = stack noticing the tag (pcscd polls vpcd every ~0.44 s)."
    )


if __name__ == "__main__":
    main()
