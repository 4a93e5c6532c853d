"""A small ONNX graph, run in PyTorch.

YuNet and SFace ship as ONNX files. OpenCV runs them one image at a time on the CPU; to
batch them and run them on a GPU we execute the same graph with torch operators instead.
Only the operators those two files use are supported (``OPERATORS``): a file with any other
operator is refused at load time rather than half-run.

Two liberties are taken, both checked against OpenCV by the parity tests:

- The files were exported with a batch of 1 and a fixed input size. A ``Reshape`` whose
  target starts with that 1 keeps the input's batch instead, so any batch and (for the
  fully convolutional detector) any input size run.
- A ``BatchNormalization`` that only reads a ``Conv`` is folded into that convolution at
  load time (the same arithmetic, one pass fewer over the activations).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vigil.errors import ModelLoadError

logger = logging.getLogger(__name__)

Attributes = dict[str, Any]


@dataclass(frozen=True)
class GraphNode:
    """One operator of the graph: ``outputs = op(inputs, **attributes)``."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Attributes = field(default_factory=dict)


class OnnxGraph(nn.Module):
    """Runs a list of ONNX nodes in order; the initializers are the module's buffers.

    Args:
        nodes: The graph's nodes in topological order (as ONNX stores them).
        tensors: Initializers (weights and constants) by ONNX name.
        inputs: Names of the graph inputs ``forward`` takes, in order.
        outputs: Names of the graph outputs ``forward`` returns, in order.
    """

    def __init__(
        self,
        nodes: list[GraphNode],
        tensors: dict[str, torch.Tensor],
        inputs: list[str],
        outputs: list[str],
    ) -> None:
        super().__init__()
        unknown = sorted({node.op for node in nodes} - set(OPERATORS))
        if unknown:
            raise ModelLoadError(f"the ONNX graph uses operators Vigil cannot run: {', '.join(unknown)}")
        self.nodes = _fold_batch_norms(nodes, tensors)
        self.input_names = inputs
        self.output_names = outputs
        # Buffer names may not contain dots; ONNX names may.
        self._buffer_of = {name: f"t{index}" for index, name in enumerate(tensors)}
        for name, tensor in tensors.items():
            self.register_buffer(self._buffer_of[name], tensor)

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        values: dict[str, torch.Tensor] = {name: getattr(self, key) for name, key in self._buffer_of.items()}
        values.update(zip(self.input_names, inputs, strict=True))
        for node in self.nodes:
            arguments = [values[name] for name in node.inputs if name]
            result = OPERATORS[node.op](arguments, node.attributes)
            values[node.outputs[0]] = result
        return [values[name] for name in self.output_names]


