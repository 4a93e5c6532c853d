"""A pure-Python reader of dlib's serialization format, enough for its DNN models.

dlib writes every value with ``dlib::serialize``; the encodings this module decodes are:

- integer: a control byte (bit 7 set = negative, low 4 bits = byte count ``n``), then
  ``|value|`` in ``n`` little-endian bytes;
- string: an integer length, then the bytes;
- bool: one ASCII byte, ``'0'`` or ``'1'``;
- scalar float/double: an int64 mantissa ``m`` and an int16 exponent ``e`` (two integers as
  above), value ``m * 2**e``; exponents 32000/32001/32002 mean +inf/-inf/NaN
  (``dlib/float_details.h``);
- tensor (``resizable_tensor``): integer version 2, then ``n, k, nr, nc``, then
  ``n*k*nr*nc`` raw little-endian float32;
- alias tensor: integer version 1, then ``n, k, nr, nc`` (a view; no data).

A network ``loss<L_top<...<L_bottom<input>>>>`` is written as: the loss layer (version 1, its
details), then the subnetwork, where every ``add_layer`` writes its version and recurses into
its subnetwork *before* writing its own details. So the file holds the chain of layer versions
top-down (2 = computational layer, 1 = tag or skip layer: the two are indistinguishable, and
tag ids are not stored), then the input layer, then each computational layer's details and
its training state (three bools and empty tensors) bottom-up.

The parser returns a :class:`DlibNetwork` whose ``nodes`` list the computational layers and
the tag/skip markers bottom-up, as they sit in the stack; turning that into a compute graph
is :mod:`vigil.models.dlib_resnet`'s job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from vigil.errors import ModelLoadError

logger = logging.getLogger(__name__)

_SIGN_BIT = 0x80
_SIZE_MASK = 0x0F
_FLOAT_EXPONENT_INF = 32000
_FLOAT_EXPONENT_NEG_INF = 32001
_FLOAT_EXPONENT_NAN = 32002
_TENSOR_VERSION = 2
_ALIAS_TENSOR_VERSION = 1
_LOSS_LAYER_VERSION = 1
_ADD_LAYER_VERSION = 2
_MARKER_VERSION = 1  # add_tag_layer and add_skip_layer both write version 1
_INPUT_ADD_LAYER_VERSIONS = (2, 3)  # 3 adds _sample_expansion_factor
_AFFINE_CONV_MODE = 0  # dlib::layer_mode::CONV_MODE: one gamma/beta per channel

FloatTensor: TypeAlias = npt.NDArray[np.float32]


# ----------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class LossMetric:
    """``loss_metric_``: the training loss; only its distance threshold matters at run time.

    Attributes:
        margin: Training margin around the threshold.
        distance_threshold: Euclidean distance below which two descriptors are the same person.
    """

    margin: float
    distance_threshold: float


@dataclass(frozen=True)
class InputRGBImage:
    """``input_rgb_image_sized``: RGB planar input, ``(pixel - mean_c) / 256``.

    Attributes:
        mean_rgb: Per-channel means subtracted from the 0-255 pixel values, R, G, B.
        rows: Expected image height in pixels.
        cols: Expected image width in pixels.
    """

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True)
class Conv:
    """``con_``: 2-D cross-correlation with bias.

    Attributes:
        weight: ``(out, in, kh, kw)`` float32 filters.
        bias: ``(out,)`` float32.
        stride: ``(y, x)``.
        padding: ``(y, x)`` zero padding on each side.
    """

    weight: FloatTensor
    bias: FloatTensor
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def num_params(self) -> int:
        """Number of stored parameters."""
        return int(self.weight.size + self.bias.size)


@dataclass(frozen=True)
class Affine:
    """``affine_``: per-channel ``gamma * x + beta`` (a frozen batch norm).

    Attributes:
        gamma: ``(C,)`` float32.
        beta: ``(C,)`` float32.
    """

    gamma: FloatTensor
    beta: FloatTensor

    @property
    def num_params(self) -> int:
        """Number of stored parameters."""
        return int(self.gamma.size + self.beta.size)


@dataclass(frozen=True)
class Relu:
    """``relu_``."""

    num_params: int = 0


@dataclass(frozen=True)
class Pool:
    """``max_pool_`` / ``avg_pool_``.

    Attributes:
        kind: ``"max"`` or ``"avg"``.
        window: ``(rows, cols)``; ``(0, 0)`` pools over the whole input.
        stride: ``(y, x)``.
        padding: ``(y, x)``.
    """

    kind: str
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    num_params: int = 0

    @property
    def is_global(self) -> bool:
        """True when the window covers the whole input (dlib's ``*_pool_everything``)."""
        return self.window == (0, 0)


@dataclass(frozen=True)
class AddPrev:
    """``add_prev_``: adds the output of a tagged layer; mismatched shapes are zero-padded."""

    num_params: int = 0


@dataclass(frozen=True)
class FullyConnected:
    """``fc_`` without bias: ``y = x @ weight``.

    Attributes:
        weight: ``(num_inputs, num_outputs)`` float32 (the transpose of a torch Linear weight).
    """

    weight: FloatTensor

    @property
    def num_params(self) -> int:
        """Number of stored parameters."""
        return int(self.weight.size)


@dataclass(frozen=True)
class Marker:
    """An ``add_tag_layer`` or ``add_skip_layer``; the file does not say which, nor the id."""

    num_params: int = 0


Layer: TypeAlias = Conv | Affine | Relu | Pool | AddPrev | FullyConnected
Node: TypeAlias = Layer | Marker


@dataclass(frozen=True)
class DlibNetwork:
    """A parsed dlib DNN.

    Attributes:
        loss: The loss layer.
        input_layer: The input layer.
        nodes: Computational layers and tag/skip markers, bottom-up (input side first).
    """

    loss: LossMetric
    input_layer: InputRGBImage
    nodes: tuple[Node, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The computational layers, bottom-up."""
        return tuple(node for node in self.nodes if not isinstance(node, Marker))

    @property
    def num_params(self) -> int:
        """Total number of stored parameters."""
        return sum(node.num_params for node in self.nodes)

    @property
    def num_convolutions(self) -> int:
        """Number of convolution layers."""
        return sum(isinstance(node, Conv) for node in self.nodes)


# ----------------------------------------------------------------------------- primitives


def read_int(data: bytes, offset: int) -> tuple[int, int]:
    """Decode one dlib integer.

    Args:
        data: The serialized bytes.
        offset: Where the integer's control byte is.

    Returns:
        The value and the offset just past it.

    Raises:
        ModelLoadError: The data ends early or the control byte is malformed.
    """
    _need(data, offset, 1, "integer control byte")
    control = data[offset]
    size = control & _SIZE_MASK
    if size > 8 or control & 0x70:
        raise ModelLoadError(f"malformed dlib integer control byte 0x{control:02x} at byte {offset}")
    _need(data, offset + 1, size, "integer")
    magnitude = int.from_bytes(data[offset + 1 : offset + 1 + size], "little")
    return (-magnitude if control & _SIGN_BIT else magnitude), offset + 1 + size


def read_string(data: bytes, offset: int) -> tuple[str, int]:
    """Decode one dlib string (integer length + bytes).

    Returns:
        The string (decoded as latin-1, so any byte is accepted) and the offset past it.

    Raises:
        ModelLoadError: The data ends early or the length is negative.
    """
    length, offset = read_int(data, offset)
    if length < 0:
        raise ModelLoadError(f"negative dlib string length {length} at byte {offset}")
    _need(data, offset, length, "string")
    return data[offset : offset + length].decode("latin-1"), offset + length


def read_bool(data: bytes, offset: int) -> tuple[bool, int]:
    """Decode one dlib bool (ASCII ``'0'`` or ``'1'``).

    Raises:
        ModelLoadError: The data ends early or the byte is neither ``'0'`` nor ``'1'``.
    """
    _need(data, offset, 1, "bool")
    byte = data[offset]
    if byte not in (ord("0"), ord("1")):
        raise ModelLoadError(f"malformed dlib bool byte 0x{byte:02x} at byte {offset}")
    return byte == ord("1"), offset + 1


def read_float(data: bytes, offset: int) -> tuple[float, int]:
    """Decode one dlib scalar float/double: int64 mantissa ``m``, int16 exponent ``e``, ``m * 2**e``.

    Raises:
        ModelLoadError: The data ends early.
    """
    mantissa, offset = read_int(data, offset)
    exponent, offset = read_int(data, offset)
    if exponent == _FLOAT_EXPONENT_INF:
        return math.inf, offset
    if exponent == _FLOAT_EXPONENT_NEG_INF:
        return -math.inf, offset
    if exponent == _FLOAT_EXPONENT_NAN:
        return math.nan, offset
    return math.ldexp(float(mantissa), exponent), offset


def read_tensor(data: bytes, offset: int) -> tuple[FloatTensor, int]:
    """Decode one dlib ``resizable_tensor``.

    Returns:
        A ``(n, k, nr, nc)`` float32 array (a copy) and the offset past it.

    Raises:
        ModelLoadError: Wrong version, negative dimension, or the data ends early.
    """
    start = offset
    version, offset = read_int(data, offset)
    if version != _TENSOR_VERSION:
        raise ModelLoadError(f"unsupported dlib tensor version {version} at byte {start}")
    shape, offset = _read_dims(data, offset)
    count = math.prod(shape)
    _need(data, offset, 4 * count, f"tensor of shape {shape}")
    values = np.frombuffer(data, dtype="<f4", count=count, offset=offset).astype(np.float32)
    return values.reshape(shape), offset + 4 * count


def read_alias_tensor(data: bytes, offset: int) -> tuple[tuple[int, int, int, int], int]:
    """Decode one dlib ``alias_tensor`` (a shape, no data).

    Returns:
        ``(n, k, nr, nc)`` and the offset past it.

    Raises:
        ModelLoadError: Wrong version, negative dimension, or the data ends early.
    """
    start = offset
    version, offset = read_int(data, offset)
    if version != _ALIAS_TENSOR_VERSION:
        raise ModelLoadError(f"unsupported dlib alias_tensor version {version} at byte {start}")
    return _read_dims(data, offset)


# ----------------------------------------------------------------------------- network


def load_network(path: Path) -> DlibNetwork:
    """Read and parse a dlib DNN file such as ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises:
        ModelLoadError: The file cannot be read or is not a model this reader understands.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read dlib model {path}: {error.strerror or error}") from error
    return parse_network(data, source=str(path))


def parse_network(data: bytes, source: str = "dlib model") -> DlibNetwork:
    """Parse a serialized ``loss_metric`` network, consuming ``data`` exactly.

    Args:
        data: The whole file.
        source: Named in error messages.

    Raises:
        ModelLoadError: Truncated data, an unknown layer, an unexpected version or trailing bytes.
    """
    try:
        return _parse_network(data)
    except ModelLoadError as error:
        raise ModelLoadError(f"{source}: {error}") from error


# ----------------------------------------------------------------------------- private helpers


def _need(data: bytes, offset: int, count: int, what: str) -> None:
    if offset + count > len(data):
        raise ModelLoadError(
            f"truncated: {what} needs {count} bytes at byte {offset} "
            f"but only {max(len(data) - offset, 0)} remain"
        )


def _read_dims(data: bytes, offset: int) -> tuple[tuple[int, int, int, int], int]:
    start = offset
    dims = []
    for _ in range(4):
        value, offset = read_int(data, offset)
        dims.append(value)
    if min(dims) < 0:
        raise ModelLoadError(f"negative tensor dimension {tuple(dims)} at byte {start}")
    return (dims[0], dims[1], dims[2], dims[3]), offset


class _Cursor:
    """Walks ``data`` with the primitive decoders, tracking the offset."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def next_int(self) -> int:
        value, self.offset = read_int(self.data, self.offset)
        return value

    def next_string(self) -> str:
        value, self.offset = read_string(self.data, self.offset)
        return value

    def next_bool(self) -> bool:
        value, self.offset = read_bool(self.data, self.offset)
        return value

    def next_float(self) -> float:
        value, self.offset = read_float(self.data, self.offset)
        return value

    def next_tensor(self) -> FloatTensor:
        value, self.offset = read_tensor(self.data, self.offset)
        return value

    def next_alias(self) -> tuple[int, int, int, int]:
        value, self.offset = read_alias_tensor(self.data, self.offset)
        return value

    def next_pair(self) -> tuple[int, int]:
        first = self.next_int()
        return first, self.next_int()

    def string_starts_here(self, prefix: str) -> bool:
        """True when a string beginning with ``prefix`` is encoded at the current offset."""
        try:
            text, _ = read_string(self.data, self.offset)
        except ModelLoadError:
            return False
        return text.startswith(prefix)


def _parse_network(data: bytes) -> DlibNetwork:
    cursor = _Cursor(data)
    version = cursor.next_int()
    if version != _LOSS_LAYER_VERSION:
        raise ModelLoadError(f"unexpected loss layer version {version}; not a dlib DNN model")
    loss = _read_loss(cursor)

    # Versions of the add_layer / tag / skip chain, top-down, until the input layer's name.
    chain: list[int] = []
    while True:
        at = cursor.offset
        version = cursor.next_int()
        if cursor.string_starts_here("input"):
            input_add_layer_version = version
            break
        if version not in (_ADD_LAYER_VERSION, _MARKER_VERSION):
            raise ModelLoadError(f"unexpected layer version {version} at byte {at}")
        chain.append(version)
    if input_add_layer_version not in _INPUT_ADD_LAYER_VERSIONS:
        raise ModelLoadError(f"unexpected add_layer version {input_add_layer_version} above the input layer")
    input_layer = _read_input(cursor)

    nodes: list[Node] = [_read_layer(cursor)]
    _skip_training_state(cursor, input_add_layer_version, over_input=True)
    for version in reversed(chain):
        if version == _MARKER_VERSION:
            nodes.append(Marker())
        else:
            nodes.append(_read_layer(cursor))
            _skip_training_state(cursor, version, over_input=False)
    if cursor.offset != len(data):
        raise ModelLoadError(
            f"{len(data) - cursor.offset} trailing bytes after the network at byte {cursor.offset}"
        )
    network = DlibNetwork(loss=loss, input_layer=input_layer, nodes=tuple(nodes))
    logger.debug(
        "parsed dlib network: %d layers, %d convolutions, %d parameters",
        len(network.layers),
        network.num_convolutions,
        network.num_params,
    )
    return network


def _read_loss(cursor: _Cursor) -> LossMetric:
    name = cursor.next_string()
    if name != "loss_metric_2":
        raise ModelLoadError(f"unsupported loss layer {name!r}; expected 'loss_metric_2'")
    margin = cursor.next_float()
    return LossMetric(margin=margin, distance_threshold=cursor.next_float())


def _read_input(cursor: _Cursor) -> InputRGBImage:
    name = cursor.next_string()
    if name != "input_rgb_image_sized":
        raise ModelLoadError(f"unsupported input layer {name!r}; expected 'input_rgb_image_sized'")
    mean_rgb = (cursor.next_float(), cursor.next_float(), cursor.next_float())
    rows, cols = cursor.next_pair()
    return InputRGBImage(mean_rgb=mean_rgb, rows=rows, cols=cols)


def _skip_training_state(cursor: _Cursor, version: int, over_input: bool) -> None:
    """Consume what ``add_layer`` writes after its details (flags and scratch tensors)."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, outputs disabled
        cursor.next_bool()
    for _ in range(3):  # x_grad, cached_output, then params_grad or grad_final
        cursor.next_tensor()
    if over_input and version >= 3:
        cursor.next_int()  # _sample_expansion_factor


def _read_layer(cursor: _Cursor) -> Layer:
    at = cursor.offset
    name = cursor.next_string()
    reader = _LAYER_READERS.get(name)
    if reader is None:
        raise ModelLoadError(
            f"unknown layer type {name!r} at byte {at}; supported: {', '.join(_LAYER_READERS)}"
        )
    return reader(cursor)


def _read_conv(cursor: _Cursor) -> Conv:
    params = cursor.next_tensor().reshape(-1)
    num_filters = cursor.next_int()
    rows, cols = cursor.next_pair()
    stride = cursor.next_pair()
    padding = cursor.next_pair()
    filters_shape = cursor.next_alias()
    biases_shape = cursor.next_alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers (training only)
        cursor.next_float()
    weight_count = math.prod(filters_shape)
    if filters_shape[0] != num_filters or filters_shape[2:] != (rows, cols):
        raise ModelLoadError(
            f"con_ filter shape {filters_shape} does not match {num_filters} {rows}x{cols} filters"
        )
    if math.prod(biases_shape) != num_filters or weight_count + num_filters != params.size:
        raise ModelLoadError(f"con_ holds {params.size} parameters, expected {weight_count} + {num_filters}")
    weight = params[:weight_count].reshape(filters_shape)
    return Conv(weight=weight, bias=params[weight_count:].copy(), stride=stride, padding=padding)


def _read_affine(cursor: _Cursor) -> Affine:
    params = cursor.next_tensor().reshape(-1)
    gamma_shape = cursor.next_alias()
    beta_shape = cursor.next_alias()
    mode = cursor.next_int()
    channels = math.prod(gamma_shape)
    if mode != _AFFINE_CONV_MODE or gamma_shape[2:] != (1, 1):
        raise ModelLoadError(f"unsupported affine_ mode {mode} (shape {gamma_shape}); only per-channel is")
    if gamma_shape != beta_shape or params.size != 2 * channels:
        raise ModelLoadError(f"affine_ holds {params.size} parameters, expected 2 x {channels}")
    return Affine(gamma=params[:channels].copy(), beta=params[channels:].copy())


def _read_pool(kind: str) -> Callable[[_Cursor], Layer]:
    def read(cursor: _Cursor) -> Pool:
        window = cursor.next_pair()
        stride = cursor.next_pair()
        return Pool(kind=kind, window=window, stride=stride, padding=cursor.next_pair())

    return read


def _read_fc(cursor: _Cursor) -> FullyConnected:
    num_outputs = cursor.next_int()
    num_inputs = cursor.next_int()
    params = cursor.next_tensor().reshape(-1)
    weights_shape = cursor.next_alias()
    biases_shape = cursor.next_alias()
    bias_mode = cursor.next_int()
    for _ in range(4):  # learning-rate and weight-decay multipliers (training only)
        cursor.next_float()
    if math.prod(biases_shape) != 0 or params.size != num_inputs * num_outputs:
        raise ModelLoadError(
            f"fc_ with a bias (mode {bias_mode}) or {params.size} parameters is unsupported; "
            f"expected {num_inputs}x{num_outputs} weights only"
        )
    if weights_shape[:2] != (num_inputs, num_outputs):
        raise ModelLoadError(f"fc_ weight shape {weights_shape} does not match {num_inputs}x{num_outputs}")
    return FullyConnected(weight=params.reshape(num_inputs, num_outputs))


_LAYER_READERS: dict[str, Callable[[_Cursor], Layer]] = {
    "con_4": _read_conv,
    "affine_": _read_affine,
    "relu_": lambda cursor: Relu(),
    "max_pool_2": _read_pool("max"),
    "avg_pool_2": _read_pool("avg"),
    "add_prev_": lambda cursor: AddPrev(),
    "fc_2": _read_fc,
}
