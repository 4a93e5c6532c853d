"""The web app in a real browser: headless Chromium (Debian's, through its chromedriver) driven by
Selenium, against the real API served by uvicorn on a free port over a fresh embedded Redis.

One server and one browser serve the whole module (starting Chromium takes a second or two);
each test signs in anew and cleans up what it made. Screenshots of each page are written to
``tests/artifacts/screenshots/`` (git-ignored) as the run's artefacts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from streamer.bench_setup import temporary_home
from streamer.rtsp_clip_server import free_port
from vigil.api.keys import ApiRole, KeyStore
from vigil.api.server import BackgroundApi
from vigil.config import Settings

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
WAIT_S = 20.0
"""Longest wait for the page to show something (the first enrolment loads the face models)."""
DESK_SIZE = (1280, 900)
PHONE_SIZE = (360, 740)


@dataclass
class WebApp:
    """The served app: its address, its Redis, and an admin key and a read-only key."""

    url: str
    settings: Settings
    redis: redis.Redis
    admin_key: str
    read_key: str


@pytest.fixture(scope="module")
def web(settings: Settings) -> Iterator[WebApp]:
    with temporary_home(settings) as (home_settings, client):
        keys = KeyStore(client)
        admin_key, read_key = keys.create("browser", ApiRole.ADMIN)[1], keys.create("viewer", ApiRole.READ)[1]
        with BackgroundApi(home_settings, client, host="127.0.0.1", port=free_port()) as server:
            yield WebApp(server.url, home_settings, client, admin_key, read_key)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium; skips, saying what to install, when it or its driver is missing."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'"
    )
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not program.exists():
            pytest.skip(f"{program} not found: install Debian's {package} (make system-deps)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # never Selenium Manager's download
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={DESK_SIZE[0]},{DESK_SIZE[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot() -> Callable[[WebDriver, str], Path]:
    """Save the browser's page as ``tests/artifacts/screenshots/NAME.png`` and print where."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)

    def take(driver: WebDriver, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
        print(f"screenshot: {path}")
        return path

    return take
