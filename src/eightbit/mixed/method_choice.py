"""Per-tensor choice of the calibration method by the error it causes (``method="auto"``).

Every activation that feeds an INT8 Linear is recorded once in a histogram
(:class:`~eightbit.calibration.HistogramObserver`, no threshold search). Each candidate method
then reads its range off that same histogram: ``minmax`` (the observed extremes), the three KL
modes, ``percentile`` and ``mse``. (``ema`` is left out: it averages per-batch extremes and is not
a function of the histogram.)

The error measure is the SQNR of the layer's *output* with the candidate input range (weights
fake-quantized as in inference) against the float output, on the calibration batches, and the
candidate with the highest SQNR wins. Not the input-side error on the histogram: every channel
of a per-tensor activation range is weighted by the weights it meets, which the histogram cannot
see. An outlier channel with tiny outgoing weights (the shape of range large Transformers grow)
is cheap to clip, which an input-side squared error counts as expensive: the input-side MSE
range keeps the outlier and the model breaks (see README, "The min/max failure"), while the
output SQNR prefers the clipping ranges. The input-side MSE is also exactly what ``mse``
minimizes, so choosing by it would always pick ``mse``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eightbit.calibration import HistogramObserver, Observer, ObserverConfig, make_observer
from eightbit.config import AUTO, SYMMETRIC_METHODS, QuantConfig
from eightbit.core.ops import fake_quantize
from eightbit.core.qparams import QParams, qparams_from_range
from eightbit.mixed.layer_error import Alternative, OutputErrorMeter
from eightbit.nn import FakeQuantLinear
from eightbit.progress import progress as progress_bar

CANDIDATE_METHODS: tuple[str, ...] = (
    "minmax",
    "kl-symmetric",
    "kl-independent",
    "kl-conjugate",
    "percentile",
    "mse",
)


def recording_observer(config: QuantConfig) -> HistogramObserver:
    """A histogram observer without a threshold search: records what every candidate needs."""
    return HistogramObserver(_observer_config(config, "minmax"), search=None)


def _observer_config(config: QuantConfig, method: str) -> ObserverConfig:
    symmetric = method in SYMMETRIC_METHODS
    return ObserverConfig(
        method=method,
        bins=config.bins,
        percentile=config.percentile,
        symmetric=symmetric,
        narrow=symmetric,
        reduce_range=config.reduce_range,
    )


def method_observer(recorded: HistogramObserver, config: QuantConfig, method: str) -> Observer:
    """An observer of ``method`` holding the histogram ``recorded`` (no new data needed)."""
    if method not in CANDIDATE_METHODS:
        raise ValueError(
            f"{method!r} cannot be read off a histogram; expected one of "
            f"{', '.join(CANDIDATE_METHODS)}"
        )
    observer_config = _observer_config(config, method)
    observer = (
        HistogramObserver(observer_config, search=None)
        if method == "minmax"
        else make_observer(observer_config)
    )
    observer.load_state_dict(recorded.state_dict())
    return observer


def probes(model: nn.Module) -> dict[str, FakeQuantLinear]:
    """The calibration probes of a prepared model, by module name (shared ones once)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantLinear)}


def candidate_observers(
    probe: FakeQuantLinear, config: QuantConfig, methods: Iterable[str] = CANDIDATE_METHODS
) -> dict[str, Observer]:
    """Each method's observer over the histogram ``probe`` recorded."""
    recorded = probe.input_observer
    if not isinstance(recorded, HistogramObserver):
        raise ValueError("the model was not prepared with QuantConfig(method='auto')")
    return {method: method_observer(recorded, config, method) for method in methods}


def use_observer(probe: FakeQuantLinear, observer: Observer) -> None:
    """Make ``observer``'s range the one :func:`eightbit.convert` gives this layer."""
    probe.input_observer = observer
    probe.symmetric = observer.config.symmetric


