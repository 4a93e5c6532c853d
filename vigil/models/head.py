"""Embedding heads: a small trained map applied on top of the frozen backbone's embeddings.

The gallery stores backbone embeddings; a head maps them (templates and probes alike) into
its own space at run time, so promoting or removing a head needs no re-enrolment. Each head
defines a new embedding space, named by :func:`head_space_version`: templates, probes and
calibrations of different spaces never mix.

Two kinds, both identity maps on the unit sphere until trained:

- ``linear``: ``normalise(W · x̂)`` with ``W`` initialised to the identity;
- ``residual``: ``normalise(x̂ + MLP(x̂))`` with the MLP's last layer initialised to zero.

where ``x̂ = x / ‖x‖``. This module is the runtime part (no training code): the indexer and
the stream workers load heads with :func:`head_from_bytes` and apply them with
:func:`apply_head`.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import cast, get_args

import numpy as np
import torch
from torch import nn

from vigil.errors import ModelLoadError, first_line
from vigil.models.torch_files import read_model_dict
from vigil.typing import Embeddings, HeadKind

logger = logging.getLogger(__name__)

HEAD_KINDS: tuple[HeadKind, ...] = get_args(HeadKind)
HEAD_FORMAT = "vigil-head"
HEAD_FORMAT_VERSION = 1
BACKBONE_DIM = 128
"""Length of the backbone embeddings (dlib ResNet and facenet's 128-d variant)."""
DEFAULT_HIDDEN = 256
"""Width of the residual MLP: twice the input, small enough to train in seconds on a CPU."""
_NORM_EPSILON = 1e-12


class EmbeddingHead(nn.Module):
    """Maps ``(N, in_dim)`` backbone embeddings to ``(N, out_dim)`` unit vectors.

    Args:
        kind: ``linear`` or ``residual`` (see the module docstring).
        in_dim: Backbone embedding length.
        out_dim: Output length; a residual head keeps ``in_dim``.
        hidden: Width of the residual MLP's hidden layer (unused by ``linear``).

    Raises:
        ValueError: An unknown kind, a non-positive size, or a residual head whose
            ``out_dim`` differs from ``in_dim``.

    Example:
        >>> head = EmbeddingHead("residual")
        >>> head(torch.randn(4, 128)).norm(dim=1)  # unit vectors
        tensor([1.0000, 1.0000, 1.0000, 1.0000], grad_fn=...)
    """

    def __init__(
        self,
        kind: HeadKind = "residual",
        in_dim: int = BACKBONE_DIM,
        out_dim: int = BACKBONE_DIM,
        hidden: int = DEFAULT_HIDDEN,
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; use one of {', '.join(HEAD_KINDS)}")
        if min(in_dim, out_dim, hidden) < 1:
            raise ValueError(f"head sizes must be positive, got in {in_dim}, out {out_dim}, hidden {hidden}")
        if kind == "residual" and out_dim != in_dim:
            raise ValueError(f"a residual head keeps the input size: out_dim {out_dim} != in_dim {in_dim}")
        self.kind: HeadKind = kind
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.hidden = hidden
        self.projection: nn.Linear | None = None
        self.mlp: nn.Sequential | None = None
        if kind == "linear":
            self.projection = nn.Linear(in_dim, out_dim, bias=False)
            with torch.no_grad():
                # A rectangular identity: the first min(in, out) coordinates pass through.
                self.projection.weight.copy_(torch.eye(out_dim, in_dim))
        else:
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
            last = cast(nn.Linear, self.mlp[-1])
            # A zero last layer makes the untrained head the identity, so training starts from the backbone.
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_dim)`` embeddings (any norm) to ``(N, out_dim)`` unit vectors."""
        unit = nn.functional.normalize(embeddings, dim=1, eps=_NORM_EPSILON)
        if self.projection is not None:
            mapped = self.projection(unit)
        else:
            assert self.mlp is not None
            mapped = unit + self.mlp(unit)
        return nn.functional.normalize(mapped, dim=1, eps=_NORM_EPSILON)


def head_to_bytes(head: EmbeddingHead) -> bytes:
    """Serialise a head: its shape and weights in a ``torch.save`` dict (no pickled classes).

    The dict holds ``format`` (``vigil-head``), ``format_version``, ``kind``, ``in_dim``,
    ``out_dim``, ``hidden`` and ``state_dict`` (CPU tensors).
    """
    buffer = io.BytesIO()
    torch.save(
        {
            "format": HEAD_FORMAT,
            "format_version": HEAD_FORMAT_VERSION,
            "kind": head.kind,
            "in_dim": head.in_dim,
            "out_dim": head.out_dim,
            "hidden": head.hidden,
            "state_dict": {name: tensor.detach().cpu() for name, tensor in head.state_dict().items()},
        },
        buffer,
    )
    return buffer.getvalue()


def head_from_bytes(data: bytes) -> EmbeddingHead:
    """Rebuild a head written by :func:`head_to_bytes`, in evaluation mode on the CPU.

    Raises:
        ModelLoadError: The bytes are not a readable Vigil head file (corrupt, truncated,
            another format or version, or weights that do not fit the recorded shape).
    """
    raw = read_model_dict(
        data,
        called="a Vigil head file",
        what="head file",
        format_name=HEAD_FORMAT,
        version=HEAD_FORMAT_VERSION,
        train="vigil train head",
    )
    kind, sizes = raw.get("kind"), [raw.get(key) for key in ("in_dim", "out_dim", "hidden")]
    state = raw.get("state_dict")
    if (
        kind not in HEAD_KINDS
        or not all(isinstance(size, int) for size in sizes)
        or not isinstance(state, dict)
    ):
        raise ModelLoadError(
            f"the head file's kind {kind!r}, sizes {sizes} or weights are malformed; retrain it"
        )
    try:
        head = EmbeddingHead(kind, *cast(list[int], sizes))
        head.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"the head file's weights do not fit its shape ({first_line(exc)})") from None
    return head.eval()


def read_head(path: Path) -> EmbeddingHead:
    """:func:`head_from_bytes` of a file.

    Raises:
        ModelLoadError: The file cannot be read or is not a valid head.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read head file {path}: {exc.strerror}") from None
    try:
        return head_from_bytes(data)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def apply_head(head: EmbeddingHead, embeddings: Embeddings) -> Embeddings:
    """Map backbone embeddings into the head's space (no gradients, on the CPU).

    Args:
        head: The head; it is put in evaluation mode.
        embeddings: ``(N, in_dim)`` float backbone embeddings, any norm.

    Returns:
        ``(N, out_dim)`` float32 unit vectors (``(0, out_dim)`` for an empty batch).

    Raises:
        ValueError: ``embeddings`` is not ``(N, in_dim)``.
    """
    if embeddings.ndim != 2 or embeddings.shape[1] != head.in_dim:
        raise ValueError(f"expected (N, {head.in_dim}) embeddings, got shape {embeddings.shape}")
    if embeddings.shape[0] == 0:
        return np.zeros((0, head.out_dim), np.float32)
    head.eval()
    with torch.no_grad():
        mapped = head(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)))
    return np.asarray(mapped.numpy(), dtype=np.float32)


def head_space_version(backbone_version: str, head_bytes: bytes) -> str:
    """The embedding space a head defines, e.g. ``dlib_resnet_v1+flip+head-3f2a9c01b7de``.

    Args:
        backbone_version: The backbone embedder's version.
        head_bytes: The head file's contents (:func:`head_to_bytes`).
    """
    return f"{backbone_version}+head-{hashlib.sha256(head_bytes).hexdigest()[:12]}"


def backbone_of(space_version: str) -> str:
    """The backbone embedder version of an embedding space (itself when it is a backbone's).

    Events and results name the space faces were matched in; templates are stored in the
    backbone's, so stream learning (aging, unknowns) maps the one to the other.
    """
    return space_version.split("+head-", 1)[0]
