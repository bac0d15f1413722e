"""The engine against Hugging Face ``generate`` on a tiny model: identical tokens, FP32 and INT8."""

import copy

import pytest
import torch

import eightbit
from eightbit.config import QuantConfig
from eightbit.engine import build_plan, generate
from eightbit.engine.fuse import IntegerFeedForward
from eightbit.engine.search import trim_to_longest
from eightbit.models.marian import generate_batch
from tests.engine.conftest import LENGTHS, LIMIT, PAD, source_batch, static_int8


def _with_eos_bias(model, bias: float):
    """EOS made likelier, so sentences finish at different steps (and leave the batch)."""
    biased = copy.deepcopy(model)
    biased.final_logits_bias[0, 0] += bias
    return biased


@pytest.fixture(scope="module", params=["fp32", "dynamic", "static", "static-relu"])
def models(request, tiny_model, tiny_relu_model):
    """The tiny model at one precision, by EOS bias (0: it rarely stops; 2: some stop early);
    ``static-relu``: the ReLU model, whose feed-forward blocks run in uint8."""
    built = {}
    for bias in (0.0, 2.0):
        base = tiny_relu_model if request.param == "static-relu" else tiny_model
        model = _with_eos_bias(base, bias)
        if request.param == "dynamic":
            model = eightbit.quantize(model, None, QuantConfig(method="dynamic"), progress=False)
        elif request.param.startswith("static"):
            model = static_int8(model)
        built[bias] = model
    return built


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("bias", [0.0, 2.0])
def test_engine_tokens_equal_hf_generate(models, beam, bias):
    model = models[bias]
    batch = source_batch(LENGTHS)
    expected = generate_batch(model, batch, beam, LIMIT)
    got = generate(build_plan(model), batch, beam, LIMIT)
    assert torch.equal(got, expected)


def test_sentences_finish_at_different_steps(models):
    """The biased models really exercise early finishing (else the test above proves less)."""
    ids = generate(build_plan(models[2.0]), source_batch(LENGTHS), 1, LIMIT)
    ends = [(row[1:] == 0).int().argmax().item() for row in ids if (row[1:] == 0).any()]
    assert len(set(ends)) >= 2 and len(ends) < len(LENGTHS)


def test_suppressed_padding_is_never_generated(models):
    plan = build_plan(models[0.0])
    assert plan.suppressed_tokens == (PAD,)
    ids = generate(plan, source_batch(LENGTHS), 2, LIMIT)
    assert not (ids[:, 1:] == PAD).any() or (ids[:, 1:] == 0).any()


def test_trim_to_longest_cuts_after_the_last_end_of_sentence():
    ids = torch.tensor([[9, 4, 0, 9, 9], [9, 5, 6, 0, 9]])
    assert trim_to_longest(ids, 0).tolist() == [[9, 4, 0, 9], [9, 5, 6, 0]]
    assert trim_to_longest(torch.tensor([[9, 4, 5]]), 0).shape == (1, 3)


def test_static_relu_feed_forward_runs_in_uint8(tiny_relu_model):
    """The engine hands fc1's uint8 straight to fc2 (fc2 never quantizes), the model's own
    modules dequantize and quantize again, and both give the same tokens."""
    model = static_int8(_with_eos_bias(tiny_relu_model, 2.0))
    plan = build_plan(model)
    assert all(isinstance(layer.feed_forward, IntegerFeedForward) for layer in plan.layers)
    fc2 = model.model.decoder.layers[0].fc2
    calls = {"quantize": 0, "uint8 in": 0}
    kernel = fc2.kernel()
    quantize_input, from_uint8 = kernel.quantize_input, kernel.linear_quantized_fp32

    def counting_quantize(*args):
        calls["quantize"] += 1
        return quantize_input(*args)

    def counting_from_uint8(*args):
        calls["uint8 in"] += 1
        return from_uint8(*args)

    kernel.quantize_input, kernel.linear_quantized_fp32 = counting_quantize, counting_from_uint8
    kernel.linear_fp32 = None  # the fp32-input path must not run either
    batch = source_batch(LENGTHS)
    for beam in (1, 2):
        got = generate(plan, batch, beam, LIMIT)
        assert calls["quantize"] == 0 and calls["uint8 in"] > 0
        del kernel.linear_fp32  # the HF module path: fc2.forward on fc1's dequantized output
        assert torch.equal(got, generate_batch(model, batch, beam, LIMIT))
        kernel.linear_fp32 = None
        calls.update(quantize=0, **{"uint8 in": 0})


@pytest.mark.parametrize("beam", [1, 3])
def test_a_plan_built_under_inference_mode_decodes_the_same(models, beam):
    """Fused layers made under inference_mode hold inference tensors (no version counter)."""
    model = models[2.0]
    batch = source_batch(LENGTHS)
    expected = generate(build_plan(model), batch, beam, LIMIT)
    with torch.inference_mode():
        plan = build_plan(model)
    assert torch.equal(generate(plan, batch, beam, LIMIT), expected)
