"""The PyTorch runner of ONNX graphs, on small graphs built here with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from vigil.errors import ModelLoadError
from vigil.models.onnx_graph import read_onnx


def make_graph_file(
    path: Path, nodes: list[onnx.NodeProto], weights: dict[str, np.ndarray], outputs: list[str]
) -> Path:
    """Save a one-input (``x``) graph with the given nodes and initializers."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


def test_conv_and_batch_norm_fold_to_the_same_result(tmp_path: Path) -> None:
    # given Conv → BatchNormalization → PRelu with random weights
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "gamma": rng.uniform(0.5, 2, 4).astype(np.float32),
        "beta": rng.normal(size=4).astype(np.float32),
        "mean": rng.normal(size=4).astype(np.float32),
        "var": rng.uniform(0.5, 2, 4).astype(np.float32),
        "slope": rng.uniform(0, 0.3, (4, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], epsilon=1e-3),
        helper.make_node("PRelu", ["b", "slope"], ["y"]),
    ]
    graph = read_onnx(make_graph_file(tmp_path / "g.onnx", nodes, weights, ["y"]))
    x = torch.from_numpy(rng.normal(size=(2, 3, 9, 9)).astype(np.float32))
    # when it runs (folded) and the same arithmetic runs unfolded
    [folded] = graph(x)
    t = {name: torch.from_numpy(value) for name, value in weights.items()}
    expected = F.conv2d(x, t["w"], stride=2, padding=1)
    expected = F.batch_norm(expected, t["mean"], t["var"], t["gamma"], t["beta"], False, 0.0, 1e-3)
    expected = F.prelu(expected, t["slope"].reshape(-1))
    # then the batch norm was folded into the conv and the results agree
    assert [node.op for node in graph.nodes] == ["Conv", "PRelu"]
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)


def test_reshape_keeps_the_batch(tmp_path: Path) -> None:
    # given a head exported with batch 1: Transpose then Reshape to (1, -1, 2)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["y"]),
    ]
    weights = {"shape": np.array([1, -1, 2], np.int64)}
    graph = read_onnx(make_graph_file(tmp_path / "g.onnx", nodes, weights, ["y"]))
    x = torch.arange(3 * 2 * 4 * 5, dtype=torch.float32).reshape(3, 2, 4, 5)
    # when a batch of 3 runs
    [y] = graph(x)
    # then each image keeps its own rows
    assert y.shape == (3, 20, 2)
    torch.testing.assert_close(y[1], x[1].permute(1, 2, 0).reshape(20, 2))


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (None, "is missing"),  # no file at all
        (b"", "not a readable ONNX model"),  # empty
        (b"\x08\x07garbage that is not protobuf\xff\xff", "not a readable ONNX model"),  # noise
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path: Path, contents: bytes | None, message: str) -> None:
    path = tmp_path / "model.onnx"
    if contents is not None:
        path.write_bytes(contents)
    with pytest.raises(ModelLoadError, match=message):
        read_onnx(path)


def test_unsupported_operators_are_refused(tmp_path: Path) -> None:
    # given a graph with an operator the runner does not implement
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=1)]
    path = make_graph_file(tmp_path / "g.onnx", nodes, {}, ["y"])
    # then loading it fails up front, naming the operator
    with pytest.raises(ModelLoadError, match="operators Vigil cannot run: Softmax"):
        read_onnx(path)
