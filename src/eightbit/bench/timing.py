"""Wall-clock timing shared by every benchmark: warm-up, then the median of timed repeats."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata


def median_seconds(fn: Callable[[], object], *, min_time: float = 0.05, repeats: int = 5) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` rounds of at least ``min_time`` each."""
    fn()
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(min_time / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def geometric_mean(values: list[float]) -> float:
    return statistics.geometric_mean(values) if values else float("nan")


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_info(*packages: str) -> dict[str, str]:
    """The processor and the versions of torch and of ``packages`` (those installed)."""
    import torch

    from eightbit.kernels import native

    info = {
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "int8_kernels": native.kernel_set(),  # what eightbit's native INT8 layers run here
    }
    for name in packages:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "not installed"
    return info
