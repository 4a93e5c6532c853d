"""An imported template of the wrong shape must not take identification down for everyone
(defect 9 of issue 13): ``gallery import`` checks each embedding's dimension and norm against
the model its record names, and against what the gallery already holds, and refuses the file
with one line."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest

from indexer.backup import import_gallery
from indexer.export_format import PersonRecord, export_header, person_record
from indexer.gallery import Gallery
from indexer.identify import Identifier
from indexer.records import Identity, NewTemplate, Template, now
from tests.conftest import people_image, stop_embedded
from tests.test_cli import assert_one_line_error, run_vigil
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.errors import GalleryError
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis
from vigil.typing import Embedding

pytestmark = pytest.mark.redis


def make_template(version: str, embedding: Embedding, template_id: int = 1) -> Template:
    return Template(template_id, "", version, np.asarray(embedding, np.float32), None, "file.jpg", 1.0, now())


def write_export(path: Path, templates_by_person: dict[str, list[Template]]) -> Path:
    """An export file (current format) with one person per entry, holding these templates."""
    lines = [export_header()]
    for name, templates in templates_by_person.items():
        identity = Identity(uuid.uuid4().hex, name, {}, now(), now())
        person = PersonRecord(identity, templates, [], [], [], False)
        lines.append(json.dumps(person_record(person)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def obama(pipeline: FacePipeline) -> Embedding:
    faces = pipeline.analyze([people_image("obama.jpg")])[0]
    return max(faces, key=lambda face: face.size_px).embedding


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        # the reported case: a 3-d template for the 128-d model (dlib's or SFace's, whichever is configured)
        (np.array([0.6, 0.8, 0.0]), r"dimension 3.*{version}.* 128"),
        # 512 values: a FaceNet-sized embedding under dlib's name
        (np.full(512, 1 / np.sqrt(512)), r"dimension 512.*128"),
        # a zero vector: cosine similarity is undefined
        (np.zeros(128), r"norm 0"),
        # an absurd norm: not something the model produces
        (np.full(128, 1e6), r"norm"),
    ],
    ids=["3-d", "512-d", "zero-norm", "huge-norm"],
)
def test_a_template_that_does_not_fit_its_model_is_refused(
    gallery: Gallery,
    pipeline: FacePipeline,
    settings: Settings,
    obama: Embedding,
    tmp_path: Path,
    vector: Embedding,
    message: str,
) -> None:
    # given a gallery where Obama is recognised with the configured model
    version = pipeline.embedder.version
    gallery.enroll("Barack Obama", [NewTemplate(version, obama)])
    identifier = Identifier.from_settings(gallery, pipeline, settings)
    before = gallery.version()
    # when an export holding a template that cannot come from that model is imported
    export = write_export(tmp_path / "bad.jsonl", {"Mallory": [make_template(version, vector)]})
    # then the import is refused, naming the problem, and nothing is written
    with pytest.raises(GalleryError, match=message.format(version=re.escape(version))) as error:
        import_gallery(gallery, export)
    assert "\n" not in str(error.value)
    assert gallery.version() == before and gallery.find_by_name("Mallory") is None
    # and identification keeps working for everyone
    (result,) = identifier.identify(people_image("obama2.jpg"))
    assert result.name == "Barack Obama"


def test_a_template_unlike_the_gallery_s_is_refused(gallery: Gallery, tmp_path: Path) -> None:
    # given a gallery holding 8-d templates of a model Vigil does not know by name
    rng = np.random.default_rng(0)
    gallery.enroll("Ada", [NewTemplate("custom-v1", rng.normal(size=8))])
    # when a file brings 3-d templates of the same model, then it is refused before any write
    export = write_export(
        tmp_path / "bad.jsonl", {"Mallory": [make_template("custom-v1", rng.normal(size=3))]}
    )
    with pytest.raises(GalleryError, match=r"dimension 3.*custom-v1.*8"):
        import_gallery(gallery, export)
    assert gallery.find_by_name("Mallory") is None
    assert gallery.templates("custom-v1")[2].shape == (1, 8)


def test_a_file_with_mixed_dimensions_is_refused(gallery: Gallery, tmp_path: Path) -> None:
    # given a file whose two people hold templates of one model with different dimensions
    rng = np.random.default_rng(1)
    export = write_export(
        tmp_path / "mixed.jsonl",
        {
            "Ada": [make_template("custom-v2", rng.normal(size=8))],
            "Mallory": [make_template("custom-v2", rng.normal(size=3))],
        },
    )
    # when imported, then nothing is imported and the line is named
    with pytest.raises(GalleryError, match=r"line 3 .*dimension 3.*custom-v2.*8"):
        import_gallery(gallery, export)
    assert gallery.list_identities() == []


def test_enrolment_is_checked_the_same_way(gallery: Gallery) -> None:
    # given Ada's 8-d templates; when a 3-d one is added, then it is refused
    rng = np.random.default_rng(2)
    ada, _ = gallery.enroll("Ada", [NewTemplate("custom-v3", rng.normal(size=8))])
    with pytest.raises(GalleryError, match=r"dimension 3.*custom-v3.*8"):
        gallery.add_templates(ada.identity_id, [NewTemplate("custom-v3", rng.normal(size=3))])
    assert gallery.templates("custom-v3")[2].shape == (1, 8)


@pytest.mark.slow
def test_cli_import_of_a_3d_template_is_one_line(tmp_path: Path) -> None:
    # given an embedded gallery where someone is enrolled with the dlib model
    home = tmp_path / "home"
    client = connect_redis(RedisConfig(), home)
    try:
        Gallery(client).enroll("Ada", [NewTemplate("dlib_resnet_v1+flip", np.full(128, 0.125))])
        export = write_export(
            tmp_path / "bad.jsonl",
            {"Mallory": [make_template("dlib_resnet_v1+flip", np.array([0.6, 0.8, 0.0]))]},
        )
        # when imported with the CLI, then one line says what is wrong, and nothing is imported
        assert_one_line_error(run_vigil("gallery", "import", str(export), home=home), "dimension 3")
        listing = run_vigil("people", "list", home=home)
        assert "Mallory" not in listing.stdout and "1 people enrolled" in listing.stdout, listing.stdout
    finally:
        stop_embedded(client)  # the CLI joined this server: stop it, or it outlives the test


def test_known_models_match_their_embedders() -> None:
    """The dimensions the checks expect are the embedders' own."""
    from indexer.records import expected_space
    from vigil.models.dlib_resnet import DlibEmbedder
    from vigil.models.facenet import FacenetEmbedder
    from vigil.models.sface import SFACE_VERSION, SFaceEmbedder

    assert expected_space("dlib_resnet_v1+flip").dim == DlibEmbedder.dim
    assert expected_space(SFACE_VERSION).dim == SFaceEmbedder.dim
    assert expected_space("facenet_0123456789ab").dim == FacenetEmbedder.dim


def test_a_corrupt_template_already_stored_does_not_stop_searches(
    gallery: Gallery, pipeline: FacePipeline, settings: Settings, obama: Embedding
) -> None:
    # given Obama enrolled, and a 3-d template of the same model written by an older Vigil's import
    version = pipeline.embedder.version
    gallery.enroll("Barack Obama", [NewTemplate(version, obama)])
    mallory, _ = gallery.enroll("Mallory", [NewTemplate(version, obama * 0.5)])
    (template_id,) = [t.template_id for t in gallery.identity_templates(mallory.identity_id)]
    gallery.client.hset(
        gallery.key(f"template:{template_id}"),
        mapping={"embedding": np.array([0.6, 0.8, 0.0], "<f4").tobytes(), "dim": 3},
    )
    # when the gallery is searched, then the corrupt template is left out and Obama is named
    template_ids, _, vectors = gallery.templates(version)
    assert template_id not in template_ids.tolist() and vectors.shape[1] == pipeline.embedder.dim
    identifier = Identifier.from_settings(gallery, pipeline, settings)
    (result,) = identifier.identify(people_image("obama2.jpg"))
    assert result.name == "Barack Obama"
