"""The calibration methods, one registered handler each (names in ``CALIBRATION_METHODS``).

``minmax`` / ``ema``: range observers (Jacob et al. 2018; Q8BERT). ``kl-*``: TensorRT KL
calibration (Migacz 2017) in the three threshold modes of Bhandare et al. 2019; the symmetric
modes produce symmetric qparams. ``percentile`` and ``mse`` honour ``config.symmetric``.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from eightbit.calibration.config import ObserverConfig
from eightbit.calibration.histogram import HistogramObserver
from eightbit.calibration.kl import kl_conjugate_range, kl_independent_range, kl_symmetric_range
from eightbit.calibration.minmax import MinMaxObserver, MovingAverageMinMaxObserver
from eightbit.calibration.mse import mse_range
from eightbit.calibration.percentile import percentile_range
from eightbit.calibration.registry import register


@register("minmax")
def _minmax(config: ObserverConfig) -> MinMaxObserver:
    return MinMaxObserver(config)


@register("ema")
def _ema(config: ObserverConfig) -> MovingAverageMinMaxObserver:
    return MovingAverageMinMaxObserver(config)


@register("kl-symmetric")
def _kl_symmetric(config: ObserverConfig) -> HistogramObserver:
    search = partial(kl_symmetric_range, steps=config.steps)
    return HistogramObserver(replace(config, symmetric=True), search)


@register("kl-independent")
def _kl_independent(config: ObserverConfig) -> HistogramObserver:
    return HistogramObserver(config, partial(kl_independent_range, steps=config.steps))


@register("kl-conjugate")
def _kl_conjugate(config: ObserverConfig) -> HistogramObserver:
    search = partial(kl_conjugate_range, steps=config.steps)
    return HistogramObserver(replace(config, symmetric=True), search)


@register("percentile")
def _percentile(config: ObserverConfig) -> HistogramObserver:
    search = partial(percentile_range, percentile=config.percentile, symmetric=config.symmetric)
    return HistogramObserver(config, search)


@register("mse")
def _mse(config: ObserverConfig) -> HistogramObserver:
    search = partial(mse_range, steps=config.steps, symmetric=config.symmetric)
    return HistogramObserver(config, search)
