"""The encoder path for INT8 BERT classifiers: bit-identical logits to the model's Hugging Face
forward, fused projections actually used, fallbacks for everything else, used by prediction."""

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F
import transformers.activations

import eightbit
import eightbit.encoder as encoder
from eightbit import QuantConfig
from eightbit.encoder import build_classifier_plan, check_supported, classifier_runner
from eightbit.engine.fuse import SplitLinears
from eightbit.kernels import gelu, native
from eightbit.models import bert
from eightbit.models.bert import calibration_run
from eightbit.nn import QuantLinear
from tests.helpers import tiny_bert
from tests.tiny_classifier import synthetic_split, write_tiny_bert

CONFIGS = {
    "static": QuantConfig(method="minmax"),
    "static-7bit": QuantConfig(method="minmax", reduce_range=True),
    "dynamic": QuantConfig(method="dynamic"),
    "dynamic-per-token": QuantConfig(method="dynamic", per_token=True),
    "key-left-fp32": QuantConfig(method="minmax", exclude=("*.key",)),
}


native_attention = pytest.mark.skipif(
    not native.attention_available(), reason="the native attention kernel needs AVX-512"
)


def _batch(**extra):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (4, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padded rows
    mask[3, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, **extra}


def _int8(config: QuantConfig):
    return eightbit.quantize(tiny_bert(), [_batch()], config, run=calibration_run, progress=False)


@pytest.fixture(scope="module", params=list(CONFIGS))
def int8(request):
    return _int8(CONFIGS[request.param])


def _token_types():
    types = torch.zeros(4, 12, dtype=torch.long)
    types[:, 6:] = 1
    return types


@pytest.mark.parametrize(
    "batch",
    [
        _batch(),
        {"input_ids": _batch()["input_ids"]},  # no mask: the model drops the all-ones mask
        _batch(token_type_ids=_token_types()),
    ],
    ids=["padded", "no-mask", "token-types"],
)
def test_logits_equal_the_hugging_face_forward(int8, batch):
    run = classifier_runner(int8, kernels="torch")
    with torch.inference_mode():
        assert torch.equal(run(batch), int8(**batch).logits)


class _EightbitGelu(torch.nn.Module):
    def forward(self, x):
        return gelu(x)


@contextlib.contextmanager
def _eightbit_gelu(model):
    """The model's GELU activations replaced by eightbit's (the fused epilogue's function)."""
    intermediates = [layer.intermediate for layer in model.bert.encoder.layer]
    saved = [m.intermediate_act_fn for m in intermediates]
    for m in intermediates:
        m.intermediate_act_fn = _EightbitGelu()
    try:
        yield
    finally:
        for m, act in zip(intermediates, saved, strict=True):
            m.intermediate_act_fn = act


@native_attention
def test_native_feed_forward_equals_the_forward_with_eightbits_gelu(int8):
    """The fused GELU and quantize, alone (torch's attention and LayerNorm), are bit for bit the
    model's forward with eightbit's GELU as its activation."""
    plan = dataclasses.replace(build_classifier_plan(int8, "native"), kernels="torch")
    with torch.inference_mode(), _eightbit_gelu(int8):
        assert torch.equal(encoder.classify(plan, **_batch()), int8(**_batch()).logits)


@native_attention
def test_native_kernels_stay_close_to_the_forward(int8):
    """Native attention, LayerNorm and GELU change float rounding only: tiny deviations."""
    batch, run = _batch(), classifier_runner(int8)
    with torch.inference_mode():
        fused, hf = run(batch), int8(**batch).logits
    torch.testing.assert_close(fused, hf, rtol=1e-3, atol=1e-4)
    assert torch.equal(fused.argmax(-1), hf.argmax(-1))


@native_attention
def test_the_feed_forward_fuses_gelu_and_the_quantize_of_fc2s_input():
    assert not any(
        layer.gelu_in_fc1
        for layer in build_classifier_plan(_int8(CONFIGS["static"]), "torch").layers
    )
    static = build_classifier_plan(_int8(CONFIGS["static"]))
    assert all(layer.gelu_in_fc1 and layer.quantized_fc2_input for layer in static.layers)
    dynamic = build_classifier_plan(_int8(CONFIGS["dynamic"]))
    assert all(layer.gelu_in_fc1 and not layer.quantized_fc2_input for layer in dynamic.layers)
    tanh = tiny_bert()
    tanh.config.hidden_act = "gelu_new"
    for layer in tanh.bert.encoder.layer:
        layer.intermediate.intermediate_act_fn = transformers.activations.ACT2FN["gelu_new"]
    int8 = eightbit.quantize(
        tanh, [_batch()], CONFIGS["static"], run=calibration_run, progress=False
    )
    assert not any(layer.gelu_in_fc1 for layer in build_classifier_plan(int8).layers)
    run = classifier_runner(int8)
    with torch.inference_mode():
        assert torch.equal(run(_batch()), int8(**_batch()).logits)


def test_query_key_value_run_as_one_int8_layer():
    plan = build_classifier_plan(_int8(CONFIGS["static"]))
    assert len(plan.layers) == 2
    for layer in plan.layers:
        assert isinstance(layer.qkv, QuantLinear) and layer.qkv.out_features == 3 * 32
    split = build_classifier_plan(_int8(CONFIGS["key-left-fp32"]))
    assert all(isinstance(layer.qkv, SplitLinears) for layer in split.layers)


def test_other_models_run_their_own_forward(monkeypatch):
    def no_plan(model):
        raise AssertionError("no plan expected")

    monkeypatch.setattr(encoder, "build_classifier_plan", no_plan)
    fp32 = tiny_bert()
    with torch.inference_mode():
        assert torch.equal(classifier_runner(fp32)(_batch()), fp32(**_batch()).logits)


def test_eager_attention_is_not_reproduced_and_falls_back():
    int8 = _int8(CONFIGS["static"])
    int8.config._attn_implementation = "eager"
    with pytest.raises(encoder.UnsupportedModelError, match="SDPA"):
        check_supported(int8)
    with torch.inference_mode():
        assert torch.equal(classifier_runner(int8)(_batch()), int8(**_batch()).logits)


def test_extra_inputs_take_the_hugging_face_forward(monkeypatch):
    int8 = _int8(CONFIGS["static"])
    calls = []
    monkeypatch.setattr(encoder, "classify", lambda *a, **k: calls.append(1))
    batch = _batch(position_ids=torch.arange(12).expand(4, 12))
    with torch.inference_mode():
        assert torch.equal(classifier_runner(int8)(batch), int8(**batch).logits)
    assert not calls


def test_prediction_runs_the_encoder_path(tmp_path, monkeypatch):
    model, tokenizer = bert.load_encoder_classifier(write_tiny_bert(tmp_path / "bert"), 2)
    texts = list(synthetic_split(12).texts)
    calibration = bert.calibration_batches(tokenizer, texts, batch_size=4)
    int8 = eightbit.quantize(model, calibration, CONFIGS["static"], run=calibration_run)
    expected = bert.predict_logits(int8, tokenizer, texts, batch_size=4, progress=False)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return encoder.forward.classify(*args, **kwargs)

    monkeypatch.setattr(encoder, "classify", counted)
    logits = bert.predict_logits(int8, tokenizer, texts, batch_size=4, progress=False)
    assert len(calls) == 3 and torch.equal(logits, expected)
    with torch.inference_mode():
        hf = torch.cat([int8(**tokenizer([t], return_tensors="pt")).logits for t in texts])
    assert torch.equal(logits.argmax(-1), hf.argmax(-1))


@native_attention
@pytest.mark.parametrize("shape", [(8, 128, 12, 64), (3, 37, 2, 16), (2, 5, 4, 32), (1, 3, 1, 128)])
def test_native_attention_equals_sdpa_up_to_rounding(shape):
    batch, seq, heads, head_dim = shape
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(batch * seq, 3 * heads * head_dim, generator=g) * 2
    valid = torch.ones(batch, seq, dtype=torch.bool)
    valid[-1, seq // 2 + 1 :] = False  # padding in the last sequence
    bias = torch.zeros(batch, seq).masked_fill_(~valid, float("-inf"))
    q, k, v = (qkv.view(batch, seq, 3, heads, head_dim)[:, :, i].transpose(1, 2) for i in range(3))
    for key_bias, mask in ((None, None), (bias, valid[:, None, None, :])):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
        got = native.attention_f32(qkv, key_bias, batch, heads, 0.3)
        expected = expected.transpose(1, 2).reshape(batch * seq, heads * head_dim)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@native_attention
def test_native_attention_rejects_shapes_it_cannot_run():
    with pytest.raises(ValueError, match="multiple of 16"):
        native.attention_f32(torch.zeros(4, 3 * 24), None, 1, 1, 1.0)
    with pytest.raises(ValueError, match="does not split"):
        native.attention_f32(torch.zeros(5, 96), None, 2, 1, 1.0)
    with pytest.raises(ValueError, match="key_bias"):
        native.attention_f32(torch.zeros(4, 96), torch.zeros(1, 3), 1, 2, 1.0)


@native_attention
def test_sequences_without_tokens_take_sdpa(monkeypatch):
    """A sequence whose mask is all zeros has nothing to attend to: SDPA, as the model's
    forward, decides what that gives."""
    int8 = _int8(CONFIGS["static"])
    assert build_classifier_plan(int8).kernels == "native"
    run = classifier_runner(int8)
    batch = _batch()
    batch["attention_mask"][2] = 0

    def refuse(*args):
        raise AssertionError("native attention called")

    monkeypatch.setattr(native, "attention_f32", refuse)
    with torch.inference_mode():
        got, expected = run(batch), int8(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4, equal_nan=True)


def test_kernel_choice_is_checked():
    int8 = _int8(CONFIGS["static"])
    with pytest.raises(ValueError, match="kernels"):
        build_classifier_plan(int8, kernels="flash")
    assert build_classifier_plan(int8, kernels="torch").kernels == "torch"


@native_attention
@pytest.mark.parametrize("n", [768, 37])
def test_native_add_layernorm_equals_torch_up_to_rounding(n):
    g = torch.Generator().manual_seed(0)
    h, x = torch.randn(2, 50, n, generator=g).unbind(0)
    norm = torch.nn.LayerNorm(n, eps=1e-12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=g)
        norm.bias.uniform_(-1, 1, generator=g)
        expected = norm(h + x)
        got = native.add_layernorm_(h, x, norm)
    assert got.data_ptr() == h.data_ptr()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
