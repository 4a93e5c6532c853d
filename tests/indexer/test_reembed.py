"""Kept enrolment photos (opt-in), re-embedding for a new embedder, and erasure of photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.calibration import CalibrationSource
from indexer.enroll import enroll_person
from indexer.erase import erase_person
from indexer.gallery import Gallery
from indexer.identify import Identifier
from indexer.reembed import reembed_gallery
from indexer.sources import SourceStore
from tests.conftest import PEOPLE, people_image, require
from vigil.config import IndexerConfig, Settings
from vigil.errors import GalleryError
from vigil.models.pipeline import FacePipeline

pytestmark = pytest.mark.redis

# One fixed rule for both embedders below (the default SFace without and with mirror averaging),
# on SFace's cosine scale: the same person scores 0.6-0.8 across photos, others below 0.3.
CONFIG = IndexerConfig(match_threshold=0.45, match_margin=0.02)


def _identifier(gallery: Gallery, pipeline: FacePipeline, home: Path) -> Identifier:
    return Identifier(gallery, pipeline, CalibrationSource(CONFIG, home, pipeline.embedder.version))


@pytest.fixture(scope="module")
def other_pipeline(settings: Settings) -> Iterator[FacePipeline]:
    """A genuinely different embedding space: the same network with mirror averaging."""
    embedder = settings.embedder.model_copy(update={"flip_average": True})
    pipeline = FacePipeline.from_settings(settings.model_copy(update={"embedder": embedder}))
    pipeline.load()
    yield pipeline


def test_kept_photos_rebuild_templates_for_a_new_embedder(
    gallery: Gallery, pipeline: FacePipeline, other_pipeline: FacePipeline, tmp_path: Path
) -> None:
    assert other_pipeline.embedder.version != pipeline.embedder.version
    sources = SourceStore(tmp_path / "sources")
    # given Obama enrolled with his photo kept, and Biden enrolled without keeping photos
    obama = enroll_person(
        _identifier(gallery, pipeline, tmp_path),
        CONFIG,
        "Barack Obama",
        [require(PEOPLE / "obama.jpg")],
        sources=sources,
    ).identity
    enroll_person(
        _identifier(gallery, pipeline, tmp_path), CONFIG, "Joe Biden", [require(PEOPLE / "biden.jpg")]
    )
    probe = people_image("obama2.jpg")
    # (the new embedder refuses a gallery with no templates of its own, rather than call Obama unknown)
    with pytest.raises(GalleryError, match=r"set embedder\.flip_average back to false"):
        _identifier(gallery, other_pipeline, tmp_path).identify(probe)
    # when the gallery is re-embedded with the new embedder
    report = reembed_gallery(gallery, sources, other_pipeline, CONFIG)
    # then Obama has a template in the new space and is recognised there; Biden is named for re-enrolment
    assert (report.added, report.without_photo, report.failed) == (1, 1, []), report
    assert report.to_reenrol == ["Joe Biden"]
    assert _identifier(gallery, other_pipeline, tmp_path).identify(probe)[0].label == "Barack Obama"
    assert len(gallery.templates(other_pipeline.embedder.version)[0]) == 1
    # and the old space is untouched, so rolling back the embedder keeps working
    assert len(gallery.templates(pipeline.embedder.version)[0]) == 2
    # when it runs again, then nothing is added twice
    again = reembed_gallery(gallery, sources, other_pipeline, CONFIG)
    assert (again.added, again.up_to_date, again.to_reenrol) == (0, 1, ["Joe Biden"])
    # when Obama is erased, then his kept photos go with him
    erased = erase_person(gallery, sources, obama.identity_id)
    assert (erased.templates, erased.photos) == (2, 2)
    assert not (sources.root / obama.identity_id).exists()


def test_photos_are_not_kept_unless_asked(gallery: Gallery, pipeline: FacePipeline, tmp_path: Path) -> None:
    report = enroll_person(
        _identifier(gallery, pipeline, tmp_path), CONFIG, "Barack Obama", [require(PEOPLE / "obama.jpg")]
    )
    sources = SourceStore(tmp_path / "sources")
    [template] = gallery.identity_templates(report.identity.identity_id)
    assert sources.find(report.identity.identity_id, template.template_id) is None
    assert not sources.root.exists()


def test_photos_of_people_no_longer_enrolled_are_swept(
    gallery: Gallery, pipeline: FacePipeline, tmp_path: Path
) -> None:
    # given a kept photo whose person is gone (a crash between the two steps of an erasure)
    sources = SourceStore(tmp_path / "sources")
    sources.keep("0" * 32, 7, require(PEOPLE / "obama.jpg"))
    # when the gallery is re-embedded, then the orphan is removed
    report = reembed_gallery(gallery, sources, pipeline, CONFIG)
    assert report.orphans_removed == 1
    assert sources.find("0" * 32, 7) is None


def test_identity_ids_cannot_escape_the_sources_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid identity id"):
        SourceStore(tmp_path).find("../etc", 1)
