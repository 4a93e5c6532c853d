"""The one place that turns settings into a detector and an embedder.

Each backend module is imported only when its backend is chosen, so a missing optional
piece (facenet weights, the ONNX files) only matters to those who pick it.
"""

from __future__ import annotations

from pathlib import Path

from vigil.config.detector import DetectorConfig
from vigil.config.embedder import EmbedderConfig
from vigil.errors import ConfigError
from vigil.models.detector import Detector
from vigil.models.embedder import Embedder


def create_detector(config: DetectorConfig, models_dir: Path) -> Detector:
    """Build (without loading) the detector that ``config.backend`` names."""
    if config.backend == "yunet":
        from vigil.models.yunet import YunetDetector

        return YunetDetector(config, models_dir)
    from vigil.models.mtcnn_detector import MtcnnDetector

    return MtcnnDetector(config)


def create_embedder(config: EmbedderConfig, cache_dir: Path, models_dir: Path) -> Embedder:
    """Build (without loading) the embedder that ``config.backend`` names.

    Args:
        config: The ``embedder`` settings.
        cache_dir: Where converted weights are cached (dlib).
        models_dir: Where the ONNX model files are installed (SFace).

    Raises:
        ConfigError: ``facenet`` was chosen without ``weights_path``.
    """
    if config.backend == "sface":
        from vigil.models.sface import SFaceEmbedder

        return SFaceEmbedder(config, models_dir)
    if config.backend == "facenet":
        from vigil.models.facenet import FacenetEmbedder

        if config.weights_path is None:
            raise ConfigError(
                "embedder.backend 'facenet' needs embedder.weights_path "
                "(a local InceptionResnetV1 state dict)"
            )
        return FacenetEmbedder(config.weights_path, config.device, config.batch_size)
    from vigil.models.dlib_resnet import DlibEmbedder

    return DlibEmbedder(
        weights_path=config.weights_path,
        device=config.device,
        cache_dir=cache_dir,
        batch_size=config.batch_size,
        flip_average=config.mirror_average,
    )
