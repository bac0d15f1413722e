"""Would INT8 attention score/context products pay on the shipped translation model? Measure.

Bhandare et al. quantize the attention batched MatMuls (Q K^T and P V) where it pays. Two
measurements decide it here, both on the shipped ``models/marian-en-es`` (INT8, kl-independent):

1. Share of translation time spent in attention (``scaled_dot_product_attention`` and whatever
   batched matmuls it runs), from ``torch.profiler`` over greedy translation of test sentences:
   the most any INT8 attention could save (Amdahl).
2. Per call, at the shapes real decoding sees (a batch of 64 sentences, 4 heads, head dim 64,
   40 source tokens): FP32 ``torch.matmul`` against an INT8 product on the native kernel (both
   operands quantized per call, the right one packed per head as a "weight"; and, as a lower
   bound no implementation could beat on this kernel, the INT8 GEMMs alone with packing free).

Usage: ``python bench/attention_int8_probe.py [--sentences 200] [--threads 2] [--json PATH]
[--markdown PATH]``. Writes JSON and a Markdown table; prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from eightbit import QuantConfig, quantize
from eightbit.bench.timing import median_seconds
from eightbit.data.corpus import load_parallel_corpus
from eightbit.kernels import native
from eightbit.models.marian import calibration_batches, calibration_run, load_marian, translate

MODEL = Path(__file__).resolve().parents[1] / "models" / "marian-en-es"
ATTENTION_OPS = ("aten::scaled_dot_product_attention", "aten::bmm", "aten::baddbmm")


def attention_share(model: torch.nn.Module, tokenizer, sentences: list[str]) -> dict[str, float]:
    """Wall seconds of greedy translation, and the profiler's seconds inside attention ops.

    The total is wall time, not the sum of profiled ops: the native INT8 GEMMs are ctypes calls
    the profiler does not see."""
    import time

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        translate(model, tokenizer, sentences, progress=False)
        total = time.perf_counter() - start
    events = prof.key_averages()
    by_name = {e.key: e.cpu_time_total / 1e6 for e in events}
    # SDPA's CPU kernel has no matmul children; the eager path runs bmm: never count both
    sdpa = by_name.get(ATTENTION_OPS[0], 0.0)
    attention = sdpa or sum(by_name.get(op, 0.0) for op in ATTENTION_OPS[1:])
    return {"total_s": total, "attention_s": attention}


def _quantize_per_tensor(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = max((hi - lo) / 255, 1e-12)
    zp = round(-lo / scale)
    return native.quantize_u8(x.contiguous(), scale, zp), scale, zp


def int8_batched_product(a: torch.Tensor, b_t: torch.Tensor, prepacked=None) -> torch.Tensor:
    """``a @ b_t.T`` per head, (heads, M, K) x (heads, N, K) -> (heads, M, N), on the INT8 kernel.

    ``a`` is quantized to uint8 per tensor, ``b_t`` to symmetric int8 per tensor and packed per
    head (what the weight path does once per layer must happen per call here: both are
    activations). ``prepacked``: reuse packed heads (the lower bound with packing free)."""
    a_q, a_scale, a_zp = _quantize_per_tensor(a)
    b_scale = max(float(b_t.abs().max()) / 127, 1e-12)
    if prepacked is None:
        b_q = torch.clamp(torch.round(b_t / b_scale), -127, 127).to(torch.int8)
        prepacked = [native.pack_weight(b_q[h]) for h in range(b_t.shape[0])]
    out = torch.stack(
        [native.gemm_u8s8_int32(a_q[h], prepacked[h], a_zp) for h in range(a.shape[0])]
    )
    return out.float() * (a_scale * b_scale)


def per_call(batch: int, heads: int, src: int, head_dim: int) -> list[dict[str, object]]:
    """FP32 vs INT8 for encoder scores (T x T), decoder step scores (1 x T) and contexts."""
    g = torch.Generator().manual_seed(0)
    bh = batch * heads
    q = torch.randn(bh, src, head_dim, generator=g)
    k = torch.randn(bh, src, head_dim, generator=g)
    p = torch.softmax(torch.randn(bh, src, src, generator=g), -1)
    v_t = torch.randn(bh, head_dim, src, generator=g)  # context = p @ v = p @ v_t^T
    cases = {
        "encoder scores Q K^T": (q, k),
        "encoder context P V": (p, v_t),
        "decoder step scores q K^T": (q[:, :1].contiguous(), k),
    }
    rows = []
    for name, (a, b_t) in cases.items():
        fp32 = median_seconds(lambda a=a, b_t=b_t: torch.matmul(a, b_t.transpose(1, 2)))
        int8 = median_seconds(lambda a=a, b_t=b_t: int8_batched_product(a, b_t))
        scale = max(float(b_t.abs().max()) / 127, 1e-12)
        packed = [
            native.pack_weight(torch.clamp(torch.round(b_t[h] / scale), -127, 127).to(torch.int8))
            for h in range(bh)
        ]
        gemm_only = median_seconds(
            lambda a=a, packed=packed: [
                native.gemm_u8s8_int32(a[h].to(torch.uint8), packed[h], 0) for h in range(bh)
            ]
        )
        rows.append(
            {
                "product": name,
                "shape": f"{bh} x ({a.shape[1]}x{a.shape[2]}) @ ({a.shape[2]}x{b_t.shape[1]})",
                "fp32_us": fp32 * 1e6,
                "int8_us": int8 * 1e6,
                "int8_gemm_only_us": gemm_only * 1e6,
            }
        )
    return rows


def to_markdown(report: dict) -> str:
    share = report["profile"]
    lines = [
        f"Greedy translation of {report['sentences']} test sentences, INT8 model, "
        f"{report['threads']} threads: attention ops {share['attention_s']:.2f} s of "
        f"{share['total_s']:.2f} s wall time (profiler on) "
        f"({100 * share['attention_s'] / share['total_s']:.1f}%).",
        "",
        "| product | shape | FP32 us | INT8 us | INT8 GEMMs alone us | INT8 / FP32 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in report["per_call"]:
        lines.append(
            f"| {r['product']} | {r['shape']} | {r['fp32_us']:.0f} | {r['int8_us']:.0f} | "
            f"{r['int8_gemm_only_us']:.0f} | {r['int8_us'] / r['fp32_us']:.1f}x slower |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_marian(MODEL)
    sources = [en for en, _ in load_parallel_corpus("test")[: args.sentences]]
    train = [en for en, _ in load_parallel_corpus("train")[:200]]
    calib = calibration_batches(model, tokenizer, train, progress=False)
    config = QuantConfig(method="kl-independent")
    int8 = quantize(model, calib, config, run=calibration_run, progress=False)
    report = {
        "sentences": len(sources),
        "threads": args.threads,
        "profile": attention_share(int8, tokenizer, sources),
        "per_call": per_call(batch=64, heads=4, src=40, head_dim=64),
    }
    markdown = to_markdown(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    print(markdown, end="")


if __name__ == "__main__":
    main()
