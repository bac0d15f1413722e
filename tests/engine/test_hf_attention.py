"""``eightbit_decode``: which models get it, its fallback to SDPA, and its decode path."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import eightbit
from eightbit.config import QuantConfig
from eightbit.engine import build_plan, generate, hf_attention
from eightbit.kernels import native
from eightbit.kernels.decode_attention import decode_attention
from eightbit.models.marian import (
    calibration_batches,
    calibration_run,
    generate_batch,
    load_marian,
    load_translation_model,
    save_translation_model,
)
from tests.engine.conftest import static_int8
from tests.helpers import TINY_PAIRS, tiny_marian_dir

pytestmark = pytest.mark.skipif(not native.is_available(), reason="native kernel unavailable")


class _Module(torch.nn.Module):
    is_causal = False


def _qkv(batch: int, q_len: int, keys: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    heads, head_dim = 4, 8
    q = torch.randn(batch, q_len, heads, head_dim, generator=g).transpose(1, 2)  # as Marian's
    k = torch.randn(batch, heads, keys, head_dim, generator=g)
    v = torch.randn(batch, heads, keys, head_dim, generator=g)
    return q, k, v


def _bool_mask(batch: int, q_len: int, keys: int) -> torch.Tensor:
    mask = torch.ones(batch, 1, q_len, keys, dtype=torch.bool)
    mask[0, ..., -3:] = False
    return mask


def test_int8_models_on_the_native_backend_get_it_fp32_and_reference_do_not(tiny_model):
    assert static_int8(tiny_model).config._attn_implementation == hf_attention.NAME
    dynamic = eightbit.quantize(tiny_model, None, QuantConfig(method="dynamic"), progress=False)
    assert build_plan(dynamic).native_attention
    assert tiny_model.config._attn_implementation == "sdpa"  # the input model is untouched
    assert not build_plan(tiny_model).native_attention
    reference = static_int8(tiny_model, backend="reference")
    assert reference.config._attn_implementation == "sdpa"


def test_a_loaded_int8_model_gets_it(tmp_path):
    model, tokenizer = load_marian(tiny_marian_dir(tmp_path / "fp32"))
    calib = calibration_batches(model, tokenizer, [s for s, _ in TINY_PAIRS[:6]], progress=False)
    int8 = eightbit.quantize(
        model, calib, QuantConfig(method="minmax"), run=calibration_run, progress=False
    )
    loaded, _ = load_translation_model(save_translation_model(int8, tokenizer, tmp_path / "q"))
    assert loaded.config._attn_implementation == hf_attention.NAME


@pytest.mark.parametrize("masked", [False, True])
def test_queries_longer_than_one_run_sdpa_exactly(masked):
    q, k, v = _qkv(2, 5, 7)
    mask = _bool_mask(2, 5, 7) if masked else None
    got, _ = hf_attention.attention_forward(_Module(), q, k, v, mask, scaling=0.3)
    expected, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.3)
    assert torch.equal(got, expected)


def test_one_query_runs_the_kernel_with_the_boolean_mask_as_minus_infinity():
    q, k, v = _qkv(2, 1, 9)
    mask = _bool_mask(2, 1, 9)
    got, _ = hf_attention.attention_forward(_Module(), q, k, v, mask, scaling=0.3)
    additive = torch.zeros(2, 9).masked_fill_(~mask[:, 0, 0], float("-inf"))
    expected = decode_attention(q[:, :, 0], k, v, 0.3, mask=additive)
    assert got.shape == (2, 1, 4, 8)
    assert torch.equal(got[:, 0], expected)
    sdpa, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.3)
    torch.testing.assert_close(got, sdpa, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case",
    ["per-head mask", "dropout", "float64"],
)
def test_what_the_kernel_does_not_take_falls_back_to_sdpa(case):
    q, k, v = _qkv(2, 1, 6)
    mask, dropout = None, 0.0
    if case == "per-head mask":
        mask = torch.ones(2, 4, 1, 6, dtype=torch.bool)
        mask[:, 1, :, :2] = False
    elif case == "dropout":
        dropout = 0.5
        torch.manual_seed(0)
    else:
        q, k, v = q.double(), k.double(), v.double()
    got, _ = hf_attention.attention_forward(_Module(), q, k, v, mask, dropout, scaling=0.3)
    if case == "dropout":
        torch.manual_seed(0)
    expected, _ = sdpa_attention_forward(_Module(), q, k, v, mask, dropout, scaling=0.3)
    assert torch.equal(got, expected)


def test_a_model_in_a_process_without_the_registration_still_runs(tiny_model, monkeypatch):
    """A pickled model keeps ``eightbit_decode`` in its config, not the process's registration."""
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    from tests.engine.conftest import LENGTHS, LIMIT, source_batch

    int8 = static_int8(tiny_model)
    for interface in (AttentionInterface, AttentionMaskInterface):
        monkeypatch.delitem(interface._global_mapping, hf_attention.NAME)
    expected = generate_batch(int8, source_batch(LENGTHS), 2, LIMIT)
    for interface in (AttentionInterface, AttentionMaskInterface):
        monkeypatch.delitem(interface._global_mapping, hf_attention.NAME)
    assert torch.equal(generate(build_plan(int8), source_batch(LENGTHS), 2, LIMIT), expected)
