"""eightbit: turn trained FP32 Transformer models into fast, accurate INT8 models on CPUs.

Post-training quantization with calibration (Bhandare et al. 2019), quantization-aware training
(Q8BERT, Zafrir et al. 2019) and integer-only reference arithmetic (Jacob et al. 2018)::

    import eightbit
    int8_model = eightbit.quantize(model, calibration_batches, eightbit.QuantConfig())
    eightbit.save(int8_model, "out/")
    same = eightbit.load("out/")
"""

from eightbit.config import QATConfig, QuantConfig
from eightbit.errors import EightbitError
from eightbit.io import ModelFormatError, load, save
from eightbit.transform import (
    CalibrationError,
    calibrate,
    convert,
    prepare,
    prepare_qat,
    quantize,
    quantize_dynamic,
)

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "EightbitError",
    "ModelFormatError",
    "QATConfig",
    "QuantConfig",
    "calibrate",
    "convert",
    "load",
    "prepare",
    "prepare_qat",
    "quantize",
    "quantize_dynamic",
    "save",
]
