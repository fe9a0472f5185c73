"""Debian's Chromium, headless, driven through its chromedriver with selenium: a real browser for the tests.

Nothing is downloaded: selenium is given both binaries (its driver manager stays off), and Chromium runs with
a fresh profile and with its background networking, updates and sync turned off.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000")


def binaries() -> tuple[str, str]:
    """Chromium and chromedriver, or a skip saying how to install them (`make browser` does, as root)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Chromium not installed: sudo apt-get install chromium chromium-driver (or make browser as root)")
    return chromium, driver


@contextmanager
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless Chromium session that records the page's console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = binaries()
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium's driver manager must not look anything up
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in FLAGS + (f"--user-data-dir={profile}",):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver: Any, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")


def console_errors(driver: Any) -> list[str]:
    """Console errors and uncaught exceptions since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def fetched_urls(driver: Any) -> list[str]:
    """Every resource the page requested beyond itself (data: URIs are not requests)."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
