"""Quantized modules: fake-quant (calibration / QAT) and converted INT8 Linear and Embedding."""

from eightbit.nn.fake_quant import FakeQuantEmbedding, FakeQuantLinear
from eightbit.nn.mask import observation_mask
from eightbit.nn.quant_embedding import QuantEmbedding
from eightbit.nn.quant_linear import QuantLinear

__all__ = [
    "FakeQuantEmbedding",
    "FakeQuantLinear",
    "QuantEmbedding",
    "QuantLinear",
    "observation_mask",
]
