"""Galleries bound to their model: a gallery of another embedder is refused in one line, a mixed
one is searched with a warning, and the commands show and move each person's models.

"Another model" is built cheaply: templates written straight into the gallery with another
embedder version (128-d like dlib's, but another space). The configured embedder is the real
dlib one, ``dlib_resnet_v1+flip`` (``dlib_pipeline``; the CLI is set to it by the environment),
whose hints (weights file, mirror averaging) cover every case.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.calibration import CalibrationSource
from indexer.gallery import Gallery
from indexer.identify import Identifier
from indexer.records import NewTemplate
from indexer.sources import SourceStore
from tests.conftest import PEOPLE, people_image, require, stop_embedded
from vigil.cli import main
from vigil.config import IndexerConfig, Settings
from vigil.config.redis import RedisConfig
from vigil.errors import GalleryError
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis

pytestmark = pytest.mark.redis

CURRENT = "dlib_resnet_v1+flip"  # the configured embedder's version (dlib_pipeline, the CLI's setting)
SFACE = "sface_2021dec+flip"  # another model: same dimension, another space
DIM = 128
CONFIG = IndexerConfig()
# A data directory without calibration/current.json: identifiers use the shipped default calibration.
HOME_WITHOUT_CALIBRATION = Path(__file__).parent


def make_template(version: str, seed: int, source: str = "") -> NewTemplate:
    """A random unit template of one embedder version."""
    dim = 512 if version.startswith("facenet") else DIM  # the gallery checks each model's dimension
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return NewTemplate(version, vector / np.linalg.norm(vector), source=source)


def enrol_in_spaces(gallery: Gallery, people: dict[str, list[str]]) -> dict[str, str]:
    """Enrol each person with one random template per listed embedder version; name → identity id."""
    identity_ids = {}
    for number, (name, versions) in enumerate(people.items()):
        templates = [
            make_template(version, seed=100 * number + index, source=f"{name} {index}.jpg")
            for index, version in enumerate(versions)
        ]
        identity, _ = gallery.enroll(name, templates)
        identity_ids[name] = identity.identity_id
    return identity_ids


def make_identifier(gallery: Gallery, pipeline: FacePipeline) -> Identifier:
    calibration = CalibrationSource(CONFIG, HOME_WITHOUT_CALIBRATION, pipeline.embedder.version)
    return Identifier(gallery, pipeline, calibration)


@pytest.fixture
def cli_home(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Gallery]]:
    """A VIGIL_HOME for in-process ``vigil`` commands, with its embedded Redis running (the test's
    gallery and the commands share it) and the session's converted weights (no second conversion)."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache").symlink_to(settings.cache_dir, target_is_directory=True)
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    for name in ("REDIS_URL", "VIGIL_REDIS__URL", "VIGIL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIGIL_DETECTOR__BACKEND", "mtcnn")
    monkeypatch.setenv("VIGIL_EMBEDDER__BACKEND", "dlib_resnet")
    client = connect_redis(RedisConfig(), tmp_path)
    yield tmp_path, Gallery(client)
    stop_embedded(client)


