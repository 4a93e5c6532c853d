"""The web app (``vigil/web``) in headless Chromium against the real API, Redis and face models.

Each test drives the pages as a person would (clicks, typing, the keyboard alone) and checks
both what the page shows and what the API's stores then hold.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pytest
from PIL import Image

from indexer.erase import StreamKeys
from indexer.gallery import Gallery
from indexer.records import NewTemplate
from indexer.unknowns import UnknownSighting, UnknownStore
from streamer.events import Event, EventPublisher, EventType, event_id_for, iso_time
from streamer.feed import SOURCES_KEY
from tests.browser.conftest import DESK_SIZE, PHONE_SIZE, WAIT_S, WebApp
from tests.conftest import PEOPLE, require
from vigil.artifacts import ArtifactRegistry
from vigil.models.pipeline import FacePipeline

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

_T = TypeVar("_T")

Screenshot = Callable[["WebDriver", str], Path]
PAGES = ("live", "people", "unknowns", "cameras", "settings")
KEY_STORAGE = "vigil.api_key"
DROP_FILE = """
const [zone, data, name] = arguments;
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
"""


@pytest.fixture(autouse=True)
def no_script_errors(browser: WebDriver) -> Iterator[None]:
    """Every test ends without an uncaught error in the page's scripts (the browser's console)."""
    browser.get_log("browser")  # what earlier tests left
    yield
    uncaught = [entry["message"] for entry in browser.get_log("browser") if "Uncaught" in entry["message"]]
    assert not uncaught, f"the page's scripts failed: {uncaught}"


def by_css(driver: WebDriver, selector: str) -> list[WebElement]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_for(driver: WebDriver, what: str, check: Callable[[], _T]) -> _T:
    """``check()``'s first truthy answer within ``WAIT_S``; fails naming ``what`` and any error shown."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {what}; its error region says: {error_text(driver)!r}")


def error_text(driver: WebDriver) -> str:
    text: str = driver.execute_script(
        "const e = document.getElementById('errors'); return e.hidden ? '' : e.textContent"
    )
    return text


def hash_is(driver: WebDriver, wanted: str) -> bool:
    return bool(driver.execute_script("return location.hash") == wanted)


def view_text(driver: WebDriver) -> str:
    text: str = driver.execute_script("return document.getElementById('view').innerText")
    return text


def open_page(driver: WebDriver, web: WebApp, page: str, key: str | None = None) -> None:
    """Open ``#/page`` signed in with ``key`` (the admin key by default), as a fresh tab would."""
    driver.get(f"{web.url}/#/{page}")
    driver.execute_script(
        "sessionStorage.setItem(arguments[0], arguments[1])", KEY_STORAGE, key or web.admin_key
    )
    driver.refresh()
    wait_for(
        driver, f"the {page} page", lambda: by_css(driver, "#view h2") and not by_css(driver, "#api-key")
    )


