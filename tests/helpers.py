"""Small models built from configs (no downloads) shared by the module and API tests."""

from __future__ import annotations

import torch
from torch import nn


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (torchao's compute_error)."""
    reference, approx = reference.detach(), approx.detach()
    noise = (reference - approx).float().pow(2).mean()
    return float(10 * torch.log10(reference.float().pow(2).mean() / noise.clamp_min(1e-30)))


class TinyMLP(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, hidden: int = 64, classes: int = 5):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.embed(ids)))).mean(dim=1)


def tiny_marian(activation: str = "gelu"):
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=64,
        decoder_vocab_size=64,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=32,
        pad_token_id=63,
        eos_token_id=0,
        decoder_start_token_id=63,
        share_encoder_decoder_embeddings=True,
        activation_function=activation,
    )
    return MarianMTModel(config).eval()


TINY_PAIRS = [
    (f"the {a} sees the {b} {i}", f"el {a} ve el {b} {i}")
    for i in range(20)
    for a, b in (("man", "dog"), ("woman", "house"))
]


def tiny_marian_dir(root, sentences=None):
    """A tiny untrained Marian checkpoint with a real tokenizer (trained on ``sentences``,
    default both sides of ``TINY_PAIRS``), exported to ``root / "model"`` in HF format."""
    from eightbit.models.marian_build import build_model, train_sentencepiece, write_tokenizer_files
    from eightbit.training.seq2seq import export

    if sentences is None:
        sentences = [s for pair in TINY_PAIRS for s in pair]
    spm = train_sentencepiece(list(sentences), root / "spm", 90)
    tokenizer = write_tokenizer_files(spm, root / "tok")
    torch.manual_seed(0)
    model = build_model(len(tokenizer), tiny_marian_architecture(max_positions=40))
    export(model.eval(), tokenizer, root / "model")
    return root / "model"


def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


def tiny_marian_architecture(**changes):
    """A one-layer MarianArchitecture for :func:`eightbit.models.marian_build.build_model`."""
    from eightbit.models.marian_build import MarianArchitecture

    tiny = {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "attention_heads": 2,
        "ffn_dim": 64,
        "max_positions": 64,
        "dropout": 0.0,
    }
    return MarianArchitecture(**{**tiny, **changes})
