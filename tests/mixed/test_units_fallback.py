"""Switching single layers between INT8 and FP32, and the greedy FP32 fallback."""

import copy

import pytest
import torch
from torch import nn

import eightbit
from eightbit.config import QuantConfig
from eightbit.mixed.fallback import fallback_to_fp32
from eightbit.mixed.units import quantized_units, swapped
from eightbit.nn import QuantEmbedding, QuantLinear
from tests.helpers import tiny_marian


@pytest.fixture(scope="module")
def marian_pair():
    fp32 = tiny_marian()
    ids = torch.randint(0, 60, (2, 6))
    batches = [{"input_ids": ids, "decoder_input_ids": ids}]
    return fp32, eightbit.quantize(fp32, batches, QuantConfig(method="minmax"), progress=False)


def test_units_cover_every_quantized_module_once(marian_pair):
    fp32, int8 = marian_pair
    units = quantized_units(int8)
    linears = [n for n, m in fp32.named_modules() if type(m) is nn.Linear]
    assert sorted(u.name for u in units if u.kind == "linear") == sorted(linears)
    (embedding,) = [u for u in units if u.kind == "embedding"]
    assert len(embedding.names) == 3, "the tied table is one unit under all its names"


def test_swapped_switches_and_restores(marian_pair):
    fp32, int8 = marian_pair
    units = quantized_units(int8)
    embedding = next(u for u in units if u.kind == "embedding")
    linear = next(u for u in units if u.kind == "linear")
    with swapped(int8, [embedding, linear], fp32):
        for name in embedding.names:
            assert type(int8.get_submodule(name)) is nn.Embedding
        assert type(int8.get_submodule(linear.name)) is nn.Linear
    assert all(isinstance(int8.get_submodule(n), QuantEmbedding) for n in embedding.names)
    assert isinstance(int8.get_submodule(linear.name), QuantLinear)


def test_fallback_keeps_the_fewest_layers_and_prunes_unneeded_ones(marian_pair):
    fp32, int8 = marian_pair
    int8 = copy.deepcopy(int8)
    units = [u for u in quantized_units(int8) if u.kind == "linear"]
    harmful = {units[1].name, units[3].name}

    def metric(model: nn.Module) -> float:  # loses 1 point per harmful layer left INT8
        return 10.0 - sum(isinstance(model.get_submodule(n), QuantLinear) for n in harmful)

    ranking = [units[0], units[1], units[2], units[3], units[4]]
    result = fallback_to_fp32(fp32, int8, ranking, metric, 10.0, metric(int8), 0.5, False)
    assert set(result.fp32_layers) == harmful, "units[0] and units[2] pruned back to INT8"
    assert result.final_metric == 10.0 and result.drop == 0.0
    assert isinstance(int8.get_submodule(units[0].name), QuantLinear)
    assert type(int8.get_submodule(units[3].name)) is nn.Linear
    again = fallback_to_fp32(fp32, int8, ranking, metric, 10.0, metric(int8), 0.5, False)
    assert again.fp32_layers == () and again.evaluations == 0, "budget already holds"
