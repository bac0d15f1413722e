"""The engine against Hugging Face ``generate`` on a tiny model: identical tokens, FP32 and INT8."""

import copy

import pytest
import torch

import eightbit
from eightbit.config import QuantConfig
from eightbit.engine import build_plan, generate
from eightbit.engine.search import trim_to_longest
from eightbit.models.marian import calibration_run, generate_batch
from tests.engine.conftest import PAD, source_batch

LENGTHS = [9, 3, 7, 5, 12, 4]
LIMIT = 20


def _with_eos_bias(model, bias: float):
    """EOS made likelier, so sentences finish at different steps (and leave the batch)."""
    biased = copy.deepcopy(model)
    biased.final_logits_bias[0, 0] += bias
    return biased


def _static_int8(model):
    batches = []
    for seed in range(3):
        batch = source_batch(LENGTHS, seed)
        target = source_batch([LIMIT] * len(LENGTHS), seed + 10)
        batches.append(
            {
                **batch,
                "decoder_input_ids": target["input_ids"][:, :-1],
                "decoder_attention_mask": target["attention_mask"][:, :-1],
            }
        )
    config = QuantConfig(method="minmax")
    return eightbit.quantize(model, batches, config, run=calibration_run, progress=False)


@pytest.fixture(scope="module", params=["fp32", "dynamic", "static"])
def models(request, tiny_model):
    """The tiny model at one precision, by EOS bias (0: it never stops; 4: some stop early)."""
    built = {}
    for bias in (0.0, 4.0):
        model = _with_eos_bias(tiny_model, bias)
        if request.param == "dynamic":
            model = eightbit.quantize(model, None, QuantConfig(method="dynamic"), progress=False)
        elif request.param == "static":
            model = _static_int8(model)
        built[bias] = model
    return built


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("bias", [0.0, 4.0])
def test_engine_tokens_equal_hf_generate(models, beam, bias):
    model = models[bias]
    batch = source_batch(LENGTHS)
    expected = generate_batch(model, batch, beam, LIMIT)
    got = generate(build_plan(model), batch, beam, LIMIT)
    assert torch.equal(got, expected)


def test_sentences_finish_at_different_steps(models):
    """The biased models really exercise early finishing (else the test above proves less)."""
    ids = generate(build_plan(models[4.0]), source_batch(LENGTHS), 1, LIMIT)
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
