"""Training loop on a tiny model: loss goes down, resume is exact, export loads and generates."""

import json

import pytest
import torch

from eightbit.models.marian_build import (
    MarianArchitecture,
    build_model,
    train_sentencepiece,
    write_tokenizer_files,
)
from eightbit.training import seq2seq
from eightbit.training.seq2seq import TrainConfig, train

PAIRS = [
    (f"the {a} sees the {b} number {i}", f"el {a} ve el {b} número {i}")
    for i in range(12)
    for a, b in (("man", "dog"), ("woman", "house"), ("child", "sea"))
]
TINY = MarianArchitecture(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    attention_heads=2,
    ffn_dim=64,
    max_positions=64,
    dropout=0.0,
)


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch):
    original = seq2seq.prepare_run

    def prepare(config, pairs):
        tokenizer, _ = original(config, pairs)
        torch.manual_seed(config.seed)
        return tokenizer, build_model(len(tokenizer), TINY)

    monkeypatch.setattr(seq2seq, "prepare_run", prepare)


def _config(tmp_path, **overrides):
    values = dict(
        run_dir=tmp_path,
        vocab_size=120,
        batch_tokens=200,
        warmup_steps=5,
        eval_every=10**6,
        dev_size=4,
        progress=False,
        max_epochs=3,
        learning_rate=3e-3,
        log_every=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_loss_goes_down_and_export_loads(tmp_path):
    from transformers import MarianMTModel, MarianTokenizer

    config = _config(tmp_path / "run", export_dir=tmp_path / "export")
    train(config, PAIRS, PAIRS[:4])
    losses = [
        r["loss"] for r in map(json.loads, (tmp_path / "run/train_log.jsonl").open()) if "loss" in r
    ]
    dev = [r for r in map(json.loads, (tmp_path / "run/train_log.jsonl").open()) if "dev_bleu" in r]
    assert len(dev) == 3
    model = MarianMTModel.from_pretrained(str(tmp_path / "export"))
    tokenizer = MarianTokenizer.from_pretrained(str(tmp_path / "export"))
    out = model.generate(
        **tokenizer(["the man sees the dog"], return_tensors="pt"), max_new_tokens=8
    )
    assert out.shape[0] == 1
    assert len(losses) > 5 and sum(losses[-3:]) < sum(losses[:3])


def test_resume_is_exact(tmp_path):
    straight = train(_config(tmp_path / "a", max_steps=6), PAIRS, [])
    train(_config(tmp_path / "b", max_steps=3), PAIRS, [])
    resumed = train(_config(tmp_path / "b", max_steps=6), PAIRS, [], resume=True)
    assert straight["step"] == resumed["step"] == 6
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a/checkpoint/model.safetensors"))
    b = load_file(str(tmp_path / "b/checkpoint/model.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_sentencepiece_vocabulary_has_marian_ids(tmp_path):
    spm = train_sentencepiece([s for p in PAIRS for s in p], tmp_path / "spm", 80)
    tokenizer = write_tokenizer_files(spm, tmp_path / "tok")
    assert tokenizer.eos_token_id == 0 and tokenizer.unk_token_id == 1
    assert tokenizer.pad_token_id == len(tokenizer) - 1
