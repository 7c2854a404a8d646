"""A real browser for the tests: Debian's headless Chromium driven by Selenium through Debian's
chromium-driver (``make test`` installs both when missing: deploy/test_tools.py).

The paths are given to Selenium, so its Selenium Manager never tries to download a driver.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")
DESKTOP = (1280, 1000)
PHONE = (390, 844)  # a current phone's CSS pixels
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "screenshots"  # .data/ is git-ignored
BROWSER_TZ = "Europe/Paris"  # not UTC, so the page's conversion of zoned times is exercised


def chromium(downloads: Path) -> WebDriver:
    """Headless Chromium that saves downloads into ``downloads`` and keeps its console log."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)  # --no-sandbox: the tests run as root, which the sandbox refuses
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver", env={**os.environ, "TZ": BROWSER_TZ})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver


def until(driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 30, what: str = "") -> T:
    """Wait for ``condition(driver)`` to be truthy (a re-rendered element is tried again)."""

    def attempt(d: WebDriver) -> T | bool:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(attempt)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}") from None


def downloaded(folder: Path, name: str, timeout: float = 60) -> Path:
    """The file ``name`` once Chromium has finished saving it into ``folder``."""
    target = folder / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partial = list(folder.glob("*.crdownload"))
        if target.exists() and not partial:
            return target
        time.sleep(0.05)
    raise AssertionError(f"{name} was not downloaded into {folder} (found: {sorted(os.listdir(folder))})")


def console_problems(driver: WebDriver, allowed_statuses: tuple[int, ...] = ()) -> list[str]:
    """The browser console's errors and warnings since the last call, less the failed requests
    a test provoked on purpose (Chromium logs each 4xx answer of ``fetch`` as an error)."""
    problems = []
    for entry in driver.get_log("browser"):
        if entry["level"] not in ("SEVERE", "WARNING"):
            continue
        message = entry["message"]
        if entry.get("source") == "network" and any(f"status of {s} " in message for s in allowed_statuses):
            continue
        problems.append(json.dumps(entry))
    return problems


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save a PNG of the whole page (not only the window) into .data/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}},
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
