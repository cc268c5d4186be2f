"""Headless Debian Chromium driven by Selenium, for tests of the pages the gateway serves."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Debian's ``chromium`` and ``chromium-driver`` packages (scripts/setup.sh), found on PATH.
CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"


def _installed(program: str) -> str:
    """The program's full path on PATH, or a pointer to the set-up script."""
    found = shutil.which(program)
    if found is None:
        raise RuntimeError(f"{program} is not on PATH: run scripts/setup.sh")
    return found


@contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with no network chatter (this machine's network is closed)."""
    chromium, chromedriver = _installed(CHROMIUM), _installed(CHROMEDRIVER)
    profile = tempfile.mkdtemp(prefix="dockgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
