"""``eightbit bench ...``: benchmarks, FP32 and INT8 in the same run."""

from __future__ import annotations

import argparse

from eightbit.cli.common import _check_output_file, _write_outputs


def _bench_kernels(args: argparse.Namespace) -> int:
    from eightbit.bench.kernels import run_kernel_benchmark, to_markdown

    _check_output_file(args.json)
    _check_output_file(args.markdown)
    report = run_kernel_benchmark(
        m_values=tuple(args.m),
        threads=args.threads,
        backend=args.backend,
        progress=not args.quiet,
    )
    markdown = to_markdown(report)
    _write_outputs(args, report, markdown)
    print(markdown, end="")
    return 0
