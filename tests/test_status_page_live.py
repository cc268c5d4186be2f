"""The status page of a real `dockgate run` with the simulated fleet, in headless Chromium."""

from __future__ import annotations

import asyncio
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dockgate.sim.device_base import Broker
from dockgate.sim.scooter import ScooterSim
from dockgate.sim.services.mosquitto import Mosquitto
from dockgate.sim.station import StationSim
from tests.support.browser import headless_chromium
from tests.support.system_harness import TOKEN, DaemonProcess, StationConf

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
VEHICLE = 'g[data-kind="vehicle"][data-id="SXB00001"] circle'


async def test_status_page_shows_the_fleet_and_follows_a_vehicle(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    daemon = DaemonProcess(
        tmp_path, mosquitto.port, stations=[StationConf(1, "ST001", 45.4642, 9.19, spots=4)]
    )
    daemon.start()
    broker = Broker("127.0.0.1", mosquitto.port)
    try:
        async with (
            StationSim("ST001", broker, spots=4) as station,
            ScooterSim("SXB00001", broker, start=(45.4642, 9.1890), battery=64) as scooter,
        ):
            scooter.report_now()
            station.dock(3, "SXB00002")
            with headless_chromium() as browser:
                browser.get(f"http://127.0.0.1:{daemon.api_port}/status?private_token={TOKEN}")
                wait = WebDriverWait(browser, 15)

                def vehicle_x(b) -> float | None:
                    found = b.find_elements(By.CSS_SELECTOR, VEHICLE)
                    return float(found[0].get_attribute("cx")) if found else None

                await asyncio.to_thread(wait.until, vehicle_x)
                x_before = vehicle_x(browser)
                assert browser.find_elements(By.CSS_SELECTOR, 'path[data-kind="border"]')
                assert browser.find_elements(By.CSS_SELECTOR, 'g[data-kind="speed-zone"]')
                station_label = browser.find_element(By.CSS_SELECTOR, 'g[data-kind="station"]')
                assert "ST001" in station_label.text or "(3/4)" in station_label.text
                parts = browser.find_element(By.ID, "parts").text
                assert "mqtt" in parts and "running" in parts

                scooter.push(east_m=800)
                scooter.report_now()
                await asyncio.to_thread(
                    wait.until, lambda b: (vehicle_x(b) or 0) > (x_before or 0) + 20
                )
                # pushed while locked: the rules engine's alert names the vehicle by serial
                await asyncio.to_thread(
                    wait.until,
                    lambda b: "vehicle-illegal-moving" in b.find_element(By.ID, "alerts").text,
                )
                assert "SXB00001" in browser.find_element(By.ID, "alerts").text
                ARTIFACTS.mkdir(exist_ok=True)
                browser.save_screenshot(str(ARTIFACTS / "status-page-live.png"))
    finally:
        daemon.close()
