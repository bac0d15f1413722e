"""The work directory: shards stored as they finish, resumed under the same key only."""

import json

import pytest

from eightbit.distributed import ShardStore, WorkDirError, work_dir_for
from eightbit.models.marian import Translation

SHARDS = [[3, 0], [1], [2, 4]]


def _texts(indices):
    return [Translation(f"t{i}", i == 4) for i in indices]


def test_finished_shards_survive_a_reopen_and_assemble_in_input_order(tmp_path):
    store = ShardStore(tmp_path / "w", "key1", SHARDS)
    store.write(2, _texts(SHARDS[2]))
    again = ShardStore(tmp_path / "w", "key1", SHARDS)
    assert again.finished() == {2}
    with pytest.raises(WorkDirError, match="missing or damaged"):
        again.assemble()
    again.write(0, _texts(SHARDS[0]))
    again.write(1, _texts(SHARDS[1]))
    assert again.assemble() == [Translation(f"t{i}", i == 4) for i in range(5)]
    again.remove()
    assert not (tmp_path / "w").exists()


def test_another_jobs_work_dir_is_cleared_not_reused(tmp_path):
    ShardStore(tmp_path / "w", "old", SHARDS).write(0, _texts(SHARDS[0]))
    fresh = ShardStore(tmp_path / "w", "new", SHARDS)
    assert fresh.finished() == set()
    assert json.loads((tmp_path / "w" / "manifest.json").read_text())["key"] == "new"


def test_a_damaged_or_foreign_shard_file_counts_as_unfinished(tmp_path):
    store = ShardStore(tmp_path / "w", "k", SHARDS)
    store.write(0, _texts(SHARDS[0]))
    store.write(1, _texts(SHARDS[1]))
    (tmp_path / "w" / "shard-000000.json").write_text('{"indices": [3, 0], "transl')
    record = {"indices": [9], "translations": [["x", False]]}
    (tmp_path / "w" / "shard-000001.json").write_text(json.dumps(record))
    assert store.finished() == set()


def test_a_directory_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "notes.txt").write_text("mine")
    with pytest.raises(WorkDirError, match=r"without manifest\.json"):
        ShardStore(tmp_path / "w", "k", SHARDS)
    assert (tmp_path / "w" / "notes.txt").read_text() == "mine"


def test_a_shard_with_the_wrong_count_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="2 sentences"):
        ShardStore(tmp_path / "w", "k", SHARDS).write(0, _texts([1]))


def test_work_dir_sits_beside_the_output(tmp_path):
    assert work_dir_for(tmp_path / "out.es") == tmp_path / "out.es.shards"
