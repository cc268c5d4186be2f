"""The daemon writes what the devices report to a real VictoriaMetrics through its sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dockgate.sim.device_base import Broker
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.services.victoria import VictoriaMetrics
from dockgate.sim.station import StationSim
from tests.support.system_harness import DaemonProcess, StationConf, until


async def test_vehicle_and_station_telemetry_reach_the_time_series_server(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    daemon = DaemonProcess(
        tmp_path,
        mosquitto.port,
        stations=[StationConf(1, "ST001", 45.4642, 9.19, spots=4)],
        extra={"telemetry": {"enabled": True, "url": victoria.url}},
    )
    daemon.start()
    broker = Broker("127.0.0.1", mosquitto.port)
    try:
        async with (
            StationSim("ST001", broker, spots=4) as station,
            ScooterSim("SXB00077", broker, start=(45.4642, 9.19), battery=71) as scooter,
        ):
            scooter.report_now()
            station.dock(1, "SXB00042")
            vehicle = await asyncio.to_thread(
                victoria.export, 'vehicle_battery{vehicle="SXB00077"}', wait=15
            )
            assert vehicle[0]["values"][-1] == 71
            assert vehicle[0]["metric"]["network"] == "1"

            async def free_spots() -> list[float]:
                series = await asyncio.to_thread(
                    victoria.export, 'station_spots_free{station="ST001"}', wait=15
                )
                return series[0]["values"]

            for _ in range(50):  # the status after the dock: 3 of 4 spots free
                if 3 in await free_spots():
                    break
                await asyncio.sleep(0.2)
            assert 3 in await free_spots()
            health = await until(
                lambda: (h := daemon.health())["telemetry"]["written"] >= 2 and h,
                what="sink counters in /health",
            )
            assert health["telemetry"]["dropped"] == 0
            assert {p["name"] for p in health["parts"]} >= {"telemetry", "mqtt", "api"}
    finally:
        daemon.close()
