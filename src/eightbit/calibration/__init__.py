"""Calibration observers: a stream of tensors in, a quantization range out.

``make_observer(ObserverConfig(method=...))`` builds the observer of one of
:data:`CALIBRATION_METHODS`: min/max and moving-average min/max (Jacob et al. 2018; Q8BERT,
Zafrir et al. 2019), and histogram threshold searches: KL divergence (Migacz 2017, TensorRT) in
the symmetric / independent / conjugate modes of Bhandare et al. 2019, percentile, and MSE.
"""

from eightbit.calibration import methods as _methods  # noqa: F401  (registers the handlers)
from eightbit.calibration.base import Observer
from eightbit.calibration.config import CALIBRATION_METHODS, ObserverConfig, ObserverError
from eightbit.calibration.histogram import HistogramObserver, ThresholdSearch
from eightbit.calibration.kl import kl_conjugate_range, kl_independent_range, kl_symmetric_range
from eightbit.calibration.minmax import MinMaxObserver, MovingAverageMinMaxObserver
from eightbit.calibration.mse import mse_range
from eightbit.calibration.percentile import percentile_range
from eightbit.calibration.registry import make_observer, register

__all__ = [
    "CALIBRATION_METHODS",
    "HistogramObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "ObserverConfig",
    "ObserverError",
    "ThresholdSearch",
    "kl_conjugate_range",
    "kl_independent_range",
    "kl_symmetric_range",
    "make_observer",
    "mse_range",
    "percentile_range",
    "register",
]