@pytest.mark.parametrize(
    ("people", "refusal"),
    [
        # an empty gallery: nobody to find yet, nothing to refuse
        ({}, None),
        # everybody has templates of another model only: refused, naming the three ways out
        (
            {"alice": [SFACE], "bob": [SFACE]},
            f"the gallery holds templates for {SFACE} only, not for {CURRENT} (the embedder now configured), "
            "so none of its 2 people can be matched: run `vigil gallery reembed` for people whose photos "
            "were kept, re-enrol the others, or set embedder.backend back to sface",
        ),
        # the same network without mirror averaging is another space: the setting to restore is the flip
        ({"alice": ["dlib_resnet_v1"]}, "or set embedder.flip_average back to false"),
        # other weights for the same network: the setting to restore is the weights file
        ({"alice": ["dlib_resnet_0123456789ab+flip"]}, "or set embedder.weights_path back to the weights"),
        # two other models: both named, and both backends
        (
            {"alice": ["facenet_0123456789ab"], "bob": [SFACE]},
            f"templates for facenet_0123456789ab and {SFACE} only",
        ),
        (
            {"alice": ["facenet_0123456789ab"], "bob": [SFACE]},
            "set embedder.backend back to facenet or sface",
        ),
        # some people have templates of the configured model: searched (with a warning), not refused
        ({"alice": [CURRENT], "bob": [SFACE]}, None),
        # a person without any template is not "of another model"
        ({"alice": []}, None),
    ],
    ids=["empty", "other-model", "flip", "weights", "two-models", "two-backends", "mixed", "no-templates"],
)
def test_a_gallery_of_another_model_is_refused_with_its_fix(
    gallery: Gallery, dlib_pipeline: FacePipeline, people: dict[str, list[str]], refusal: str | None
) -> None:
    # given people enrolled with templates of the listed embedder versions
    assert dlib_pipeline.embedder.version == CURRENT, "the tests' pipeline is dlib's"
    enrol_in_spaces(gallery, people)
    identifier = make_identifier(gallery, dlib_pipeline)
    if refusal is None:
        # when faces are to be named, then they are searched (here: none), and the start-up check passes
        assert identifier.name_faces([]) == []
        identifier.check_gallery()
    else:
        # when faces are to be named, then the gallery is refused before any face is searched
        with pytest.raises(GalleryError, match=re.escape(refusal)) as raised:
            identifier.name_faces([])
        assert "\n" not in str(raised.value), "a one-line message"
        # and the start-up check refuses it the same way
        with pytest.raises(GalleryError, match=re.escape(refusal)):
            identifier.check_gallery()
    # and the look-alike search of enrolment never refuses: enrolling anew is a way out
    probe = make_template(CURRENT, seed=7).embedding[None, :]
    assert len(identifier.candidates(probe)) == 1, "one list of candidates per embedding"


def test_templates_by_space_counts_people_and_templates_per_model(gallery: Gallery) -> None:
    # given Ann with two templates of the configured model and one of another, Bob with the other's
    # only, and Cy without any template
    ids = enrol_in_spaces(gallery, {"Ann": [CURRENT, CURRENT, SFACE], "Bob": [SFACE], "Cy": []})
    # when the gallery is summarised per model
    spaces = gallery.templates_by_space()
    # then each model counts its people and templates, and each person their templates per model
    assert spaces.versions() == [CURRENT, SFACE]
    assert (spaces.people(CURRENT), spaces.templates(CURRENT)) == (1, 2), "Ann's two"
    assert (spaces.people(SFACE), spaces.templates(SFACE)) == (2, 2), "Ann's and Bob's"
    assert spaces.of(ids["Ann"]) == {CURRENT: 2, SFACE: 1}
    assert spaces.of(ids["Cy"]) == {}, "no templates, no models"
    assert spaces.without(CURRENT) == [ids["Bob"]], "Cy has no templates at all: not listed"
    # when Bob is deleted, then the summary follows
    gallery.delete_identity(ids["Bob"])
    assert gallery.templates_by_space().people(SFACE) == 1


