"""Probe the native INT8 GEMM against torch FP32, fbgemm and ONNX Runtime, in one run.

Usage: ``python bench/native_kernel_probe.py [--threads 2] [--repeats 5] [--shapes M,K,N ...]
[--no-vnni]``.
Each timing is the median of ``--repeats`` rounds; within a round every contender runs for
``--seconds`` back to back, so background load hits them alike. ``--cpu-time`` (single thread
only) times with the process CPU clock, which does not count the time the OS gives other
processes: the fairest kernel-against-kernel comparison on a shared machine. Prints one line per
shape with speed ratios against torch FP32 ``F.linear`` and the geometric mean over M >= 32.
``ours*`` run the VNNI microkernels where the CPU has them; ``--no-vnni`` forces the AVX2 ones.
``ours7_*``: the exact 7-bit path (activations quantized with a reduce_range scale to [0, 127]).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from eightbit.kernels import native

DEFAULT_M = (1, 8, 32, 128, 512, 2048)
DEFAULT_KN = ((512, 512), (512, 2048), (2048, 512), (768, 3072), (3072, 768))


CLOCK: Callable[[], float] = time.perf_counter


def _time(fn: Callable[[], object], seconds: float) -> float:
    fn()
    fn()
    count, start = 0, CLOCK()
    while True:
        fn()
        count += 1
        elapsed = CLOCK() - start
        if elapsed >= seconds:
            return elapsed / count


def _ort_contenders(m: int, k: int, n: int, w: torch.Tensor, x_q: torch.Tensor, zp: int, threads):
    """ORT FP32 MatMul and INT8 MatMulInteger sessions, or {} if onnxruntime is missing."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return {}

    def session(nodes, inputs, outputs, inits):
        graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        return ort.InferenceSession(
            model.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )

    wt = w.numpy().T.copy()
    s_fp = session(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(wt, "W")],
    )
    wq = np.clip(np.round(wt / (np.abs(wt).max() / 127)), -127, 127).astype(np.int8)
    s_q = session(
        [helper.make_node("MatMulInteger", ["X", "W", "xz"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(wq, "W"), numpy_helper.from_array(np.array(zp, np.uint8), "xz")],
    )
    xf, xq = torch.randn(m, k).numpy(), x_q.numpy()
    return {
        "ort_fp32": lambda: s_fp.run(None, {"X": xf}),
        "ort_int8": lambda: s_q.run(None, {"X": xq}),
    }


def probe(m: int, k: int, n: int, threads: int, repeats: int, seconds: float) -> dict[str, float]:
    """Median seconds per call of each contender at (m, k, n)."""
    x = torch.randn(m, k)
    w = torch.randn(n, k) * 0.05
    b = torch.randn(n)
    w_scale = (w.abs().amax(1) / 127).float()
    w_q = torch.clamp(torch.round(w / w_scale[:, None]), -127, 127).to(torch.int8)
    packed = native.pack_weight(w_q)
    x_scale = float((x.max() - x.min()) / 255)
    zp = round(-float(x.min()) / x_scale)
    x_q = native.quantize_u8(x, x_scale, zp)
    out_scale = x_scale * w_scale
    # 7-bit activations (reduce_range qparams): the exact vpmaddubsw path
    x_scale7 = float((x.max() - x.min()) / 127)
    zp7 = round(-float(x.min()) / x_scale7)
    x_q7 = native.quantize_u8(x, x_scale7, zp7, 0, 127)
    out_scale7 = x_scale7 * w_scale
    qw = torch.quantize_per_tensor(w, float(w.abs().max() / 127), 0, torch.qint8)
    fb_packed = torch.ops.quantized.linear_prepack(qw, b)
    fb_in = torch.quantize_per_tensor(x, x_scale, zp, torch.quint8)
    contenders: dict[str, Callable[[], object]] = {
        "fp32": lambda: F.linear(x, w, b),
        "ours_u8_f32": lambda: native.linear_fp32_out(x_q, zp, packed, out_scale, b),
        "ours_static": lambda: native.linear_static_fp32(x, x_scale, zp, packed, w_scale, b),
        "ours7_u8_f32": lambda: native.linear_fp32_out(
            x_q7, zp7, packed, out_scale7, b, seven_bit=True
        ),
        "ours7_static": lambda: native.linear_static_fp32(
            x, x_scale7, zp7, packed, w_scale, b, 0, 127
        ),
        "ours_dynamic": lambda: native.linear_dynamic(x, packed, w_scale, b),
        "ours7_dynamic": lambda: native.linear_dynamic(x, packed, w_scale, b, seven_bit=True),
        "fbgemm_static": lambda: torch.ops.quantized.linear(fb_in, fb_packed, 0.05, 128),
        "fbgemm_dynamic": lambda: torch.ops.quantized.linear_dynamic(x, fb_packed),
        **_ort_contenders(m, k, n, w, x_q, zp, threads),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(_time(fn, seconds))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--shapes", nargs="*", help="M,K,N triples (default: the issue's grid)")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU clock (1 thread)")
    parser.add_argument("--no-vnni", action="store_true", help="our AVX2 kernels even on VNNI CPUs")
    args = parser.parse_args()
    if args.no_vnni and native.vnni_available():
        native.use_vnni(False)
    print(f"our microkernels: {'avx512-vnni' if native.vnni_enabled() else 'avx2'}", flush=True)
    if args.cpu_time:
        if args.threads != 1:
            parser.error("--cpu-time needs --threads 1")
        global CLOCK
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    else:
        shapes = [(m, k, n) for m in DEFAULT_M for k, n in DEFAULT_KN]
    logs: dict[str, list[float]] = {}
    for m, k, n in shapes:
        med = probe(m, k, n, args.threads, args.repeats, args.seconds)
        fp = med["fp32"]
        gflops = 2 * m * k * n / fp / 1e9
        ratios = {name: fp / t for name, t in med.items() if name != "fp32"}
        line = " ".join(f"{name} {r:.2f}" for name, r in ratios.items())
        ours_vs_ort = med.get("ort_int8", math.nan) / med["ours_u8_f32"]
        ours7_vs_ort = med.get("ort_int8", math.nan) / med["ours7_u8_f32"]
        print(
            f"M={m:5d} K={k:5d} N={n:5d} fp32 {gflops:6.1f} GF/s | {line} | "
            f"ours/ort_int8 {ours_vs_ort:.2f} ours7/ort_int8 {ours7_vs_ort:.2f}",
            flush=True,
        )
        if m >= 32:
            for name, r in ratios.items():
                logs.setdefault(name, []).append(math.log(r))
            logs.setdefault("ours/ort_int8", []).append(math.log(ours_vs_ort))
            logs.setdefault("ours7/ort_int8", []).append(math.log(ours7_vs_ort))
    for name, values in logs.items():
        print(f"geomean M>=32 {name}: {math.exp(sum(values) / len(values)):.2f}")


if __name__ == "__main__":
    main()
