"""Age and gender from face embeddings: a small head on the backbone's ``(N, 128)`` descriptors.

The head reads the same embeddings the gallery is searched with, so attributes cost a few
matrix products per face and can be computed once per track from its best faces, without
the images. Its three outputs per face are:

- the age in years, trained with a (smooth) L1 loss: the median age of faces that look alike;
- the log of the age's spread sigma (years), trained with a Gaussian negative log-likelihood on
  the age residual (the age output itself is not moved by that loss), then scaled by
  ``spread_scale``: the factor that makes ``age ± AGE_RANGE_Z · sigma`` hold 80 % of the true
  ages of faces the head did not train on (the trainer fits it on a slice of the training
  images kept aside; on training faces alone the spread comes out too small). The trainer
  reports how often held-out ages fall inside the range;
- the logit of the probability that the face is female (UTKFace's label 1).

This module is the runtime part (no training code). A head is stored as a ``torch.save``
dict (``vigil-attributes`` format) that records the embedder version it was trained on:
an attribute head only means something for that backbone's embeddings. Vigil ships one
(:func:`shipped_attributes_path`, trained on a UTKFace sample; see the README) that
applies when no ``attributes`` artifact is promoted.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vigil.errors import ModelLoadError, first_line
from vigil.models.torch_files import read_model_dict
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

ATTRIBUTES_FORMAT = "vigil-attributes"
ATTRIBUTES_FORMAT_VERSION = 1
ATTRIBUTES_FILE = "attributes.pt"
"""The head's file name inside an ``attributes`` artifact."""
SHIPPED_DIR = Path(__file__).resolve().parent / "attribute_heads"
DEFAULT_HIDDEN = 256
"""Width of the two hidden layers: twice the embedding; wider heads did not help on UTKFace."""
DEFAULT_DROPOUT = 0.2
AGE_CENTRE_YEARS = 35.0
AGE_SCALE_YEARS = 30.0
"""The age output is ``AGE_CENTRE_YEARS + AGE_SCALE_YEARS · raw``, so the raw output stays
near ±1 over 0-100 years (UTKFace's ages have mean ~33 and standard deviation ~20)."""
AGE_RANGE_Z = 1.2816
"""Half-width of the age range in spreads sigma: the two-sided 80 % interval of a Gaussian."""
MIN_LOG_SPREAD, MAX_LOG_SPREAD = math.log(0.5), math.log(40.0)
"""Bounds on the predicted log sigma (years), so a wild input cannot give a zero or absurd range."""
MAX_AGE_YEARS = 120
CHILD_AGE_YEARS = 16
CHILD_GENDER_CONFIDENCE = 0.7
"""The most ``gender_confidence`` says for a face estimated under ``CHILD_AGE_YEARS``: a child's
gender is right only 66-71 % of the time on UTKFace's held-out 0-15 year-olds, with the head and
the fine-tuned model alike (BENCHMARKS.md), however sure the model's own probability is."""
_NORM_EPSILON = 1e-12

Gender = Literal["male", "female"]


@dataclass(frozen=True)
class FaceAttributes:
    """What the attribute head says about one face.

    Attributes:
        age: Estimated age in years.
        age_range: ``(low, high)`` whole years, ``age ± AGE_RANGE_Z · sigma`` clipped to 0-120.
        gender: The more probable of the two.
        gender_confidence: Its probability, 0.5-1; at most ``CHILD_GENDER_CONFIDENCE`` for a
            face estimated under ``CHILD_AGE_YEARS`` (a child's gender is barely visible).
    """

    age: float
    age_range: tuple[int, int]
    gender: Gender
    gender_confidence: float

    def to_dict(self) -> dict[str, float | str | list[int]]:
        """The wire form (an event's ``attributes`` or ``vigil analyze --json``), rounded."""
        return {
            "age": round(self.age, 1),
            "age_range": list(self.age_range),
            "gender": self.gender,
            "gender_confidence": round(self.gender_confidence, 4),
        }