def sighting(entry_id: str, version: str, dim: int, seed: int) -> UnknownSighting:
    """A stranger's track: two close unit embeddings of the model in force (seeded)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(2, dim)).astype(np.float32) * 0.05 + 1.0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    captured = iso_time(time.time())
    return UnknownSighting(
        entry_id, "door", f"door-{entry_id}", captured, version, vectors, [90.0, 80.0], [entry_id]
    )


def face_jpeg() -> bytes:
    """A small JPEG of a real face (what the worker keeps of an unknown face or an event)."""
    face = Image.open(require(PEOPLE / "biden.jpg")).convert("RGB").crop((330, 140, 730, 540))
    face.thumbnail((128, 128))
    jpeg = io.BytesIO()
    face.save(jpeg, "JPEG")
    return jpeg.getvalue()


def make_event(name: str | None, identity_id: str | None, camera: str = "door", track: str = "t1") -> Event:
    kind = EventType.RECOGNIZED if name else EventType.UNKNOWN
    return Event(
        event_id=event_id_for(f"{camera}-{track}", kind), type=kind, captured_at=iso_time(time.time()),
        camera=camera, track_id=f"{camera}-{track}", identity_id=identity_id, name=name,
        score=0.71 if name else 0.2, threshold=0.5, margin=0.05, box=[10, 10, 90, 90],
        landmarks=[[30, 40], [60, 40], [45, 55], [35, 70], [55, 70]], frame=3,
        embedder_version="sface_2021dec", calibration="test", latency_ms=40.0, track_frames=4,
        attributes={"age": 41.6, "age_range": [35, 48], "gender": "male", "gender_confidence": 0.9},
    )  # fmt: skip


def test_the_key_form_explains_refuses_and_signs_out(
    browser: WebDriver, web: WebApp, screenshot: Screenshot
) -> None:
    # given a fresh tab with no key
    browser.get(f"{web.url}/#/people")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    field = wait_for(browser, "the key form", lambda: by_css(browser, "#api-key"))[0]
    assert "vigil api-keys create NAME --role admin" in view_text(browser), "the form says how to get a key"
    screenshot(browser, "sign-in")
    # when a wrong key is given, then the API's 401 message shows and the form stays
    field.send_keys("vk_not-a-key\n")
    wait_for(browser, "the 401 message", lambda: "key" in error_text(browser).lower())
    assert by_css(browser, "#api-key"), "still asking for a key"
    # when the real key is given, then the page asked for opens
    by_css(browser, "#api-key")[0].send_keys(web.admin_key + "\n")
    wait_for(browser, "the People page", lambda: "People" in view_text(browser))
    assert browser.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')") == web.admin_key
    # when signing out, then the key is forgotten and the form is back
    by_css(browser, "#sign-out")[0].click()
    wait_for(browser, "the key form again", lambda: by_css(browser, "#api-key"))
    assert browser.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')") is None


def test_enrol_by_upload_then_open_and_delete(
    browser: WebDriver, web: WebApp, screenshot: Screenshot, tmp_path: Path
) -> None:
    # given two photos of Obama and a picture with no face in it
    photos = [require(PEOPLE / "obama.jpg"), require(PEOPLE / "obama2.jpg")]
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    open_page(browser, web, "people")
    # when they are enrolled through the form (the file input, as the keyboard reaches it)
    by_css(browser, "#enrol-name")[0].send_keys("Barack Obama")
    by_css(browser, "#enrol-photos")[0].send_keys("\n".join(str(p) for p in [*photos, blank]))
    by_css(browser, "form.enrol button[type=submit]")[0].click()
    # then the page lists the accepted photos and the refused one with its reason
    report = wait_for(browser, "the enrolment report", lambda: by_css(browser, ".report"))[0]
    accepted = [li.text for li in by_css(browser, ".report .accepted li")]
    refused = [li.text for li in by_css(browser, ".report .rejected li")]
    assert sorted(accepted) == ["obama.jpg", "obama2.jpg"], report.text
    assert (
        len(refused) == 1 and refused[0].startswith("wall.png: ") and len(refused[0]) > len("wall.png: ")
    ), refused
    # and the person is in the list and in the gallery
    wait_for(
        browser, "Obama in the list", lambda: "Barack Obama" in [a.text for a in by_css(browser, ".people a")]
    )
    assert Gallery(web.redis).find_by_name("Barack Obama") is not None
    screenshot(browser, "people")
    # when their page is opened, then it shows their templates and history
    [link] = [a for a in by_css(browser, ".people a") if a.text == "Barack Obama"]
    link.click()
    wait_for(browser, "two templates", lambda: len(by_css(browser, ".templates li")) == 2)
    screenshot(browser, "person")
    # when the second photo's template is undone from the history, then one template is left
    [undo] = [b for b in by_css(browser, ".history button") if b.text == "Undo entry 2"]
    undo.click()
    wait_for(browser, "one template", lambda: len(by_css(browser, ".templates li")) == 1)
    assert "removed template" in by_css(browser, ".history")[0].text
    # when they are renamed, then their page follows the new name
    field = by_css(browser, "#new-name")[0]
    field.clear()
    field.send_keys("Barack H. Obama\n")
    wait_for(browser, "the new name", lambda: hash_is(browser, "#/people/Barack%20H.%20Obama"))
    wait_for(browser, "the renamed page", lambda: by_css(browser, "#view h2")[0].text == "Barack H. Obama")
    assert Gallery(web.redis).find_by_name("Barack H. Obama") is not None
    # when they are deleted, then the confirmation names them, and they are gone everywhere
    wait_for(browser, "the delete button", lambda: by_css(browser, "button.danger"))[0].click()
    alert = browser.switch_to.alert
    assert "Delete Barack H. Obama?" in alert.text, alert.text
    alert.accept()
    wait_for(browser, "the list", functools.partial(hash_is, browser, "#/people"))
    wait_for(browser, "the list without Obama", lambda: "Obama" not in view_text(browser))
    assert Gallery(web.redis).find_by_name("Barack H. Obama") is None
    assert not error_text(browser)


def test_a_read_only_key_is_told_it_may_only_read(browser: WebDriver, web: WebApp, tmp_path: Path) -> None:
    photo = require(PEOPLE / "biden.jpg")
    open_page(browser, web, "people", key=web.read_key)
    by_css(browser, "#enrol-name")[0].send_keys("Joe Biden")
    # given a photo dropped on the drop zone (a drop event carrying the file, as a drag would)
    browser.execute_script(
        DROP_FILE, by_css(browser, ".drop-zone")[0], base64.b64encode(photo.read_bytes()).decode(), photo.name
    )
    assert by_css(browser, ".chosen li")[0].text == "biden.jpg", "the dropped photo is listed"
    by_css(browser, "form.enrol button[type=submit]")[0].click()
    wait_for(browser, "the 403 message", lambda: "this key may only read" in error_text(browser))
    assert Gallery(web.redis).find_by_name("Joe Biden") is None


def test_an_unknown_cluster_is_named_in_one_step(
    browser: WebDriver, web: WebApp, screenshot: Screenshot
) -> None:
    # given a stranger seen twice, kept with their face, and grouped into one cluster
    embedder = FacePipeline.from_settings(web.settings).embedder
    store = UnknownStore(Gallery(web.redis), retention_s=600.0)
    store.keep(sighting("a" * 32, embedder.version, embedder.dim, 1), face_jpeg())
    store.keep(sighting("b" * 32, embedder.version, embedder.dim, 1))
    open_page(browser, web, "unknowns")
    # when the tracks are re-clustered from the page, then one cluster shows, with its face
    by_css(browser, ".toolbar button")[0].click()
    card = wait_for(browser, "a cluster", lambda: by_css(browser, "li.cluster"))[0]
    wait_for(browser, "the cluster's face", lambda: by_css(browser, "li.cluster img"))
    cluster = card.get_attribute("data-cluster")
    screenshot(browser, "unknowns")
    # when it is named, then it is enrolled under that name and shown as enrolled
    by_css(browser, f"#name-{cluster}")[0].send_keys("Zoe Stranger\n")
    wait_for(browser, "the enrolment", lambda: "is now Zoe Stranger" in view_text(browser))
    zoe = Gallery(web.redis).find_by_name("Zoe Stranger")
    assert zoe is not None, "the cluster became a person"
    assert not error_text(browser)


def test_the_live_page_shows_an_event_as_it_is_published(
    browser: WebDriver, web: WebApp, screenshot: Screenshot
) -> None:
    from selenium.webdriver.support.select import Select

    publisher = EventPublisher(web.redis, web.settings.streamer.events)
    # given an event from before the page opened
    publisher.publish(make_event(None, None, track="past"))
    open_page(browser, web, "live")
    wait_for(browser, "the live state", lambda: "Live" in by_css(browser, ".state")[0].text)
    wait_for(browser, "the past event", lambda: len(by_css(browser, "li.event")) == 1)
    # when an event with a kept thumbnail is published while the page is open
    event = make_event("Ada Lovelace", "f" * 32, track="now")
    web.redis.set(StreamKeys.from_settings(web.settings).thumbnail(event.event_id), face_jpeg(), ex=600)
    publisher.publish(event)
    # then it appears first, with camera, name, score and age, and is announced
    wait_for(browser, "the new event", lambda: len(by_css(browser, "li.event")) == 2)
    newest = by_css(browser, "li.event")[0]
    for shown in ("door", "recognized", "Ada Lovelace", "0.710", "42, male"):
        assert shown in newest.text, f"{shown!r} not in {newest.text!r}"
    assert "unknown" in by_css(browser, "li.event")[1].text
    wait_for(
        browser,
        "the announcement",
        lambda: "Ada Lovelace" in (by_css(browser, "#announcer")[0].get_attribute("textContent") or ""),
    )
    # and its thumbnail shows, while the other's missing one (404) is no error
    wait_for(browser, "the thumbnail", lambda: by_css(browser, "li.event:first-child img"))
    assert len(by_css(browser, "li.event img")) == 1 and not error_text(browser)
    screenshot(browser, "live")
    # when another camera's event arrives and the filter is set to the first camera
    publisher.publish(make_event(None, None, camera="yard", track="y1"))
    wait_for(browser, "the yard event", lambda: len(by_css(browser, "li.event")) == 3)
    Select(by_css(browser, "#camera-filter")[0]).select_by_value("door")
    wait_for(
        browser, "the door filter", lambda: browser.execute_script("return location.hash") == "#/live/door"
    )
    # then only that camera's events show, past and live
    wait_for(browser, "door's past events", lambda: len(by_css(browser, "li.event")) == 2)
    publisher.publish(make_event(None, None, camera="yard", track="y2"))
    publisher.publish(make_event(None, None, camera="door", track="d2"))
    wait_for(browser, "door's new event", lambda: len(by_css(browser, "li.event")) == 3)
    assert "yard" not in view_text(browser).replace("yard\n", ""), "no yard event is listed"
    assert all("door" in row.text for row in by_css(browser, "li.event"))


def test_every_page_fits_a_phone_screen(browser: WebDriver, web: WebApp, screenshot: Screenshot) -> None:
    # given a camera reporting (the Cameras page's data) and a phone-sized window
    web.redis.hset(
        SOURCES_KEY, "door", json.dumps({"state": "failed", "reason": "connection refused", "frames": 12})
    )
    browser.set_window_size(*PHONE_SIZE)
    try:
        width = browser.execute_script("return window.innerWidth")
        assert width <= PHONE_SIZE[0], f"the viewport is {width} px wide"
        for page in PAGES:
            open_page(browser, web, page)
            time.sleep(0.5)  # its data arrives
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"#/{page} scrolls sideways by {overflow} px at {width} px"
            assert not error_text(browser), f"#/{page}: {error_text(browser)}"
            screenshot(browser, f"phone-{page}")
        # and the Cameras page shows the source's state and error
        open_page(browser, web, "cameras")
        wait_for(browser, "the camera", lambda: "connection refused" in view_text(browser))
        assert "failed" in view_text(browser)
    finally:
        browser.set_window_size(*DESK_SIZE)
        web.redis.hdel(SOURCES_KEY, "door")


def test_the_keyboard_alone_reaches_every_page(browser: WebDriver, web: WebApp) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_page(browser, web, "live")
    backwards = False  # from the top of the page Tab goes forward to the menu; from a page, back
    for page in PAGES:
        # when Tab is pressed until the page's link has the focus, and Enter on it
        for _ in range(30):
            step = ActionChains(browser)
            (
                step.key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT)
                if backwards
                else step.send_keys(Keys.TAB)
            ).perform()
            focused = browser.switch_to.active_element
            if (focused.get_attribute("href") or "").endswith(f"#/{page}"):
                break
        else:
            pytest.fail(f"Tab never reached the link to #/{page}")
        outline = focused.value_of_css_property("outline-style")
        assert outline != "none", f"the focused link to #/{page} shows no focus ring"
        focused.send_keys(Keys.ENTER)
        # then that page opens, and the focus moves to it
        wait_for(browser, f"#/{page}", functools.partial(hash_is, browser, f"#/{page}"))
        wait_for(
            browser,
            f"the focus on #/{page}",
            lambda: browser.switch_to.active_element.get_attribute("id") == "view",
        )
        backwards = True


def test_an_artifact_is_promoted_and_rolled_back(
    browser: WebDriver, web: WebApp, screenshot: Screenshot
) -> None:
    # given a stored age/gender head that is not in force
    registry = ArtifactRegistry(web.settings.home)
    artifact = registry.add(
        "attributes", {"heads.pt": b"weights"}, embedder_version="sface_2021dec",
        metrics={"age_mae": 5.25, "gender_accuracy": 0.93}, data={"faces": 1200},
    )  # fmt: skip
    open_page(browser, web, "settings")
    wait_for(browser, "the operating point", lambda: "threshold" in view_text(browser))
    # when it is promoted from the page, then it is in force, and the page says so
    [promote] = [b for b in by_css(browser, "button") if b.text == f"Promote {artifact.version}"]
    promote.click()
    wait_for(browser, "the artifact in force", lambda: "(in force)" in view_text(browser))
    current = registry.current("attributes")
    assert current is not None and current.version == artifact.version
    screenshot(browser, "models")
    # when it is rolled back, then nothing of its kind is in force again
    [rollback] = [b for b in by_css(browser, "button") if b.text == "Roll back attributes"]
    rollback.click()
    wait_for(browser, "the promote button again", lambda: f"Promote {artifact.version}" in view_text(browser))
    assert registry.current("attributes") is None and not error_text(browser)


def test_the_people_list_pages(browser: WebDriver, web: WebApp) -> None:
    # given 25 more people than fit a page (seeded templates of the model in force, at a norm
    # SFace gives: its embeddings are not unit length, and the gallery checks their range)
    embedder = FacePipeline.from_settings(web.settings).embedder
    gallery = Gallery(web.redis)
    rng = np.random.default_rng(7)
    for number in range(25):
        vector = rng.normal(size=embedder.dim).astype(np.float32)
        gallery.enroll(
            f"Visitor {number:02d}", [NewTemplate(embedder.version, 10 * vector / np.linalg.norm(vector))]
        )
    total = len(gallery.list_identities())  # with whom earlier tests left (Zoe Stranger)
    open_page(browser, web, "people")
    # then the first page holds 20, and Next shows the rest
    wait_for(browser, "a full page", lambda: len(by_css(browser, ".people li")) == 20)
    assert f"1 to 20 of {total}" in by_css(browser, ".pager")[0].text
    [next_page] = [b for b in by_css(browser, ".pager button") if b.text == "Next"]
    next_page.click()
    wait_for(
        browser, "the second page", lambda: f"21 to {total} of {total}" in by_css(browser, ".pager")[0].text
    )
    assert len(by_css(browser, ".people li")) == total - 20
    assert [b.get_attribute("disabled") for b in by_css(browser, ".pager button")] == [None, "true"]
