"""The whole product in a browser: enrol by upload, then watch the real service name them on Live.

The service runs in a process of its own (``vigil run`` over the shared clip) on the same
embedded Redis as the web app's server, exactly as a user would run the two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.browser.conftest import WebApp
from tests.browser.test_web import Screenshot, by_css, error_text, open_page, wait_for
from tests.conftest import PEOPLE, SHARED_DATA, require

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

HAMILTON = SHARED_DATA / "clips" / "hamilton.mp4"
OBAMA = "Barack Obama"


def test_a_person_enrolled_in_the_page_is_named_live_while_the_service_runs(
    browser: WebDriver, web: WebApp, screenshot: Screenshot
) -> None:
    clip = require(HAMILTON)
    # given Obama enrolled by uploading his photo on the People page
    open_page(browser, web, "people")
    by_css(browser, "#enrol-name")[0].send_keys(OBAMA)
    by_css(browser, "#enrol-photos")[0].send_keys(str(require(PEOPLE / "obama.jpg")))
    by_css(browser, "form.enrol button[type=submit]")[0].click()
    wait_for(browser, "the enrolment report", lambda: by_css(browser, ".report .accepted li"))
    # and the Live page open
    open_page(browser, web, "live")
    wait_for(browser, "the live state", lambda: "Live" in by_css(browser, ".state")[0].text)
    # when the real service runs over the clip, in its own process, on the same Redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(Path(web.settings.home))
    run = subprocess.run(
        [sys.executable, "-m", "vigil", "run", str(clip), "--as-fast-as-possible", "--json",
         "--metrics-port", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    printed = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert any(e["type"] == "recognized" and e["name"] == OBAMA for e in printed), "the service named Obama"
    # then the Live page shows him recognized, with the event the service published
    recognized = wait_for(
        browser,
        "Obama recognized on the Live page",
        lambda: [
            row for row in by_css(browser, "li.event") if OBAMA in row.text and "recognized" in row.text
        ],
    )
    assert "hamilton" in recognized[0].text  # the camera, named after the file
    assert "no events yet" not in by_css(browser, ".state")[0].text
    shown = len(by_css(browser, "li.event"))
    assert shown == len(printed), f"the page shows {shown} events, the service published {len(printed)}"
    assert not error_text(browser)
    screenshot(browser, "live-service")
