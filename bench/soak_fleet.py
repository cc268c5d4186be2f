"""Soak: `dockgate sim fleet` against a real `dockgate run` daemon, watching the daemon's memory.

Starts a private Mosquitto, the daemon (with one configured station per simulated station) and
the fleet simulator with faults on, samples the daemon's resident memory every few seconds, and
prints the first, last and peak figures and the growth over the second half of the run (a flat
line is what a healthy gateway shows). ``--json`` prints one JSON object.

Usage: .venv/bin/python bench/soak_fleet.py [--stations 20] [--vehicles 500] [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from dockgate.sim.services import free_port, wait_for_port
from dockgate.sim.services.mosquitto import Mosquitto


def daemon_config(workdir: Path, broker_port: int, api_port: int, stations: int) -> Path:
    lines = [
        "[site]",
        'name = "soak"',
        f'data_dir = "{workdir / "state"}"',
        "[mqtt]",
        f"port = {broker_port}",
        "[api]",
        f"port = {api_port}",
        "[logging]",
        'level = "WARNING"',
    ]
    for n in range(1, stations + 1):
        lat, lon = 45.455 + 0.001 * (n % 10), 9.18 + 0.002 * (n // 10)
        lines += [
            "[[stations]]",
            f"id = {n}",
            f'device_id = "ST{n:03d}"',
            f"lat = {lat}",
            f"lon = {lon}",
            "spots = 10",
        ]
    path = workdir / "dockgate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--vehicles", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--sample-every", type=float, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dockgate-soak-"))
    with Mosquitto() as broker:
        api_port = free_port()
        config = daemon_config(workdir, broker.port, api_port, args.stations)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dockgate.gateway.cli", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "daemon.log", "wb"),  # noqa: SIM115 - child owns it
        )
        fleet = None
        try:
            wait_for_port("127.0.0.1", api_port, timeout=30)
            fleet = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dockgate.gateway.cli",
                    "sim",
                    "fleet",
                    "--stations",
                    str(args.stations),
                    "--vehicles",
                    str(args.vehicles),
                    "--broker",
                    f"127.0.0.1:{broker.port}",
                    "--faults",
                    "all",
                    "--duration",
                    str(args.seconds),
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            process = psutil.Process(daemon.pid)
            samples: list[tuple[float, float]] = []
            started = time.monotonic()
            while fleet.poll() is None:
                if daemon.poll() is not None:
                    raise SystemExit(f"daemon died: see {workdir / 'daemon.log'}")
                samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))
                time.sleep(args.sample_every)
            fleet_out = fleet.stdout.read().decode() if fleet.stdout else ""
            alive = daemon.poll() is None
        finally:
            for proc in (fleet, daemon):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(15)
    half = [mb for t, mb in samples if t >= args.seconds / 2] or [samples[-1][1]]
    result = {
        "stations": args.stations,
        "vehicles": args.vehicles,
        "seconds": args.seconds,
        "daemon_alive_at_end": alive,
        "daemon_exit_code": daemon.returncode,
        "rss_first_mb": round(samples[0][1], 1),
        "rss_last_mb": round(samples[-1][1], 1),
        "rss_peak_mb": round(max(mb for _, mb in samples), 1),
        "rss_growth_second_half_mb": round(half[-1] - half[0], 1),
        "samples": len(samples),
        "fleet": json.loads(fleet_out.strip().splitlines()[-1]) if fleet_out.strip() else None,
    }
    if args.json:
        print(json.dumps(result))
        return
    what = f"{args.stations} stations, {args.vehicles} vehicles, {args.seconds:.0f} s"
    print(f"soak: {what}, faults on")
    for key in ("rss_first_mb", "rss_last_mb", "rss_peak_mb", "rss_growth_second_half_mb"):
        print(f"  {key:28} {result[key]:8}")
    print(f"  daemon alive at the end       {alive}; SIGTERM exit code {daemon.returncode}")
    print(f"  fleet summary                 {json.dumps(result['fleet'])}")


if __name__ == "__main__":
    main()