def test_a_mixed_gallery_names_who_it_can_and_warns_once_about_the_others(
    gallery: Gallery, dlib_pipeline: FacePipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # given Obama enrolled with the configured model, Biden and Ada with another model only
    [obama_face, *_] = dlib_pipeline.analyze([people_image("obama.jpg")])[0]
    gallery.enroll("Barack Obama", [NewTemplate(CURRENT, obama_face.embedding, source="obama.jpg")])
    ids = enrol_in_spaces(gallery, {"Joe Biden": [SFACE], "Ada Lovelace": [SFACE]})
    identifier = make_identifier(gallery, dlib_pipeline)
    caplog.set_level(logging.WARNING, logger="indexer.identify")
    probe = people_image("obama2.jpg")
    # when another photo of Obama is identified, before and after a change of the gallery
    first = identifier.identify(probe)
    gallery.rename(ids["Ada Lovelace"], "Ada King")
    second = identifier.identify(probe)
    # then he is named both times, and one warning says how many people cannot be recognised
    assert [r.label for r in first] == [r.label for r in second] == ["Barack Obama"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"2 of 3 enrolled people have no templates for {CURRENT}"), warnings
    assert "vigil gallery reembed" in warnings[0]
    # when Biden gets a template of the configured model, then the warning comes again, with the new count
    gallery.add_templates(ids["Joe Biden"], [make_template(CURRENT, seed=9)])
    identifier.check_gallery()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2 and warnings[1].startswith("1 of 3 enrolled people"), warnings


@pytest.mark.slow
def test_vigil_identify_refuses_a_gallery_of_another_model_in_one_line(
    cli_home: tuple[Path, Gallery], dlib_pipeline: FacePipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _, gallery = cli_home
    # given a gallery whose people all have templates of another model only
    enrol_in_spaces(gallery, {"Barack Obama": [SFACE], "Joe Biden": [SFACE]})
    # when two photos are identified with the configured embedder
    status = main(["identify", str(require(PEOPLE / "obama2.jpg")), str(require(PEOPLE / "biden.jpg"))])
    # then the command fails with one line (not one per photo) that names the fix, and no result
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith(
        f"vigil: error: the gallery holds templates for {SFACE} only, not for {CURRENT}"
    ), captured.err
    assert "`vigil gallery reembed`" in captured.err and "embedder.backend back to sface" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("args", "expected_lines"),
    [
        # the service's status: per model, its templates and people
        (
            ["status"],
            [
                f"  model {CURRENT}: 2 template(s) of 1 person(s)",
                f"  model {SFACE}: 2 template(s) of 2 person(s)",
            ],
        ),
        # one person: their templates per model, then each template
        (["people", "show", "Barack Obama"], [f"  templates per model: {CURRENT} (2), {SFACE} (1)"]),
        # everybody: total templates, then per model
        (
            ["people", "list"],
            [
                f"Barack Obama\t3 template(s)\t{CURRENT} (2), {SFACE} (1)",
                f"Joe Biden\t1 template(s)\t{SFACE} (1)",
            ],
        ),
    ],
    ids=["status", "people-show", "people-list"],
)
def test_status_and_people_commands_show_each_persons_models(
    cli_home: tuple[Path, Gallery],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expected_lines: list[str],
) -> None:
    _, gallery = cli_home
    # given Obama with two templates of the configured model and one of another, Biden with the other's only
    enrol_in_spaces(gallery, {"Barack Obama": [CURRENT, CURRENT, SFACE], "Joe Biden": [SFACE]})
    # when the command runs
    status = main(args)
    # then it lists the models
    captured = capsys.readouterr()
    assert status == 0, captured.err
    for line in expected_lines:
        assert line in captured.out.splitlines(), captured.out


def test_status_json_counts_people_and_templates_per_model(
    cli_home: tuple[Path, Gallery], capsys: pytest.CaptureFixture[str]
) -> None:
    _, gallery = cli_home
    # given Obama with templates of two models, Biden with one of them
    enrol_in_spaces(gallery, {"Barack Obama": [CURRENT, SFACE], "Joe Biden": [SFACE]})
    # when the status is asked for as JSON, then each model has its people and templates
    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gallery_models"] == {
        CURRENT: {"people": 1, "templates": 1},
        SFACE: {"people": 2, "templates": 2},
    }


@pytest.mark.slow
def test_gallery_reembed_lists_the_people_it_could_not_move(
    cli_home: tuple[Path, Gallery], dlib_pipeline: FacePipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    home, gallery = cli_home
    # given Ada, Obama and Biden enrolled with another model, and only Obama's photo kept
    ids = enrol_in_spaces(gallery, {"Ada Lovelace": [SFACE], "Barack Obama": [SFACE], "Joe Biden": [SFACE]})
    [obama_template] = gallery.identity_templates(ids["Barack Obama"])
    SourceStore(home / "sources").keep(
        ids["Barack Obama"], obama_template.template_id, require(PEOPLE / "obama.jpg")
    )
    # when the gallery is re-embedded for the configured embedder
    status = main(["gallery", "reembed"])
    # then Obama is moved, and the two others are named for re-enrolment
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"1 template(s) added for {CURRENT}" in captured.out
    assert (
        f"  2 people could not be moved to {CURRENT} (no usable kept photo), for re-enrolment:\n"
        "    Ada Lovelace\n"
        "    Joe Biden\n"
    ) in captured.out, captured.out
    assert gallery.templates_by_space().of(ids["Barack Obama"]) == {CURRENT: 1, SFACE: 1}
