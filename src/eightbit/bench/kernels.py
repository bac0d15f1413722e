"""Kernel benchmark: FP32 ``F.linear`` vs our INT8 Linear (static, dynamic) vs ONNX Runtime.

Same run, same threads, same shapes. GFLOP/s counts ``2*M*K*N`` for every engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eightbit.bench.ort_peers import ort_linear
from eightbit.bench.timing import geometric_mean, machine_info, median_seconds
from eightbit.core.qparams import qparams_from_range
from eightbit.kernels import native, resolve_backend
from eightbit.nn import QuantLinear
from eightbit.nn.weights import weight_qparams
from eightbit.progress import progress as progress_bar

M_VALUES = (1, 8, 32, 128, 512, 2048)
KN_VALUES = ((512, 512), (512, 2048), (2048, 512), (768, 3072), (3072, 768))
MODES = ("static", "static-7bit", "dynamic")


@dataclass(frozen=True)
class KernelResult:
    m: int
    k: int
    n: int
    mode: str
    backend: str
    fp32_gflops: float
    int8_gflops: float
    ratio: float
    ort_fp32_gflops: float
    ort_int8_gflops: float
    int8_vs_ort_int8: float


def _layers(k: int, n: int, x: torch.Tensor, backend: str) -> dict[str, nn.Module]:
    """The float layer and our INT8 versions of it: 8-bit static (exact on every backend),
    7-bit static (``reduce_range``, the range fbgemm and MLAS need to be exact on AVX2), dynamic."""
    linear = nn.Linear(k, n)
    w_qp = weight_qparams(linear.weight, per_channel=True)
    return {
        "float": linear,
        "static": QuantLinear.from_float(
            linear, w_qp, input_qp=qparams_from_range(x.min(), x.max()), backend=backend
        ),
        "static-7bit": QuantLinear.from_float(
            linear,
            w_qp,
            input_qp=qparams_from_range(x.min(), x.max(), reduce_range=True),
            backend=backend,
        ),
        "dynamic": QuantLinear.from_float(linear, w_qp, input_qp=None, backend=backend),
    }


def bench_shape(m: int, k: int, n: int, backend: str, threads: int) -> list[KernelResult]:
    x = torch.randn(m, k)
    layers = _layers(k, n, x, backend)
    linear = layers["float"]
    flops = 2.0 * m * k * n
    with torch.no_grad():
        fp32 = median_seconds(lambda: F.linear(x, linear.weight, linear.bias))
        weight = linear.weight.numpy()
        bias = linear.bias.numpy()
        ort_fp32 = median_seconds(ort_linear(x.numpy(), weight, bias, mode="fp32", threads=threads))
        results = []
        for mode in MODES:
            layer = layers[mode]
            ours = median_seconds(lambda layer=layer: layer(x))
            qp = layer.input_qparams if mode != "dynamic" else None
            peer = ort_linear(
                x.numpy(),
                weight,
                bias,
                mode="dynamic" if mode == "dynamic" else "static",
                threads=threads,
                x_scale=float(qp.scale) if qp else 1.0,
                x_zero_point=int(qp.zero_point) if qp else 0,
            )
            ort_int8 = median_seconds(peer)
            results.append(
                KernelResult(
                    m,
                    k,
                    n,
                    mode,
                    backend,
                    flops / fp32 / 1e9,
                    flops / ours / 1e9,
                    fp32 / ours,
                    flops / ort_fp32 / 1e9,
                    flops / ort_int8 / 1e9,
                    ort_int8 / ours,
                )
            )
    return results


def _int8_kernels(backend: str) -> str:
    """Which microkernels our INT8 layers ran: the native backend picks AMX or VNNI where it
    can; another backend runs its own."""
    return native.kernel_set() if backend == "avx2" else backend


def run_kernel_benchmark(
    m_values: tuple[int, ...] = M_VALUES,
    kn_values: tuple[tuple[int, int], ...] = KN_VALUES,
    threads: int = 2,
    backend: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Time every (M, K, N) in both modes; returns the JSON-ready report."""
    torch.set_num_threads(threads)
    backend = resolve_backend(backend)
    shapes = [(m, k, n) for (k, n) in kn_values for m in m_values]
    results: list[KernelResult] = []
    for m, k, n in progress_bar(shapes, "kernel bench", "shape", progress):
        results.extend(bench_shape(m, k, n, backend, threads))
    return {
        "benchmark": "kernels",
        "threads": threads,
        "backend": backend,
        "machine": {
            **machine_info(),
            "int8_kernels": _int8_kernels(backend),
        },
        "results": [asdict(r) for r in results],
        "summary": summarize(results),
    }


def summarize(results: list[KernelResult]) -> dict[str, float]:
    """Geometric means over M >= 32 (the issue's goals) per mode."""
    summary = {}
    for mode in MODES:
        big = [r for r in results if r.mode == mode and r.m >= 32]
        summary[f"{mode}_ratio_vs_torch_fp32_geomean_m32plus"] = geometric_mean(
            [r.ratio for r in big]
        )
        summary[f"{mode}_ratio_vs_ort_int8_geomean_m32plus"] = geometric_mean(
            [r.int8_vs_ort_int8 for r in big]
        )
    return summary


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Kernel benchmark: {report['threads']} threads, backend `{report['backend']}` "
        f"({report['machine'].get('int8_kernels', report['backend'])} microkernels), "
        f"torch {report['machine']['torch']}. GFLOP/s (2*M*K*N / time), higher is better.",
        "",
        "| M | K | N | mode | torch FP32 | ORT FP32 | ORT INT8 | eightbit INT8 | vs torch FP32 "
        "| vs ORT INT8 |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['m']} | {r['k']} | {r['n']} | {r['mode']} | {r['fp32_gflops']:.1f} | "
            f"{r['ort_fp32_gflops']:.1f} | {r['ort_int8_gflops']:.1f} | {r['int8_gflops']:.1f} "
            f"| {r['ratio']:.2f}x | {r['int8_vs_ort_int8']:.2f}x |"
        )
    lines += ["", "Geometric means over M >= 32:", ""]
    lines += [f"- {k}: {v:.2f}x" for k, v in report["summary"].items()]
    return "\n".join(lines) + "\n"
