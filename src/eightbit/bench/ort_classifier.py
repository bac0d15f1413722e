"""ONNX Runtime peers for the classification benchmark (the ``bench`` extra).

The same FP32 classifier is exported with ``torch.onnx.export`` (the TorchScript exporter, which
needs no ``onnxscript``; batch size dynamic, sequence length fixed by the example), then
quantized with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations
quantized per call, MLAS kernels): ONNX Runtime's own INT8 recipe for Transformers on CPU.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from eightbit.bench.ort_peers import ort_session

INPUT_NAMES = ("input_ids", "attention_mask")


class _LogitsOnly(nn.Module):
    """``model(input_ids, attention_mask).logits``: positional tensors in, one tensor out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_classifier(model: nn.Module, example: dict[str, Tensor], path: Path) -> Path:
    """Export ``model`` (an FP32 sequence classifier) to ONNX at ``path``; returns ``path``."""
    args = tuple(example[name] for name in INPUT_NAMES)
    batch_axis = {name: {0: "batch"} for name in INPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notices, not our user's concern
        torch.onnx.export(
            _LogitsOnly(model.eval()),
            args,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes={**batch_axis, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def quantize_onnx_dynamic(source: Path, target: Path) -> Path:
    """ONNX Runtime dynamic INT8 quantization (signed int8 weights) of ``source`` into
    ``target``; returns ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()  # the quantizer logs a pre-processing hint on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        quiet.setLevel(level)
    return target


def ort_classifier_runner(
    path: Path, inputs: dict[str, Tensor], threads: int
) -> Callable[[], object]:
    """A zero-argument callable running the exported classifier on ``inputs``."""
    session = ort_session(str(path), threads)
    feed = {name: inputs[name].numpy() for name in INPUT_NAMES}
    return lambda: session.run(None, feed)
