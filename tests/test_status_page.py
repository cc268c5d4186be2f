"""The site status page in a real headless Chromium: it draws the site and follows vehicles."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dockgate.api import TokenRegistry
from dockgate.api.status import status_router
from dockgate.sim.services import free_port, wait_for_port
from tests.support.api import READ_TOKEN
from tests.support.browser import headless_chromium

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

SITE = {
    "site": {"name": "Test site", "bundle_version": "v7"},
    "map": {
        "border": [[[9.18, 45.46], [9.20, 45.46], [9.20, 45.47], [9.18, 45.47], [9.18, 45.46]]],
        "speed_zones": [
            {
                "id": "zone-1",
                "name": "Market",
                "max_speed": 10,
                "polygon": [[9.185, 45.463], [9.19, 45.463], [9.19, 45.466], [9.185, 45.463]],
            }
        ],
        "parkings": [],
        "stations": [
            {
                "id": "st-1",
                "name": "Central",
                "lat": 45.465,
                "lon": 9.19,
                "spots_total": 4,
                "spots_free": 1,
            }
        ],
    },
    "alerts": [
        {
            "type": "vehicle-out-of-network-area",
            "severity": "high",
            "vehicle_id": "sc-2",
            "created_at": 1.0,
        }
    ],
    "readers": [{"reader": "Virtual PCD 00 00", "state": "up", "taps": 3, "errors": 0}],
    "taps": [
        {
            "at": 1.0,
            "reader": "Virtual PCD 00 00",
            "uid": "04de5f1eacc040",
            "valid": False,
            "reason": "replayed",
        }
    ],
    "parts": [{"name": "mqtt", "state": "running", "restarts": 0}],
}


class MovingFleet:
    """A snapshot provider whose one scooter moves east when asked."""

    def __init__(self) -> None:
        self.lon = 9.182

    async def __call__(self) -> dict:
        vehicle = {"id": "sc-1", "lat": 45.462, "lon": self.lon, "battery": 80, "locked": False}
        return {**SITE, "vehicles": [vehicle]}


def test_status_page_shows_the_site_and_follows_a_moving_vehicle() -> None:
    fleet = MovingFleet()
    app = FastAPI()
    app.include_router(status_router(fleet))
    app.state.tokens = TokenRegistry.from_mapping({READ_TOKEN: ["read"]})  # the page needs one
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port)
        with headless_chromium() as browser:
            browser.get(f"http://127.0.0.1:{port}/status?private_token={READ_TOKEN}")
            wait = WebDriverWait(browser, 10)
            vehicle = wait.until(
                lambda b: b.find_element(By.CSS_SELECTOR, 'g[data-kind="vehicle"] circle')
            )
            assert browser.find_elements(By.CSS_SELECTOR, 'path[data-kind="border"]')
            assert browser.find_elements(By.CSS_SELECTOR, 'g[data-kind="speed-zone"]')
            assert browser.find_elements(By.CSS_SELECTOR, 'g[data-kind="station"]')
            assert "vehicle-out-of-network-area" in browser.find_element(By.ID, "alerts").text
            assert "replayed" in browser.find_element(By.ID, "taps").text
            x_before = float(vehicle.get_attribute("cx"))

            fleet.lon = 9.198
            wait.until(
                lambda b: (
                    float(
                        b.find_element(
                            By.CSS_SELECTOR, 'g[data-kind="vehicle"] circle'
                        ).get_attribute("cx")
                    )
                    > x_before + 100
                )
            )
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "status-page.png"))
    finally:
        server.should_exit = True
        thread.join(timeout=5)
