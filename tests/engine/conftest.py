"""A tiny random Marian model built from a config, and padded source batches for it."""

import pytest
import torch

from eightbit.models.marian_build import MarianArchitecture, build_model

VOCAB = 50
PAD = VOCAB - 1


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    arch = MarianArchitecture(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        attention_heads=4,
        ffn_dim=64,
        max_positions=48,
        dropout=0.0,
    )
    model = build_model(VOCAB, arch).eval()
    with torch.no_grad():  # sharper logits than the init's: distinct choices, some early EOS
        for name, weight in model.named_parameters():
            if "shared" in name or "proj" in name or "fc" in name:
                weight.mul_(10.0)
    model.generation_config.bad_words_ids = [[PAD]]  # as the shipped model: never emit padding
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
