"""Shard planning: shards follow batch boundaries, and a shard re-packs into its own batches."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eightbit.data.batching import pack_by_tokens
from eightbit.distributed import ShardSettings, plan_shards, run_key
from eightbit.models.common import ModelLoadError
from eightbit.models.marian import default_batch_tokens


@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=80),
    budget=st.integers(1, 300),
    cap=st.one_of(st.none(), st.integers(1, 8)),
    shard_sentences=st.integers(1, 30),
)
def test_a_shard_repacks_into_exactly_its_batches(lengths, budget, cap, shard_sentences):
    batches = pack_by_tokens(lengths, budget, cap)
    shards = plan_shards(batches, shard_sentences)
    assert [i for s in shards for i in s] == [i for b in batches for i in b]
    position = 0
    for shard in shards:
        assert len(shard) >= shard_sentences or shard is shards[-1]
        local = pack_by_tokens([lengths[i] for i in shard], budget, cap)
        regrouped = [[shard[j] for j in batch] for batch in local]
        assert regrouped == batches[position : position + len(regrouped)]
        position += len(regrouped)
    assert position == len(batches)


def test_settings_default_to_the_single_process_token_budget():
    assert ShardSettings().batch_tokens == default_batch_tokens(1)
    assert ShardSettings(beam=4).batch_tokens == default_batch_tokens(4)
    assert ShardSettings(beam=4, batch_tokens=100).batch_tokens == 100


def test_settings_are_validated():
    with pytest.raises(ValueError, match="positive"):
        ShardSettings(shard_sentences=0)


def test_run_key_changes_with_model_input_and_settings(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    key = run_key(model, ["a b", "c"], ShardSettings())
    assert run_key(model, ["a b", "c"], ShardSettings()) == key
    assert run_key(model, ["a", "b c"], ShardSettings()) != key
    assert run_key(model, ["a b", "c"], ShardSettings(beam=2)) != key
    (model / "config.json").write_text("{ }")
    assert run_key(model, ["a b", "c"], ShardSettings()) != key


def test_run_key_needs_a_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="not a directory"):
        run_key(tmp_path / "missing", ["a"], ShardSettings())
