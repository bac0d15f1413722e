"""The engine's encoder forward against the model's own ``MarianEncoder``: bit-identical states."""

import copy

import pytest
import torch

import eightbit
from eightbit.config import QuantConfig
from eightbit.engine import build_plan
from eightbit.engine.encoder import encode
from eightbit.engine.fuse import FeedForward, IntegerFeedForward, SplitLinears
from eightbit.models.marian import calibration_run
from tests.engine.conftest import LENGTHS, source_batch, static_int8

# exclusions that leave an encoder block unchained (fc2 FP32) and its Q/K/V unfusable
MIXED = ("*encoder.layers.0.fc2", "*encoder.layers.0.self_attn.k_proj")


def _model(name, gelu, relu):
    dynamic = QuantConfig(method="dynamic", per_token=name == "dynamic-per-token")
    variants = {
        "fp32": lambda: relu,
        "fp32-gelu": lambda: gelu,
        "dynamic": lambda: eightbit.quantize(gelu, None, dynamic, progress=False),
        "dynamic-per-token": lambda: eightbit.quantize(relu, None, dynamic, progress=False),
        "static": lambda: static_int8(relu),
        "static-reference": lambda: static_int8(relu, backend="reference"),
        "static-7bit": lambda: static_int8(relu, reduce_range=True),
        "static-gelu": lambda: static_int8(gelu),
        "mixed": lambda: static_int8(relu, exclude=MIXED),
    }
    return variants[name]()


VARIANTS = [
    "fp32",
    "fp32-gelu",
    "dynamic",
    "dynamic-per-token",
    "static",
    "static-reference",
    "static-7bit",
    "static-gelu",
    "mixed",
]


def _hf_states(model, batch):
    with torch.inference_mode():
        return model.get_encoder()(**batch).last_hidden_state


def _engine_states(model, batch):
    plan = build_plan(model).encoder  # outside inference mode, as the engine's callers build it
    with torch.inference_mode():
        return encode(plan, batch["input_ids"], batch["attention_mask"])


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("lengths", [LENGTHS, [6, 6, 6]])  # padded, and an all-ones mask
def test_encoder_states_equal_the_models_encoder(name, lengths, tiny_model, tiny_relu_model):
    model = _model(name, tiny_model, tiny_relu_model)
    batch = source_batch(lengths)
    assert torch.equal(_engine_states(model, batch), _hf_states(model, batch))


def test_eager_attention_is_matched(tiny_relu_model):
    model = copy.deepcopy(tiny_relu_model)
    model.config._attn_implementation = "eager"
    model = static_int8(model)
    batch = source_batch(LENGTHS)
    assert torch.equal(_engine_states(model, batch), _hf_states(model, batch))


def test_chained_encoder_blocks_run_in_uint8(tiny_relu_model):
    """Static ReLU blocks: fc1's uint8 goes to fc2, which never quantizes and never sees fp32."""
    model = static_int8(tiny_relu_model)
    plan = build_plan(model).encoder
    assert all(isinstance(layer.feed_forward, IntegerFeedForward) for layer in plan.layers)
    kernel = model.model.encoder.layers[0].fc2.kernel()
    calls = {"uint8 in": 0}
    from_uint8 = kernel.linear_quantized_fp32

    def counting_from_uint8(*args):
        calls["uint8 in"] += 1
        return from_uint8(*args)

    kernel.quantize_input, kernel.linear_fp32 = None, None  # must not run
    kernel.linear_quantized_fp32 = counting_from_uint8
    try:
        _engine_states(model, source_batch(LENGTHS))
    finally:
        del kernel.quantize_input, kernel.linear_fp32, kernel.linear_quantized_fp32
    assert calls["uint8 in"] == 1


def test_mixed_encoder_falls_back_per_block(tiny_relu_model):
    """An FP32 fc2 leaves its block unchained; a float k_proj leaves Q/K/V unfused."""
    plan = build_plan(static_int8(tiny_relu_model, exclude=MIXED)).encoder
    assert isinstance(plan.layers[0].feed_forward, FeedForward)
    assert isinstance(plan.layers[0].qkv, SplitLinears)


@pytest.fixture(scope="module")
def shipped_batches():
    from eightbit.data.corpus import load_parallel_corpus
    from eightbit.models.common import encode_batch
    from eightbit.models.marian import load_marian
    from tests.engine.test_shipped import SHIPPED

    model, tokenizer = load_marian(SHIPPED)
    sources = [s for s, _ in load_parallel_corpus("test")[:20]]
    return model, tokenizer, [encode_batch(tokenizer, sources[i : i + 10], 256) for i in (0, 10)]


@pytest.mark.parametrize("method", ["fp32", "minmax", "dynamic"])
def test_shipped_encoder_states_equal_the_models_encoder(shipped_batches, method):
    from eightbit.data.corpus import load_parallel_corpus
    from eightbit.evaluate.nmt import sample_calibration_sources
    from eightbit.models.marian import calibration_batches

    model, tokenizer, batches = shipped_batches
    if method == "dynamic":
        model = eightbit.quantize(model, None, QuantConfig(method="dynamic"), progress=False)
    elif method != "fp32":
        sources = sample_calibration_sources(load_parallel_corpus("train"), 20, 0)
        calib = calibration_batches(model, tokenizer, sources, progress=False)
        config = QuantConfig(method=method)
        model = eightbit.quantize(model, calib, config, run=calibration_run, progress=False)
    for batch in batches:
        assert torch.equal(_engine_states(model, batch), _hf_states(model, batch))
