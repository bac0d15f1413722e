"""Automatic FP32 fallback: keep the fewest, most sensitive layers in FP32 within a budget.

Given units ranked most harmful first (:func:`eightbit.mixed.sensitivity.ranked`), the smallest
prefix of the ranking whose mixed model loses at most ``max_drop`` metric points against FP32 is
kept in FP32 (prefixes are tried in order, so the result is the shortest such prefix); then each
layer of that prefix is tried back in INT8, most harmful last, and stays INT8 if the budget still
holds, so no FP32 layer is superfluous. Every step is one evaluation of ``metric`` on a fixed
dev set: deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from eightbit.mixed.sensitivity import Metric
from eightbit.mixed.units import Unit, modules_at, set_modules, set_unit
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FallbackResult:
    """Which units stayed FP32 and the dev metric of FP32, all-INT8 and the final mix."""

    fp32_layers: tuple[str, ...]
    fp32_metric: float
    int8_metric: float
    final_metric: float
    max_drop: float
    evaluations: int
    trail: list[dict[str, object]] = field(default_factory=list)

    @property
    def drop(self) -> float:
        return round(self.fp32_metric - self.final_metric, 4)


def _within(fp32_metric: float, value: float, max_drop: float) -> bool:
    return fp32_metric - value <= max_drop + 1e-9


def fallback_to_fp32(
    fp32: nn.Module,
    int8: nn.Module,
    ranking: Sequence[Unit],
    metric: Metric,
    fp32_metric: float,
    int8_metric: float,
    max_drop: float,
    progress: bool = True,
) -> FallbackResult:
    """Swap FP32 modules into ``int8`` (in place) until ``metric`` is within ``max_drop``."""
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    int8_modules = modules_at(int8, ranking)  # kept for the pruning
    trail: list[dict[str, object]] = [{"fp32_layers": [], "metric": int8_metric}]
    kept: list[Unit] = []
    value = int8_metric
    for unit in progress_bar(ranking, "FP32 fallback", "layer", progress):
        if _within(fp32_metric, value, max_drop):
            break
        set_unit(int8, unit, fp32)
        kept.append(unit)
        value = metric(int8)
        trail.append({"fp32_layers": [u.name for u in kept], "metric": value})
        log.info("%d layers FP32 (+%s): %.2f", len(kept), unit.name, value)
    for unit in reversed(kept[:-1]):  # prune: is each earlier layer still needed?
        set_modules(int8, {n: int8_modules[n] for n in unit.names})
        trial = metric(int8)
        trail.append({"try_int8": unit.name, "metric": trial})
        if _within(fp32_metric, trial, max_drop):
            kept.remove(unit)
            value = trial
        else:
            set_unit(int8, unit, fp32)
    return FallbackResult(
        fp32_layers=tuple(u.name for u in kept),
        fp32_metric=fp32_metric,
        int8_metric=int8_metric,
        final_metric=value,
        max_drop=max_drop,
        evaluations=len(trail) - 1,
        trail=trail,
    )
