"""ONNX Runtime peers for the kernel benchmark (the ``bench`` extra; not a runtime dependency).

FP32: one ``MatMul`` + ``Add``. INT8 static: ``QuantizeLinear`` then ``MatMulIntegerToFloat``
(u8 x s8 -> fp32 with scales and bias, MLAS kernels). INT8 dynamic: ``DynamicQuantizeMatMul``.
Each takes fp32 in and gives fp32 out, like our layers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def ort_session(model: bytes | str, threads: int):
    """A CPU ``InferenceSession`` on ``threads`` intra-op threads (``model``: bytes or a path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ORT's best CPU configuration (also its default): every graph optimization, fusions included
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _session(nodes: list, inputs: list, outputs: list, initializers: list, threads: int):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        ir_version=9,
    )
    return ort_session(model.SerializeToString(), threads)


def ort_linear(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    mode: str,
    threads: int,
    x_scale: float = 1.0,
    x_zero_point: int = 0,
) -> Callable[[], object]:
    """A zero-argument callable running ``x @ weight.T + bias`` in ORT (``mode``: fp32, static,
    dynamic)."""
    from onnx import TensorProto, helper, numpy_helper

    m, k = x.shape
    n = weight.shape[0]
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    if mode == "fp32":
        w = numpy_helper.from_array(np.ascontiguousarray(weight.T, dtype=np.float32), "W")
        nodes = [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], ["Y"]),
        ]
        inits = [w, b]
    else:
        w_scale = np.maximum(np.abs(weight).max(axis=1), 1e-8).astype(np.float32) / 127.0
        w_q = np.clip(np.round(weight / w_scale[:, None]), -127, 127).astype(np.int8)
        inits = [
            numpy_helper.from_array(np.ascontiguousarray(w_q.T), "Wq"),
            numpy_helper.from_array(w_scale, "Ws"),
            b,
        ]
        if mode == "static":
            inits += [
                numpy_helper.from_array(np.array(x_scale, np.float32), "Xs"),
                numpy_helper.from_array(np.array(x_zero_point, np.uint8), "Xz"),
            ]
            nodes = [
                helper.make_node("QuantizeLinear", ["X", "Xs", "Xz"], ["Xq"]),
                helper.make_node(
                    "MatMulIntegerToFloat",
                    ["Xq", "Wq", "Xs", "Ws", "Xz", "", "B"],
                    ["Y"],
                    domain="com.microsoft",
                ),
            ]
        elif mode == "dynamic":
            nodes = [
                helper.make_node(
                    "DynamicQuantizeMatMul",
                    ["X", "Wq", "Ws", "", "B"],
                    ["Y"],
                    domain="com.microsoft",
                )
            ]
        else:
            raise ValueError(f"mode must be fp32, static or dynamic, got {mode!r}")
    session = _session(nodes, [x_info], [y_info], inits, threads)
    feed = {"X": np.ascontiguousarray(x, dtype=np.float32)}
    return lambda: session.run(None, feed)
