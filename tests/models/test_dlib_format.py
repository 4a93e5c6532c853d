"""Tests of the pure-Python dlib serialization reader."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from vigil.errors import ModelLoadError
from vigil.models.dlib_format import (
    Conv,
    FullyConnected,
    Marker,
    load_network,
    parse_network,
    read_alias_tensor,
    read_bool,
    read_float,
    read_int,
    read_string,
    read_tensor,
)

DLIB_RESNET_CONVOLUTIONS = 29
DLIB_RESNET_PARAMETERS = 5_614_592
DLIB_RESNET_LAYERS = 108


def encode_int(value: int) -> bytes:
    """Builder: a dlib integer (control byte, then ``|value|`` little-endian, shortest form)."""
    magnitude = abs(value)
    payload = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
    return bytes([len(payload) | (0x80 if value < 0 else 0)]) + payload


def encode_float(mantissa: int, exponent: int) -> bytes:
    """Builder: a dlib scalar float ``mantissa * 2**exponent``."""
    return encode_int(mantissa) + encode_int(exponent)


def encode_tensor(values: np.ndarray, version: int = 2) -> bytes:
    """Builder: a dlib resizable_tensor holding ``values`` of shape ``(n, k, nr, nc)``."""
    header = b"".join(encode_int(value) for value in (version, *values.shape))
    return header + values.astype("<f4").tobytes()


@pytest.fixture(scope="module")
def model_bytes(dlib_weights_path: Path) -> bytes:
    return dlib_weights_path.read_bytes()


# ----------------------------------------------------------------------------- primitives


@pytest.mark.parametrize(
    ("data", "expected", "exception"),
    [
        (b"\x00", 0, None),  # zero takes no payload bytes
        (b"\x01\x05", 5, None),  # one positive byte
        (b"\x81\x05", -5, None),  # bit 7 of the control byte is the sign
        (b"\x02\x00\x01", 256, None),  # multi-byte, little-endian
        (b"\x83\x56\x34\x12", -0x123456, None),  # multi-byte negative
        (b"\x08" + (2**63 - 1).to_bytes(8, "little"), 2**63 - 1, None),  # int64 max
        (b"\x01\x05\xff", 5, None),  # bytes after the integer are left alone
        (b"", None, ModelLoadError),  # no control byte
        (b"\x02\x01", None, ModelLoadError),  # payload cut short
        (b"\x0f\x00", None, ModelLoadError),  # more than 8 payload bytes is malformed
    ],
)
def test_read_int(data: bytes, expected: int | None, exception: type[Exception] | None) -> None:
    # given dlib integer bytes
    if exception is not None:
        # when / then decoding fails cleanly
        with pytest.raises(exception):
            read_int(data, 0)
        return
    # when
    value, offset = read_int(data, 0)
    # then
    assert value == expected, f"decoded {value} from {data!r}, expected {expected}"
    assert offset == 1 + (data[0] & 0x0F), f"offset {offset} does not point past the integer"


@pytest.mark.parametrize("value", [0, 1, -1, 127, 255, -256, 65_535, -(2**40), 2**62])
def test_read_int_round_trips_builder(value: int) -> None:
    # given an integer encoded the way dlib writes it
    data = encode_int(value)
    # when
    decoded, offset = read_int(data, 0)
    # then
    assert (decoded, offset) == (value, len(data)), f"round trip of {value} gave {decoded} at {offset}"


@pytest.mark.parametrize(
    ("data", "expected", "exception"),
    [
        (b"\x01\x03abc", "abc", None),  # length-prefixed
        (b"\x00", "", None),  # empty string
        (b"\x01\x05ab", None, ModelLoadError),  # shorter than its length
        (b"\x81\x01a", None, ModelLoadError),  # negative length
    ],
)
def test_read_string(data: bytes, expected: str | None, exception: type[Exception] | None) -> None:
    # given dlib string bytes
    if exception is not None:
        # when / then
        with pytest.raises(exception):
            read_string(data, 0)
        return
    # when
    value, offset = read_string(data, 0)
    # then
    assert value == expected, f"decoded {value!r}, expected {expected!r}"
    assert offset == len(data), "the whole string should be consumed"


@pytest.mark.parametrize(
    ("data", "expected", "exception"),
    [
        (b"1", True, None),  # ASCII one
        (b"0", False, None),  # ASCII zero
        (b"\x01", None, ModelLoadError),  # a binary 1 is not a dlib bool
        (b"", None, ModelLoadError),  # truncated
    ],
)
def test_read_bool(data: bytes, expected: bool | None, exception: type[Exception] | None) -> None:
    # given dlib bool bytes
    if exception is not None:
        # when / then
        with pytest.raises(exception):
            read_bool(data, 0)
        return
    # when
    value, offset = read_bool(data, 0)
    # then
    assert (value, offset) == (expected, 1), f"decoded {value} at {offset}, expected {expected}"


@pytest.mark.parametrize(
    ("mantissa", "exponent", "expected"),
    [
        (3, -2, 0.75),  # m * 2**e with a negative exponent
        (-5, 3, -40.0),  # negative mantissa, positive exponent
        (0, 11, 0.0),  # dlib writes 0.0 as mantissa 0
        (10_737_418, -28, 0.03999999910593033),  # loss_metric margin as stored in the model
        (0, 32000, math.inf),  # dlib's +inf marker exponent
        (0, 32001, -math.inf),  # dlib's -inf marker exponent
    ],
)
def test_read_float(mantissa: int, exponent: int, expected: float) -> None:
    # given a float encoded as mantissa and exponent
    data = encode_float(mantissa, exponent)
    # when
    value, offset = read_float(data, 0)
    # then
    assert value == expected, f"{mantissa}*2^{exponent} decoded as {value}, expected {expected}"
    assert offset == len(data), "both integers should be consumed"


def test_read_float_nan_marker() -> None:
    # given dlib's NaN marker exponent
    data = encode_float(0, 32002)
    # when
    value, _ = read_float(data, 0)
    # then
    assert math.isnan(value), f"exponent 32002 should decode as NaN, got {value}"


def test_read_float_truncated() -> None:
    # given a mantissa without its exponent
    data = encode_int(3)
    # when / then
    with pytest.raises(ModelLoadError, match="truncated"):
        read_float(data, 0)


def test_read_tensor() -> None:
    # given a (2, 3, 1, 1) tensor in dlib's layout
    values = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) - 2.5
    data = encode_tensor(values) + b"tail"
    # when
    tensor, offset = read_tensor(data, 0)
    # then
    np.testing.assert_array_equal(tensor, values, err_msg="tensor values differ")
    assert tensor.dtype == np.float32, f"expected float32, got {tensor.dtype}"
    assert offset == len(data) - 4, "the tensor should end before the tail"


@pytest.mark.parametrize(
    ("data", "exception_match"),
    [
        (encode_tensor(np.zeros((1, 1, 1, 2), np.float32), version=1), "version"),  # unknown version
        (encode_tensor(np.zeros((1, 1, 1, 2), np.float32))[:-1], "truncated"),  # data one byte short
        (b"".join(encode_int(value) for value in (2, 1, -1, 1, 1)), "negative"),  # negative dimension
    ],
)
def test_read_tensor_rejects(data: bytes, exception_match: str) -> None:
    # given a malformed tensor
    # when / then
    with pytest.raises(ModelLoadError, match=exception_match):
        read_tensor(data, 0)


def test_read_alias_tensor() -> None:
    # given an alias tensor (version 1 and a shape, no data)
    data = b"".join(encode_int(value) for value in (1, 1, 32, 1, 1))
    # when
    shape, offset = read_alias_tensor(data, 0)
    # then
    assert (shape, offset) == ((1, 32, 1, 1), len(data)), f"got {shape} at {offset}"


def test_float32_tensor_is_little_endian() -> None:
    # given a single float written little-endian, as dlib does on every platform
    data = b"".join(encode_int(value) for value in (2, 1, 1, 1, 1)) + struct.pack("<f", 1.5)
    # when
    tensor, _ = read_tensor(data, 0)
    # then
    assert tensor.item() == 1.5, f"expected 1.5, got {tensor.item()}"


# ----------------------------------------------------------------------------- the real model


def test_parses_dlib_resnet(model_bytes: bytes) -> None:
    # given dlib's face recognition model file
    # when
    network = parse_network(model_bytes)
    # then
    assert network.num_convolutions == DLIB_RESNET_CONVOLUTIONS, f"{network.num_convolutions} convolutions"
    assert network.num_params == DLIB_RESNET_PARAMETERS, f"{network.num_params} parameters"
    assert len(network.layers) == DLIB_RESNET_LAYERS, f"{len(network.layers)} computational layers"
    assert network.loss.distance_threshold == pytest.approx(0.6), "loss_metric threshold should be 0.6"
    assert (network.input_layer.rows, network.input_layer.cols) == (150, 150), "input should be 150x150"
    assert network.input_layer.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-3), "input means"
    first, last = network.layers[0], network.layers[-1]
    assert isinstance(first, Conv) and first.weight.shape == (32, 3, 7, 7), f"first layer is {first}"
    assert isinstance(last, FullyConnected) and last.weight.shape == (256, 128), "last layer is fc 256->128"
    assert sum(isinstance(node, Marker) for node in network.nodes) > 0, "tag/skip markers are kept"


def test_load_network_reads_file(dlib_weights_path: Path) -> None:
    # given the model's path
    # when
    network = load_network(dlib_weights_path)
    # then
    assert network.num_params == DLIB_RESNET_PARAMETERS, "the file reader agrees with the bytes reader"


def test_truncated_file_raises(model_bytes: bytes, tmp_path: Path) -> None:
    # given a copy of the model cut short
    path = tmp_path / "truncated.dat"
    path.write_bytes(model_bytes[: len(model_bytes) // 2])
    # when / then
    with pytest.raises(ModelLoadError, match="truncated") as error:
        load_network(path)
    assert str(path) in str(error.value), "the message names the file"
    assert "\n" not in str(error.value), "the message is one line"


def test_trailing_bytes_raise(model_bytes: bytes) -> None:
    # given the model followed by an extra byte
    # when / then
    with pytest.raises(ModelLoadError, match="trailing"):
        parse_network(model_bytes + b"\x00")


def test_unknown_layer_raises(model_bytes: bytes) -> None:
    # given the model with one relu_ layer renamed (same length, so offsets stay valid)
    data = model_bytes.replace(b"\x01\x05relu_", b"\x01\x05relux", 1)
    # when / then
    with pytest.raises(ModelLoadError, match="unknown layer type 'relux'"):
        parse_network(data)


def test_missing_file_raises(tmp_path: Path) -> None:
    # given a path with no file
    # when / then
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_network(tmp_path / "missing.dat")
