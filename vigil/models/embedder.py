"""The embedder interface: aligned face chips in, one descriptor per chip out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from vigil.config.embedder import EmbedderConfig
from vigil.errors import ConfigError
from vigil.typing import Embeddings, ImageRGB


class Embedder(ABC):
    """Maps aligned face chips to embeddings.

    Subclasses are cheap to construct; ``load()`` reads the weights (explicitly, so a
    constructor never touches disk). ``embed`` loads on first use.

    Attributes:
        name: Backend name, e.g. ``dlib_resnet``.
        version: Identifies the embedding space; templates of different versions never mix.
        dim: Embedding length.
        chip_size_px: Side of the square chip the network expects.
    """

    name: str
    version: str
    dim: int
    chip_size_px: int

    @abstractmethod
    def load(self) -> None:
        """Read the weights and move the network to its device.

        Raises:
            ModelLoadError: The weights are missing or corrupt.
        """

    @abstractmethod
    def embed(self, chips: ImageRGB) -> Embeddings:
        """Embed a batch of chips.

        Args:
            chips: ``(N, S, S, 3)`` uint8 RGB chips, ``S = chip_size_px``.

        Returns:
            ``(N, dim)`` float32 embeddings (``(0, dim)`` for an empty batch).
        """


def check_chips(chips: ImageRGB, chip_size_px: int) -> None:
    """Raise ValueError unless ``chips`` is an ``(N, S, S, 3)`` uint8 batch."""
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (chip_size_px, chip_size_px, 3):
        raise ValueError(
            f"expected (N, {chip_size_px}, {chip_size_px}, 3) uint8 chips, got {chips.shape} {chips.dtype}"
        )


def create_embedder(config: EmbedderConfig, cache_dir: Path) -> Embedder:
    """Build (without loading) the embedder that ``config.backend`` names.

    Raises:
        ConfigError: ``facenet`` was chosen without ``weights_path``.
    """
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
        flip_average=config.flip_average,
    )
