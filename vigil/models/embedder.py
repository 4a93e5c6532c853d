"""The embedder interface: aligned face chips in, one descriptor per chip out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from vigil.models.aligner import ChipLayout
from vigil.typing import Embeddings, ImageRGB


class Embedder(ABC):
    """Maps aligned face chips to embeddings.

    Subclasses are cheap to construct; ``load()`` reads the weights (explicitly, so a
    constructor never touches disk). ``embed`` loads on first use. ``vigil.models.registry``
    builds the one the settings name.

    The embedding contract, for every backend: an embedding's *direction* is the identity and
    its length means nothing. Embeddings are not necessarily unit-norm when they leave
    ``embed``; everything that compares them L2-normalises first (``indexer.search.normalise``)
    and scores pairs by cosine similarity (higher = more alike). Embeddings of different
    ``version`` are different spaces and are never compared.

    Attributes:
        name: Backend name, e.g. ``dlib_resnet``.
        version: Identifies the embedding space; templates of different versions never mix.
        dim: Embedding length.
        chip_size_px: Side of the square chip the network expects.
        chip_layout: Where the aligner puts the face on the chip (``vigil.models.aligner``).
    """

    name: str
    version: str
    dim: int
    chip_size_px: int
    chip_layout: ChipLayout = "dlib"

    @abstractmethod
    def load(self) -> None:
        """Read the weights and move the network to its device; a second call does nothing.

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
