"""A tiny random Marian model built from a config, and padded source batches for it."""

import pytest
import torch

import eightbit
from eightbit.config import QuantConfig
from eightbit.models.marian import calibration_run
from tests.helpers import tiny_marian

VOCAB = 64
PAD = VOCAB - 1
LENGTHS = [9, 3, 7, 5, 12, 4]
LIMIT = 20


def _sharpened(activation: str):
    model = tiny_marian(activation)
    model.generation_config.bad_words_ids = [[PAD]]  # as the shipped model: never emit padding
    with torch.no_grad():  # sharper logits than the init's: distinct choices, some early EOS
        for name, weight in model.named_parameters():
            if "shared" in name or "proj" in name or "fc" in name:
                weight.mul_(10.0)
    return model


@pytest.fixture(scope="module")
def tiny_model():
    return _sharpened("gelu")  # MarianConfig's default activation


@pytest.fixture(scope="module")
def tiny_relu_model():
    """Marian's usual ReLU: static INT8 runs its feed-forward blocks in uint8."""
    model = _sharpened("relu")
    with torch.no_grad():  # EOS a little less likely: with +2 some sentences stop early, not all
        model.final_logits_bias[0, 0] -= 0.5
    return model


def source_batch(lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random source ids (no EOS/pad inside), right-padded to the longest."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, : length - 1] = torch.randint(1, PAD, (length - 1,), generator=generator)
        ids[row, length - 1] = 0  # end of sentence, as the tokenizer appends
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


def static_int8(model, method: str = "minmax", backend: str = "auto", **overrides):
    """Static INT8 calibrated on three random batches (targets of the length limit);
    ``overrides``: further :class:`QuantConfig` fields."""
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
    config = QuantConfig(method=method, backend=backend, **overrides)
    return eightbit.quantize(model, batches, config, run=calibration_run, progress=False)
