"""Marian builder: shapes and ids of the shipped architecture, and an OPUS-MT-style directory that
loads offline with ``from_pretrained`` and generates."""

import pytest
import torch

from eightbit.data.corpus import load_parallel_corpus
from eightbit.models.marian_build import (
    MarianArchitecture,
    build_model,
    train_sentencepiece,
    write_tokenizer_files,
)

TINY = MarianArchitecture(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    attention_heads=2,
    ffn_dim=64,
    max_positions=64,
    dropout=0.0,
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    sentences = [s for pair in load_parallel_corpus("train")[:100] for s in pair]  # 200
    out = tmp_path_factory.mktemp("tok")
    return write_tokenizer_files(train_sentencepiece(sentences, out / "spm", 300), out / "files")


def test_default_architecture_matches_the_shipped_model():
    model = build_model(8000)
    config = model.config
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (256, 3, 3)
    assert (config.encoder_ffn_dim, config.max_position_embeddings) == (1024, 256)
    assert 7.5e6 < sum(p.numel() for p in model.parameters()) < 8.0e6
    # one embedding matrix: encoder, decoder and output projection share it
    shared = model.model.shared.weight
    assert model.model.encoder.embed_tokens.weight is shared
    assert model.model.decoder.embed_tokens.weight is shared
    assert model.lm_head.weight is shared


def test_tokenizer_ids_follow_marian_conventions(tokenizer):
    assert tokenizer.eos_token_id == 0 and tokenizer.unk_token_id == 1
    assert tokenizer.pad_token_id == len(tokenizer) - 1
    ids = tokenizer(["In the beginning, God created the heavens and the earth."])["input_ids"][0]
    assert ids[-1] == 0 and tokenizer.unk_token_id not in ids
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "In the beginning, God created the heavens and the earth."
    spanish = tokenizer(text_target=["Y dijo Dios: Sea la luz, y fué la luz."])["input_ids"][0]
    assert tokenizer.decode(spanish, skip_special_tokens=True) == (
        "Y dijo Dios: Sea la luz, y fué la luz."
    )


def test_saved_directory_loads_offline_and_generates(tokenizer, tmp_path, monkeypatch):
    from transformers import MarianMTModel, MarianTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = build_model(len(tokenizer), TINY)
    config = model.config
    assert config.pad_token_id == config.decoder_start_token_id == tokenizer.pad_token_id
    assert config.eos_token_id == tokenizer.eos_token_id
    model.save_pretrained(str(tmp_path))
    tokenizer.save_pretrained(str(tmp_path))
    assert {"config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    loaded = MarianMTModel.from_pretrained(str(tmp_path), local_files_only=True).eval()
    loaded_tok = MarianTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    batch = loaded_tok(["God said.", "And the earth was empty."], return_tensors="pt", padding=True)
    out = loaded.generate(**batch, max_new_tokens=5, num_beams=1, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= 6
    assert (out[:, 0] == config.decoder_start_token_id).all()