def read_onnx(path: Path) -> OnnxGraph:
    """Build an :class:`OnnxGraph` (CPU, float32) from an ONNX file.

    Graph inputs that have an initializer (SFace lists its weights as inputs) are weights,
    not ``forward`` arguments.

    Raises:
        ModelLoadError: The file is missing, not ONNX, or uses an unsupported operator.
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise ModelLoadError(f"model file {path} is missing; run `vigil models install-pack`") from None
    except Exception as exc:  # onnx raises protobuf DecodeError or plain errors on broken files
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    graph = model.graph
    if not graph.node:  # protobuf parses an empty or cut-off file as an empty model
        raise ModelLoadError(f"{path} is not a readable ONNX model (no graph nodes); install it again")
    tensors = {
        init.name: torch.from_numpy(np.array(numpy_helper.to_array(init), copy=True))
        for init in graph.initializer
    }
    nodes = [
        GraphNode(
            op=node.op_type,
            inputs=tuple(node.input),
            outputs=tuple(node.output),
            attributes={attr.name: _attribute_value(attr) for attr in node.attribute},
        )
        for node in graph.node
    ]
    inputs = [value.name for value in graph.input if value.name not in tensors]
    outputs = [value.name for value in graph.output]
    return OnnxGraph(nodes, tensors, inputs, outputs)


def _attribute_value(attribute: Any) -> Any:
    from onnx import helper

    value = helper.get_attribute_value(attribute)
    return value.decode() if isinstance(value, bytes) else value


# ----------------------------------------------------------------------------- operators


def _pads_2d(attributes: Attributes) -> tuple[int, int]:
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    if (top, left) != (bottom, right):
        raise ModelLoadError(f"asymmetric padding {attributes['pads']} is not supported")
    return int(top), int(left)


def _conv(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    x, weight, *bias = args
    return F.conv2d(
        x,
        weight,
        bias[0] if bias else None,
        stride=tuple(attributes.get("strides", [1, 1])),
        padding=_pads_2d(attributes),
        dilation=tuple(attributes.get("dilations", [1, 1])),
        groups=int(attributes.get("group", 1)),
    )


def _batch_norm(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    x, gamma, beta, mean, variance = args
    return F.batch_norm(x, mean, variance, gamma, beta, False, 0.0, float(attributes.get("epsilon", 1e-5)))


def _prelu(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    x, slope = args
    return F.prelu(x, slope.reshape(-1))


def _max_pool(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    return F.max_pool2d(
        args[0],
        kernel_size=tuple(attributes["kernel_shape"]),
        stride=tuple(attributes.get("strides") or attributes["kernel_shape"]),
        padding=_pads_2d(attributes),
        ceil_mode=bool(attributes.get("ceil_mode", 0)),
    )


def _resize(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    # YuNet's feature pyramid: nearest, asymmetric, floor, scales (1, 1, s, s) = torch's "nearest".
    if attributes.get("mode", "nearest") != "nearest":
        raise ModelLoadError(f"Resize mode {attributes['mode']!r} is not supported")
    x, _roi, scales = args[:3]
    height_scale, width_scale = (float(value) for value in scales[2:].tolist())
    return F.interpolate(x, scale_factor=(height_scale, width_scale), mode="nearest")


def _reshape(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    x, shape = args
    target = [int(value) for value in shape.tolist()]
    # Exported with batch 1: a leading 1 means "the batch" (see the module docstring).
    if target and target[0] == 1:
        target[0] = x.shape[0]
    # ONNX: 0 copies the input's dimension.
    target = [x.shape[index] if value == 0 else value for index, value in enumerate(target)]
    return x.reshape(target)


def _gemm(args: list[torch.Tensor], attributes: Attributes) -> torch.Tensor:
    a, b, *c = args
    if attributes.get("transA", 0):
        a = a.t()
    if attributes.get("transB", 0):
        b = b.t()
    out = float(attributes.get("alpha", 1.0)) * (a @ b)
    return out + float(attributes.get("beta", 1.0)) * c[0] if c else out


OPERATORS: dict[str, Callable[[list[torch.Tensor], Attributes], torch.Tensor]] = {
    "Add": lambda args, _: args[0] + args[1],
    "BatchNormalization": _batch_norm,
    "Conv": _conv,
    "Dropout": lambda args, _: args[0],
    "Flatten": lambda args, attributes: args[0].flatten(int(attributes.get("axis", 1))),
    "Gemm": _gemm,
    "MaxPool": _max_pool,
    "Mul": lambda args, _: args[0] * args[1],
    "PRelu": _prelu,
    "Relu": lambda args, _: F.relu(args[0]),
    "Reshape": _reshape,
    "Resize": _resize,
    "Sigmoid": lambda args, _: torch.sigmoid(args[0]),
    "Sub": lambda args, _: args[0] - args[1],
    "Transpose": lambda args, attributes: args[0].permute(*attributes["perm"]),
}


# ----------------------------------------------------------------------------- folding


def _fold_batch_norms(nodes: list[GraphNode], tensors: dict[str, torch.Tensor]) -> list[GraphNode]:
    """Fold each ``Conv → BatchNormalization`` pair whose conv output has no other reader.

    ``tensors`` gains the folded weights and bias under new names.
    """
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    producer = {node.outputs[0]: node for node in nodes}
    folded: list[GraphNode] = []
    replaced: set[int] = set()
    for node in nodes:
        source = producer.get(node.inputs[0]) if node.inputs else None
        if (
            node.op == "BatchNormalization"
            and source is not None
            and source.op == "Conv"
            and readers[source.outputs[0]] == 1
            and all(name in tensors for name in (*node.inputs[1:], *source.inputs[1:]))
        ):
            weight_name, bias_name = _fold_into(source, node, tensors)
            replaced.add(id(source))
            folded.append(
                GraphNode("Conv", (source.inputs[0], weight_name, bias_name), node.outputs, source.attributes)
            )
        else:
            folded.append(node)
    return [node for node in folded if id(node) not in replaced]


def _fold_into(conv: GraphNode, norm: GraphNode, tensors: dict[str, torch.Tensor]) -> tuple[str, str]:
    gamma, beta, mean, variance = (tensors[name].double() for name in norm.inputs[1:5])
    weight = tensors[conv.inputs[1]].double()
    bias = tensors[conv.inputs[2]].double() if len(conv.inputs) > 2 else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(variance + float(norm.attributes.get("epsilon", 1e-5)))
    weight_name, bias_name = f"{norm.outputs[0]}:folded_weight", f"{norm.outputs[0]}:folded_bias"
    tensors[weight_name] = (weight * scale.view(-1, 1, 1, 1)).float()
    tensors[bias_name] = ((bias - mean) * scale + beta).float()
    return weight_name, bias_name
