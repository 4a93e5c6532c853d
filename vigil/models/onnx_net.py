"""One ONNX network, run by OpenCV's DNN engine or by PyTorch (``vigil.models.onnx_graph``).

OpenCV is the faster of the two on a CPU for these small networks (measured on the 2-core
CI machine: YuNet 10 vs 12.5 ms per 640×384 frame, SFace 15 vs 19 ms per face) but runs
one image at a time on the CPU only; PyTorch batches and runs on CUDA. ``runtime: auto``
picks OpenCV on the CPU and PyTorch on CUDA. Both read the same verified file, and the
parity tests hold their outputs to each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from vigil.config.detector import OnnxRuntime
from vigil.errors import ConfigError, ModelLoadError
from vigil.models.model_files import ModelFile, model_path
from vigil.models.onnx_graph import OnnxGraph, read_onnx

logger = logging.getLogger(__name__)

FloatBatch = npt.NDArray[np.float32]


def pick_runtime(runtime: OnnxRuntime, device: torch.device) -> OnnxRuntime:
    """Resolve ``auto`` for ``device``.

    Raises:
        ConfigError: ``opencv`` was asked for on a CUDA device (OpenCV's wheel runs on the CPU only).
    """
    if runtime == "auto":
        return "opencv" if device.type == "cpu" else "torch"
    if runtime == "opencv" and device.type != "cpu":
        raise ConfigError(
            f"runtime 'opencv' runs on the CPU only, but device is {device.type}; "
            "use runtime 'torch' (or 'auto') for the GPU"
        )
    return runtime


class OnnxNet:
    """A loaded ONNX network: ``(N, 3, H, W)`` float32 in, its named outputs out.

    Args:
        path: The (already verified) ONNX file.
        output_names: The graph outputs to return, in this order.
        runtime: ``opencv`` or ``torch`` (resolve ``auto`` with ``pick_runtime`` first).
        device: Where the torch runtime runs.
    """

    def __init__(
        self, path: Path, output_names: Sequence[str], runtime: OnnxRuntime, device: torch.device
    ) -> None:
        self.path = path
        self.output_names = list(output_names)
        self.runtime = runtime
        self.device = device
        self._graph: OnnxGraph | None = None
        self._cv_net: Any = None  # cv2.dnn.Net; cv2 ships no type hints

    @classmethod
    def open(
        cls,
        models_dir: Path,
        model: ModelFile,
        output_names: Sequence[str],
        runtime: OnnxRuntime,
        device: torch.device,
    ) -> OnnxNet:
        """Verify ``model``'s file in ``models_dir`` (``model_path``) and load it.

        Raises:
            ModelLoadError: The file is missing, corrupt or cannot be run.
        """
        net = cls(model_path(models_dir, model), output_names, runtime, device)
        net.load()
        logger.info("%s loaded (%s runtime on %s)", model.name, runtime, device)
        return net

    def load(self) -> None:
        """Read the file into the chosen runtime.

        Raises:
            ModelLoadError: The file cannot be parsed or run.
        """
        if self.runtime == "opencv":
            import cv2

            try:
                net = cv2.dnn.readNetFromONNX(str(self.path))
            except cv2.error as exc:
                raise ModelLoadError(f"OpenCV cannot read {self.path} ({exc.err}); reinstall it") from None
            # OpenCV keeps its own thread pool: give it the budget torch has in this process.
            cv2.setNumThreads(torch.get_num_threads())
            self._cv_net = net
        else:
            graph = read_onnx(self.path)
            missing = set(self.output_names) - set(graph.output_names)
            if missing:
                raise ModelLoadError(f"{self.path} has no output(s) {sorted(missing)}")
            graph = graph.to(self.device).eval()
            self._graph = graph.to(memory_format=torch.channels_last)

    @property
    def loaded(self) -> bool:
        return self._graph is not None or self._cv_net is not None

    def run(self, batch: FloatBatch) -> list[FloatBatch]:
        """Run the network on a batch.

        Args:
            batch: ``(N, 3, H, W)`` float32 network input (N ≥ 1).

        Returns:
            One array per output name, each with N as its first dimension.
        """
        if not self.loaded:
            self.load()
        if self._cv_net is not None:
            return self._run_opencv(batch)
        assert self._graph is not None
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
            outputs = dict(zip(self._graph.output_names, self._graph(tensor), strict=True))
            return [outputs[name].float().cpu().numpy() for name in self.output_names]

    def _run_opencv(self, batch: FloatBatch) -> list[FloatBatch]:
        import cv2

        net = self._cv_net
        per_image: list[Sequence[FloatBatch]] = []
        for index in range(len(batch)):
            net.setInput(np.ascontiguousarray(batch[index : index + 1]))
            try:
                per_image.append(net.forward(self.output_names))
            except cv2.error as exc:
                raise ModelLoadError(f"OpenCV cannot run {self.path} ({exc.err})") from None
        return [
            np.concatenate([outputs[position] for outputs in per_image]).astype(np.float32, copy=False)
            for position in range(len(self.output_names))
        ]