def _input_qparams(observer: Observer, config: QuantConfig) -> QParams:
    lo, hi = observer.range()
    symmetric = observer.config.symmetric
    return qparams_from_range(
        lo, hi, symmetric=symmetric, narrow=symmetric, reduce_range=config.reduce_range
    )


def _alternative(probe: FakeQuantLinear, input_qp: QParams) -> Alternative:
    weight = fake_quantize(probe.weight.detach(), probe.weight_qparams())
    bias = probe.bias  # INT32 bias rounding is the same for every candidate: left out

    def run(x: Tensor) -> Tensor:
        return F.linear(fake_quantize(x, input_qp), weight, bias)

    return run


def choose_methods(
    prepared: nn.Module,
    batches: Iterable[Any],
    run: Callable[[nn.Module, Any], object],
    config: QuantConfig,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Give every probe of ``prepared`` (calibrated with ``method="auto"``) the candidate range of
    highest output SQNR on ``batches``; returns ``{layer: {"method", "sqnr_db"}}``."""
    layers = probes(prepared)
    candidates = {name: candidate_observers(probe, config) for name, probe in layers.items()}
    alternatives = {
        name: {
            method: _alternative(probe, _input_qparams(observer, config))
            for method, observer in candidates[name].items()
        }
        for name, probe in layers.items()
    }
    scores = _measure(prepared, layers, alternatives, batches, run, progress)
    chosen = {}
    for name, by_method in scores.items():
        # ties go to the earlier (simpler) candidate
        best = max(CANDIDATE_METHODS, key=lambda m: (by_method[m], -CANDIDATE_METHODS.index(m)))
        use_observer(layers[name], candidates[name][best])
        chosen[name] = {"method": best, "sqnr_db": round(by_method[best], 3)}
    return chosen


def apply_method(
    prepared: nn.Module,
    config: QuantConfig,
    method: str,
    batches: Iterable[Any] = (),
    run: Callable[[nn.Module, Any], object] | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Give every probe of ``prepared`` (calibrated with ``method="auto"``) the range of
    ``method``, or choose per layer with ``"auto"`` (then ``batches`` and ``run`` are needed)."""
    if method == AUTO:
        if run is None:
            raise ValueError("method 'auto' measures every range: pass batches and run")
        return choose_methods(prepared, batches, run, config, progress)
    chosen = {}
    for name, probe in probes(prepared).items():
        use_observer(probe, candidate_observers(probe, config, [method])[method])
        chosen[name] = {"method": method}
    return chosen


def recorded_histograms(
    prepared: nn.Module, config: QuantConfig, names: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """For the probes ``names``: the recorded histogram (``counts``, ``edges``) and the range
    ``[lo, hi]`` every candidate method reads off it (``thresholds``), as plain lists."""
    layers = probes(prepared)
    views = {}
    for name in names:
        recorded = layers[name].input_observer
        thresholds = {}
        for method, observer in candidate_observers(layers[name], config).items():
            lo, hi = observer.range()
            thresholds[method] = [float(lo), float(hi)]
        views[name] = {
            "counts": recorded.counts.tolist(),
            "edges": recorded.edges().tolist(),
            "thresholds": thresholds,
        }
    return views


def _measure(
    prepared: nn.Module,
    layers: dict[str, FakeQuantLinear],
    alternatives: dict[str, dict[str, Alternative]],
    batches: Iterable[Any],
    run: Callable[[nn.Module, Any], object],
    progress: bool,
) -> dict[str, dict[str, float]]:
    for probe in layers.values():
        probe.observe = False  # the histograms are complete
    was_training = prepared.training
    prepared.eval()
    try:
        with torch.no_grad(), OutputErrorMeter(prepared, alternatives) as meter:
            for batch in progress_bar(batches, "measuring ranges", "batch", progress):
                run(prepared, batch)
    finally:
        prepared.train(was_training)
        for probe in layers.values():
            probe.observe = True
    return meter.sqnr()
