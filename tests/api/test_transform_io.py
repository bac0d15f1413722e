"""Model-level API on tiny models built from configs: quantize, QAT, convert, save/load."""

import json

import pytest
import torch
from torch import nn

import eightbit
from eightbit import QATConfig, QuantConfig
from eightbit.io import ModelFormatError
from eightbit.nn import FakeQuantLinear, QuantEmbedding, QuantLinear
from tests.helpers import TinyMLP, sqnr_db, tiny_bert, tiny_marian


def _batches(n=4, vocab=50):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (3, 7), generator=g) for _ in range(n)]


@pytest.mark.parametrize("method", ["minmax", "kl-independent", "percentile", "dynamic"])
def test_quantize_mlp_swaps_modules_and_keeps_accuracy(method):
    torch.manual_seed(0)
    model = TinyMLP().eval()
    int8 = eightbit.quantize(model, _batches(), QuantConfig(method=method))
    assert isinstance(model.fc1, nn.Linear), "the input model must be left untouched"
    assert isinstance(int8.fc1, QuantLinear) and isinstance(int8.embed, QuantEmbedding)
    assert isinstance(int8.act, nn.GELU)
    ids = _batches(1)[0]
    with torch.no_grad():
        assert sqnr_db(model(ids), int8(ids)) > 20


def test_include_exclude_by_name():
    config = QuantConfig(method="minmax", exclude=("fc2",), quantize_embeddings=False)
    int8 = eightbit.quantize(TinyMLP().eval(), _batches(), config)
    assert isinstance(int8.fc1, QuantLinear)
    assert type(int8.fc2) is nn.Linear and type(int8.embed) is nn.Embedding


def test_empty_calibration_set_is_a_clear_error():
    with pytest.raises(eightbit.CalibrationError, match="empty"):
        eightbit.quantize(TinyMLP().eval(), [], QuantConfig(method="minmax"))


def test_qat_prepare_train_convert_mlp():
    torch.manual_seed(0)
    model = TinyMLP()
    qat = eightbit.prepare_qat(model, QATConfig())
    assert isinstance(qat.fc1, FakeQuantLinear)
    optimizer = torch.optim.SGD(qat.parameters(), lr=0.01)
    for ids in _batches(6):
        loss = qat(ids).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    qat.eval()
    int8 = eightbit.convert(qat)
    ids = _batches(1)[0]
    with torch.no_grad():
        torch.testing.assert_close(int8(ids), qat(ids), rtol=1e-4, atol=1e-5)


def test_tiny_marian_quantize_save_load_generate(tmp_path):
    model = tiny_marian()
    ids = torch.randint(0, 60, (2, 6))
    batches = [{"input_ids": ids, "decoder_input_ids": ids[:, :4]}]
    int8 = eightbit.quantize(model, batches, QuantConfig(method="minmax"))
    assert isinstance(int8.lm_head, QuantLinear)
    assert int8.lm_head.weight is int8.model.shared.weight, "tied int8 weights are stored once"
    with torch.no_grad():
        ref = model(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
        got = int8(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
    assert sqnr_db(ref, got) > 15
    path = eightbit.save(int8, tmp_path / "marian-int8")
    loaded = eightbit.load(path)
    with torch.no_grad():
        again = loaded(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
        torch.testing.assert_close(again, got, rtol=0, atol=0)
        out = loaded.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2
    meta = json.loads((path / "eightbit.json").read_text())
    assert meta["format_version"] == eightbit.io.FORMAT_VERSION
    assert meta["quantization"]["method"] == "minmax"


def test_tiny_bert_qat_and_dynamic(tmp_path):
    model = tiny_bert()
    ids = torch.randint(1, 100, (2, 9))
    qat = eightbit.prepare_qat(model, QATConfig())
    qat.train()
    qat(input_ids=ids)
    qat.eval()
    int8 = eightbit.convert(qat)
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        assert isinstance(getattr(int8.bert.embeddings, name), QuantEmbedding)
    with torch.no_grad():
        torch.testing.assert_close(
            int8(input_ids=ids).logits, qat(input_ids=ids).logits, rtol=1e-4, atol=1e-4
        )
    dyn = eightbit.quantize(model, None, QuantConfig(method="dynamic"))
    loaded = eightbit.load(eightbit.save(dyn, tmp_path / "bert-dyn"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, dyn(input_ids=ids).logits)


def test_save_is_atomic_and_refuses_foreign_directory(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    int8 = eightbit.quantize(TinyMLP().eval(), None, QuantConfig(method="dynamic"))
    with pytest.raises(ModelFormatError, match="refusing to overwrite"):
        eightbit.save(int8, foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"
    path = eightbit.save(int8, tmp_path / "m")
    eightbit.save(int8, path)  # overwriting our own model is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m"]


def test_load_rejects_bad_files(tmp_path):
    int8 = eightbit.quantize(TinyMLP().eval(), None, QuantConfig(method="dynamic"))
    path = eightbit.save(int8, tmp_path / "m")
    float_model = TinyMLP()
    assert isinstance(eightbit.load(path, model=TinyMLP()).fc1, QuantLinear)
    with pytest.raises(ModelFormatError, match="pass the float model"):
        eightbit.load(path)
    meta_file = path / "eightbit.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelFormatError, match="format_version 99"):
        eightbit.load(path, model=float_model)
    meta_file.write_text(json.dumps(meta))
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFormatError, match="safetensors"):
        eightbit.load(path, model=TinyMLP())
    with pytest.raises(ModelFormatError, match="not a directory"):
        eightbit.load(tmp_path / "missing")
