"""The fine-tuned attribute model at run time: stored, loaded, refused and run on real chips."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import PEOPLE, people_image, require
from tests.models.attribute_tails import promote_tail, untrained_tail
from tests.test_cli import assert_one_line_error, run_vigil
from trainer.attribute_tail import predict_tail, trunk_activations
from vigil.config import Settings
from vigil.errors import ModelLoadError
from vigil.models.attribute_model import HeadAttributes, load_attribute_model
from vigil.models.attribute_tail import (
    TAIL_FORMAT,
    load_attribute_tail,
    load_tail_backbone,
    predict_chips,
    tail_aligner,
    tail_from_bytes,
    tail_to_bytes,
    track_attributes_from_chips,
)
from vigil.models.attributes import attributes_from_outputs
from vigil.models.dlib_resnet import DlibResNet
from vigil.models.pipeline import FacePipeline
from vigil.typing import ImageRGB


@pytest.fixture(scope="module")
def backbone(settings: Settings) -> DlibResNet:
    return load_tail_backbone(settings.cache_dir)


@pytest.fixture(scope="module")
def chips(pipeline: FacePipeline, settings: Settings) -> ImageRGB:
    """dlib-layout chips of two real faces, cut from the default detector's landmarks (SFace's pipeline)."""
    aligner = tail_aligner(settings.aligner)
    cut = []
    for name in ("obama.jpg", "biden.jpg"):
        image = people_image(name)
        face = pipeline.central_face(image)
        assert face is not None, name
        cut.append(aligner.align(image, face.landmarks[None])[0])
    return np.stack(cut)


def test_a_stored_tail_gives_the_same_answers(backbone: DlibResNet, chips: ImageRGB) -> None:
    tail = untrained_tail(backbone)
    restored = tail_from_bytes(tail_to_bytes(tail, backbone), backbone)
    np.testing.assert_array_equal(
        predict_chips(backbone, restored, chips), predict_chips(backbone, tail, chips)
    )
    # and two different faces get different answers (the fixture tail is not constant)
    first, second = predict_chips(backbone, tail, chips)
    assert not np.allclose(first, second)


def test_a_chip_and_its_mirror_image_get_the_same_answer(backbone: DlibResNet, chips: ImageRGB) -> None:
    tail = untrained_tail(backbone)
    mirrored = np.ascontiguousarray(chips[:, :, ::-1])
    np.testing.assert_allclose(
        predict_chips(backbone, tail, mirrored), predict_chips(backbone, tail, chips), atol=1e-4
    )


def test_the_service_runs_what_the_trainer_evaluated(backbone: DlibResNet, chips: ImageRGB) -> None:
    # the trainer keeps the frozen activations as float16; the service computes them in float32
    tail = untrained_tail(backbone, blocks=4)
    trained_path = predict_tail(tail, trunk_activations(backbone, chips, tail.start_block))
    np.testing.assert_allclose(predict_chips(backbone, tail, chips), trained_path, atol=0.05)


def test_a_tracks_answer_averages_its_chips(backbone: DlibResNet, chips: ImageRGB) -> None:
    tail = untrained_tail(backbone)
    both = track_attributes_from_chips(backbone, tail, chips)
    ages = predict_chips(backbone, tail, chips)[:, 0]
    assert both.age == pytest.approx(float(np.clip(ages.mean(), 0, 120)), abs=1e-3)
    with pytest.raises(ValueError, match="no chips"):
        track_attributes_from_chips(backbone, tail, chips[:0])


def _torch_file(content: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (lambda: b"not a torch file", "corrupt or not a torch file"),
        (lambda: _torch_file({"format": "vigil-attributes"}), "not a fine-tuned attribute model"),
        (lambda: _torch_file({"format": TAIL_FORMAT, "format_version": 99}), "format version 99"),
        (
            lambda: _torch_file({"format": TAIL_FORMAT, "format_version": 1, "blocks": "4"}),
            "size, dropout or weights are malformed",
        ),
        (
            lambda: _torch_file(
                {"format": TAIL_FORMAT, "format_version": 1, "blocks": 2, "dropout": 0.3, "state_dict": {}}
            ),
            "does not fit this backbone",
        ),
    ],
    ids=["bytes", "other-format", "version", "malformed", "no-weights"],
)
def test_bad_tail_files_are_refused(backbone: DlibResNet, data: Callable[[], bytes], fragment: str) -> None:
    with pytest.raises(ModelLoadError, match=fragment):
        tail_from_bytes(data(), backbone)


def test_a_tail_trained_behind_other_weights_is_refused(backbone: DlibResNet) -> None:
    stored = tail_to_bytes(untrained_tail(backbone), backbone)
    other = load_tail_backbone(None)  # a fresh copy, then one weight of its frozen part changed
    with torch.no_grad():
        other.stem.weight[0, 0, 0, 0] += 0.5
    with pytest.raises(ModelLoadError, match="trained behind other dlib ResNet weights"):
        tail_from_bytes(stored, other)


def test_the_promoted_tail_is_loaded_and_none_promoted_says_how_to_make_one(
    backbone: DlibResNet, chips: ImageRGB, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="vigil train attributes --dataset DIR --fine-tune-blocks 4"):
        load_attribute_tail(tmp_path, backbone)
    tail = untrained_tail(backbone)
    version = promote_tail(tmp_path, backbone, tail)
    loaded, source = load_attribute_tail(tmp_path, backbone)
    assert source == version
    np.testing.assert_array_equal(
        predict_chips(backbone, loaded, chips), predict_chips(backbone, tail, chips)
    )


def test_still_images_get_the_model_the_service_runs(
    backbone: DlibResNet, pipeline: FacePipeline, settings: Settings, tmp_path: Path
) -> None:
    # given the fine-tuned model in force (attribute_model: fine_tuned) in a home of the test's own
    tail = untrained_tail(backbone)
    version = promote_tail(tmp_path, backbone, tail)
    fine_tuned = settings.streamer.tracker.model_copy(update={"attribute_model": "fine_tuned"})
    streamer = settings.streamer.model_copy(update={"tracker": fine_tuned})
    chosen = settings.model_copy(update={"home": tmp_path, "streamer": streamer})
    image = people_image("obama.jpg")
    faces = pipeline.analyze([image])[0]
    # when `vigil analyze` and the API's model describes the faces of a photo
    model = load_attribute_model(chosen, pipeline.embedder.version)
    found = model.estimate(image, faces)
    # then it is the copy on each face's dlib-layout chip, as the tracker runs it
    chips = tail_aligner(settings.aligner).align(image, np.stack([face.landmarks for face in faces]))
    assert model.source == version
    assert found == attributes_from_outputs(predict_chips(backbone, tail, chips))
    # and by default it is the head on the embeddings
    assert isinstance(load_attribute_model(settings, pipeline.embedder.version), HeadAttributes)


def test_analyze_with_the_fine_tuned_model_but_none_promoted_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text("streamer:\n  tracker:\n    attribute_model: fine_tuned\n", encoding="utf-8")
    photo = require(PEOPLE / "obama.jpg")
    result = run_vigil("--config", str(config), "analyze", str(photo), home=tmp_path)
    assert_one_line_error(result, "no fine-tuned attribute model is promoted")