class AttributeHead(nn.Module):
    """Maps ``(N, in_dim)`` backbone embeddings to ``(N, 3)``: age (years), log sigma (years), female logit.

    The embeddings are L2-normalised, then standardised with the training set's per-feature
    mean and standard deviation (buffers, stored with the weights), then passed through an
    MLP with two hidden layers. The spread is multiplied by the ``spread_scale`` buffer (1
    until the trainer calibrates it).

    Args:
        in_dim: Backbone embedding length.
        hidden: Width of the hidden layers.
        dropout: Dropout after each hidden layer while training.

    Raises:
        ValueError: A non-positive size or a dropout outside [0, 1).

    Example:
        >>> head = AttributeHead()
        >>> head(torch.randn(4, 128)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self, in_dim: int = 128, hidden: int = DEFAULT_HIDDEN, dropout: float = DEFAULT_DROPOUT
    ) -> None:
        super().__init__()
        if min(in_dim, hidden) < 1:
            raise ValueError(f"attribute head sizes must be positive, got in {in_dim}, hidden {hidden}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim = in_dim
        self.hidden = hidden
        self.dropout = dropout
        self.input_mean: torch.Tensor
        self.input_std: torch.Tensor
        self.spread_scale: torch.Tensor
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("spread_scale", torch.ones(()))
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 3),
        )

    def standardise_with(self, embeddings: torch.Tensor) -> None:
        """Set the input standardisation from ``(N, in_dim)`` training embeddings."""
        unit = nn.functional.normalize(embeddings.float(), dim=1, eps=_NORM_EPSILON)
        with torch.no_grad():
            self.input_mean.copy_(unit.mean(dim=0))
            self.input_std.copy_(unit.std(dim=0).clamp_min(1e-6))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim)`` embeddings (any norm) → ``(N, 3)``: age years, log sigma years, female logit."""
        unit = nn.functional.normalize(embeddings, dim=1, eps=_NORM_EPSILON)
        return outputs_from_raw(self.mlp((unit - self.input_mean) / self.input_std), self.spread_scale)


def outputs_from_raw(raw: torch.Tensor, spread_scale: torch.Tensor) -> torch.Tensor:
    """A network's ``(N, 3)`` raw outputs → age (years), log sigma (years, scaled and bounded), female logit.

    Every attribute model (the head on embeddings, a fine-tuned copy of the backbone's last
    blocks) ends here, so they share one output convention and one loss.
    """
    age = AGE_CENTRE_YEARS + AGE_SCALE_YEARS * raw[:, 0]
    log_spread = (raw[:, 1] + torch.log(spread_scale)).clamp(MIN_LOG_SPREAD, MAX_LOG_SPREAD)
    return torch.stack([age, log_spread, raw[:, 2]], dim=1)


def predict_attributes(head: AttributeHead, embeddings: Embeddings) -> list[FaceAttributes]:
    """Age, age range and gender of each face (no gradients, on the CPU).

    Args:
        head: The attribute head; it is put in evaluation mode.
        embeddings: ``(N, in_dim)`` float backbone embeddings of the head's embedder, any norm.

    Returns:
        One :class:`FaceAttributes` per row (empty for an empty batch).

    Raises:
        ValueError: ``embeddings`` is not ``(N, in_dim)``.
    """
    if embeddings.ndim != 2 or embeddings.shape[1] != head.in_dim:
        raise ValueError(f"expected (N, {head.in_dim}) embeddings, got shape {embeddings.shape}")
    if embeddings.shape[0] == 0:
        return []
    head.eval()
    with torch.no_grad():
        outputs = head(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))).numpy()
    return attributes_from_outputs(outputs)


def attributes_from_outputs(outputs: npt.NDArray[np.float32]) -> list[FaceAttributes]:
    """One :class:`FaceAttributes` per row of ``(N, 3)`` model outputs (age, log sigma, female logit)."""
    return [_attributes(float(age), float(log_spread), float(logit)) for age, log_spread, logit in outputs]


