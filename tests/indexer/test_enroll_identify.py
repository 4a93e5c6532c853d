"""Enrol real people, identify them (or *unknown*), delete them: the indexer end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.calibration import CalibrationSource
from indexer.enroll import enroll_person, sharpness
from indexer.gallery import Gallery
from indexer.identify import Identifier
from tests.conftest import PEOPLE, people_image, require
from tests.indexer.conftest import RedisBackend
from vigil.config import IndexerConfig
from vigil.errors import GalleryError
from vigil.models.pipeline import FacePipeline

pytestmark = pytest.mark.redis

CONFIG = IndexerConfig()
# A data directory without calibration/current.json: identifiers use the shipped default calibration.
HOME_WITHOUT_CALIBRATION = Path(__file__).parent


def _identifier(gallery: Gallery, pipeline: FacePipeline) -> Identifier:
    calibration = CalibrationSource(CONFIG, HOME_WITHOUT_CALIBRATION, pipeline.embedder.version)
    return Identifier(gallery, pipeline, calibration)


def _photo(name: str) -> Path:
    return require(PEOPLE / name)


@pytest.fixture
def enrolled(gallery: Gallery, pipeline: FacePipeline) -> Gallery:
    enroll_person(_identifier(gallery, pipeline), CONFIG, "Barack Obama", [_photo("obama.jpg")])
    enroll_person(_identifier(gallery, pipeline), CONFIG, "Joe Biden", [_photo("biden.jpg")])
    return gallery


def test_known_people_are_named_and_strangers_are_unknown(enrolled: Gallery, pipeline: FacePipeline) -> None:
    identifier = _identifier(enrolled, pipeline)
    # a different photo of Obama is Obama
    [obama] = identifier.identify(people_image("obama2.jpg"))
    assert obama.label == "Barack Obama", obama.decision
    # both faces of the photo of the two are named
    assert sorted(r.label for r in identifier.identify(people_image("two_people.jpg"))) == [
        "Barack Obama",
        "Joe Biden",
    ]
    # someone never enrolled is unknown
    [stranger] = identifier.identify(people_image("lin-manuel-miranda.png"))
    assert stranger.label == "unknown" and stranger.decision.is_unknown, stranger.decision


def test_deleted_person_is_never_returned_again(backend: RedisBackend, pipeline: FacePipeline) -> None:
    gallery = backend.gallery()
    enroll_person(_identifier(gallery, pipeline), CONFIG, "Barack Obama", [_photo("obama.jpg")])
    identifier = _identifier(gallery, pipeline)
    assert identifier.identify(people_image("obama2.jpg"))[0].label == "Barack Obama"
    # when Obama is deleted (the identifier sees the change through the version counter)
    removed = gallery.delete_identity(gallery.find_by_name("Barack Obama").identity_id)  # type: ignore[union-attr]
    assert removed == 1
    assert identifier.identify(people_image("obama2.jpg"))[0].label == "unknown"
    # and also after reconnecting (restarting the embedded server)
    reopened = backend.reconnect()
    assert _identifier(reopened, pipeline).identify(people_image("obama2.jpg"))[0].label == "unknown"


def test_enrolment_reports_rejected_photos(gallery: Gallery, pipeline: FacePipeline, tmp_path: Path) -> None:
    # given a good photo, a file that is not an image, a photo without a face and a tiny face
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    tiny = tmp_path / "tiny.jpg"
    cv2.imwrite(str(tiny), cv2.resize(cv2.imread(str(_photo("obama.jpg"))), None, fx=0.06, fy=0.06))
    # when enrolled together
    report = enroll_person(
        _identifier(gallery, pipeline), CONFIG, "Obama", [_photo("obama.jpg"), not_image, blank, tiny]
    )
    # then only the good photo becomes a template and each rejection says why
    assert report.accepted == [_photo("obama.jpg")]
    reasons = {r.path.name: r.reason for r in report.rejected}
    assert "not an image" in reasons["notes.jpg"]
    assert "no face" in reasons["blank.png"]
    assert "below the" in reasons["tiny.jpg"] or "no face" in reasons["tiny.jpg"]
    assert len(gallery.identity_templates(report.identity.identity_id)) == 1


def test_several_faces_warns_and_takes_the_largest(gallery: Gallery, pipeline: FacePipeline) -> None:
    report = enroll_person(_identifier(gallery, pipeline), CONFIG, "Someone", [_photo("two_people.jpg")])
    assert any("2 faces found" in warning for warning in report.warnings)


def test_lookalike_is_warned(enrolled: Gallery, pipeline: FacePipeline) -> None:
    # enrolling Obama again under another name warns that he looks like the enrolled Obama
    report = enroll_person(_identifier(enrolled, pipeline), CONFIG, "B. Obama", [_photo("obama2.jpg")])
    assert any("Barack Obama" in warning for warning in report.warnings), report.warnings


@pytest.mark.parametrize(
    ("name", "photos", "add", "message"),
    [
        ("Joe Biden", ["biden.jpg"], False, "already enrolled"),  # duplicate name
        ("Nobody", ["obama.jpg"], True, "not enrolled"),  # --add for an unknown person
    ],
    ids=["duplicate", "add-to-unknown"],
)
def test_bad_enrolments_write_nothing(
    enrolled: Gallery, pipeline: FacePipeline, name: str, photos: list[str], add: bool, message: str
) -> None:
    before = enrolled.version()
    with pytest.raises(GalleryError, match=message):
        enroll_person(
            _identifier(enrolled, pipeline), CONFIG, name, [_photo(p) for p in photos], add_to_existing=add
        )
    assert enrolled.version() == before, "nothing was written"


def test_no_usable_photo_writes_nothing(gallery: Gallery, pipeline: FacePipeline, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(GalleryError, match="no usable face"):
        enroll_person(_identifier(gallery, pipeline), CONFIG, "Ghost", [empty])
    assert gallery.find_by_name("Ghost") is None


def test_sharpness_drops_with_blur() -> None:
    import cv2

    image = people_image("obama.jpg")
    box = np.array([0, 0, image.shape[1], image.shape[0]], np.float32)
    blurred = cv2.GaussianBlur(image, (0, 0), 8)
    assert sharpness(blurred, box) < sharpness(image, box) / 4


def test_enrolment_in_another_process_is_seen_without_restart(tmp_path: Path, pipeline: FacePipeline) -> None:
    from tests.test_cli import run_vigil

    # given an identifier in this process, on the embedded server in tmp_path, with an empty gallery
    backend = RedisBackend("embedded", tmp_path)
    try:
        identifier = _identifier(Gallery(backend.client()), pipeline)  # the CLI's default namespace
        probe = people_image("obama2.jpg")
        assert identifier.identify(probe)[0].label == "unknown"
        # when another process enrols Obama into the same gallery
        result = run_vigil("enroll", "Barack Obama", str(_photo("obama.jpg")), home=tmp_path)
        assert result.returncode == 0, result.stderr
        # then this process names him on its very next call, without a restart: every query
        # checks the gallery version (one GET), so the delay is one query, not a polling period.
        # (Timing it here would measure the machine's load, not the reload.)
        assert identifier.identify(probe)[0].label == "Barack Obama"
    finally:
        backend.close()
