"""Domain type aliases shared across Vigil.

Arrays are numpy arrays; the alias names say what they hold. Shapes and colour order
are part of the contract:

- ``ImageRGB``: ``(H, W, 3)`` ``uint8``, RGB order (OpenCV's BGR is converted at the edge).
- ``BoxesXYXY``: ``(N, 4)`` ``float32`` pixel corners ``x1, y1, x2, y2``.
- ``Landmarks5``: ``(N, 5, 2)`` ``float32`` pixel points: left eye, right eye, nose,
  left mouth corner, right mouth corner (left/right as seen in the image).
- ``Embedding``: ``(D,)`` ``float32``; ``Embeddings``: ``(N, D)`` ``float32``.

Closed option sets that both the core and the (lazily imported) trainer name live here too,
so the CLI can offer them without importing torch.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

ImageRGB: TypeAlias = npt.NDArray[np.uint8]
BoxesXYXY: TypeAlias = npt.NDArray[np.float32]
Scores: TypeAlias = npt.NDArray[np.float32]
Landmarks5: TypeAlias = npt.NDArray[np.float32]
Embedding: TypeAlias = npt.NDArray[np.float32]
Embeddings: TypeAlias = npt.NDArray[np.float32]
FloatArray: TypeAlias = npt.NDArray[np.float64]
HeadKind: TypeAlias = Literal["linear", "residual"]
"""Kinds of embedding head (``vigil.models.head``)."""
HeadLoss: TypeAlias = Literal["contrastive", "siamese", "triplet"]
"""Losses an embedding head is trained with (``trainer.losses``)."""