def track_attributes(head: AttributeHead, embeddings: Embeddings) -> FaceAttributes:
    """One answer for several faces of one person (a track's best faces): their mean embedding's.

    Args:
        head: The attribute head.
        embeddings: ``(N, in_dim)`` backbone embeddings, ``N >= 1``.

    Raises:
        ValueError: No embeddings, or the wrong shape.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"expected (N >= 1, {head.in_dim}) embeddings, got shape {embeddings.shape}")
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), _NORM_EPSILON)
    return predict_attributes(head, unit.mean(axis=0, keepdims=True).astype(np.float32))[0]


def attributes_to_bytes(head: AttributeHead, embedder_version: str) -> bytes:
    """Serialise a head: its shape, embedder and weights in a ``torch.save`` dict (no pickled classes).

    Args:
        head: The trained head.
        embedder_version: The backbone whose embeddings it was trained on.
    """
    buffer = io.BytesIO()
    torch.save(
        {
            "format": ATTRIBUTES_FORMAT,
            "format_version": ATTRIBUTES_FORMAT_VERSION,
            "embedder_version": embedder_version,
            "in_dim": head.in_dim,
            "hidden": head.hidden,
            "dropout": head.dropout,
            "state_dict": {name: tensor.detach().cpu() for name, tensor in head.state_dict().items()},
        },
        buffer,
    )
    return buffer.getvalue()


def attributes_from_bytes(data: bytes, embedder_version: str | None = None) -> AttributeHead:
    """Rebuild a head written by :func:`attributes_to_bytes`, in evaluation mode on the CPU.

    Args:
        data: The file's contents.
        embedder_version: When given, the head must have been trained on this embedder's embeddings.

    Raises:
        ModelLoadError: The bytes are not a readable Vigil attribute head (corrupt, truncated,
            another format or version, weights that do not fit), or it is for another embedder.
    """
    raw = read_model_dict(
        data,
        called="a Vigil attribute head",
        what="attribute head",
        format_name=ATTRIBUTES_FORMAT,
        version=ATTRIBUTES_FORMAT_VERSION,
        train="vigil train attributes",
    )
    trained_on = raw.get("embedder_version")
    if embedder_version is not None and trained_on != embedder_version:
        raise ModelLoadError(
            f"the attribute head is for embedder {trained_on!r}, not {embedder_version!r}; "
            "retrain it with `vigil train attributes` for this embedder"
        )
    in_dim, hidden, dropout = raw.get("in_dim"), raw.get("hidden"), raw.get("dropout")
    state = raw.get("state_dict")
    if (
        not isinstance(in_dim, int)
        or not isinstance(hidden, int)
        or not isinstance(dropout, float)
        or not isinstance(state, dict)
    ):
        raise ModelLoadError(
            f"the attribute head's sizes ({in_dim}, {hidden}), dropout or weights are malformed; retrain it"
        )
    try:
        head = AttributeHead(in_dim, hidden, dropout)
        head.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"the attribute head's weights do not fit its shape ({first_line(exc)})"
        ) from None
    return head.eval()


def read_attributes(path: Path, embedder_version: str | None = None) -> AttributeHead:
    """:func:`attributes_from_bytes` of a file.

    Raises:
        ModelLoadError: The file cannot be read or is not a valid head (for that embedder).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read attribute head {path}: {exc.strerror}") from None
    try:
        return attributes_from_bytes(data, embedder_version)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def load_attribute_head(home: Path, embedder_version: str) -> tuple[AttributeHead, str]:
    """The attribute head in force: the promoted ``attributes`` artifact, else the one Vigil ships.

    Args:
        home: ``VIGIL_HOME`` (where the artifacts are).
        embedder_version: The backbone whose embeddings the head will read.

    Returns:
        The head, and where it came from (the artifact's version, or the shipped file).

    Raises:
        ModelLoadError: The promoted head is unreadable or for another embedder, or none is
            promoted and Vigil ships none for this embedder.
    """
    from vigil.artifacts import ArtifactRegistry

    artifact = ArtifactRegistry(home).current("attributes")
    if artifact is not None:
        return read_attributes(artifact.file(ATTRIBUTES_FILE), embedder_version), artifact.version
    shipped = shipped_attributes_path(embedder_version)
    if not shipped.is_file():
        raise ModelLoadError(
            f"no attribute head for embedder {embedder_version}: Vigil ships none for it; "
            "train one with `vigil train attributes --dataset DIR`"
        )
    return read_attributes(shipped, embedder_version), f"shipped {shipped.name}"


def shipped_attributes_path(embedder_version: str) -> Path:
    """Where the head shipped with Vigil for ``embedder_version`` is (it may not exist)."""
    return SHIPPED_DIR / f"{embedder_version}.pt"


def _attributes(age: float, log_spread: float, female_logit: float) -> FaceAttributes:
    age = min(max(age, 0.0), float(MAX_AGE_YEARS))
    half_width = AGE_RANGE_Z * math.exp(log_spread)
    low = max(0, math.floor(age - half_width))
    high = min(MAX_AGE_YEARS, math.ceil(age + half_width))
    female = 1.0 / (1.0 + math.exp(-female_logit)) if female_logit > -700 else 0.0
    gender: Gender = "female" if female >= 0.5 else "male"
    confidence = max(female, 1.0 - female)
    if age < CHILD_AGE_YEARS:
        confidence = min(confidence, CHILD_GENDER_CONFIDENCE)
    return FaceAttributes(age, (low, high), gender, confidence)
