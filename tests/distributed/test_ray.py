"""Sharded translation on a local Ray instance (2 workers, this machine only).

One Ray instance for the module: starting Ray and its actors costs seconds.
"""

import os
import signal

import pytest

from eightbit.cli import main
from eightbit.config import DYNAMIC, QuantConfig
from eightbit.distributed import (
    RayConnectionError,
    RayOptions,
    ShardSettings,
    translate_file_on_ray,
    translate_on_ray,
    work_dir_for,
)
from eightbit.models.marian import (
    aligned_to_lines,
    load_translation_model,
    save_translation_model,
    translate,
    translation_text,
)
from eightbit.transform import quantize_dynamic
from tests.helpers import tiny_marian_dir

ray = pytest.importorskip("ray")

WORDS = ("man", "dog", "woman", "house", "sees", "the", "big", "small")
SENTENCES = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 2 + i % 7)) for i in range(24)]
SETTINGS = ShardSettings(batch_tokens=48, max_sentences=4, shard_sentences=4)
TWO_WORKERS = RayOptions(workers=2)


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_marian_dir(tmp_path_factory.mktemp("marian"), SENTENCES)


@pytest.fixture(scope="module")
def int8_dir(model_dir, tmp_path_factory):
    model, tokenizer = load_translation_model(model_dir)
    int8 = quantize_dynamic(model, QuantConfig(method=DYNAMIC))
    return save_translation_model(int8, tokenizer, tmp_path_factory.mktemp("int8") / "model")


@pytest.fixture(scope="module")
def reference(model_dir):
    """The single-machine translation every Ray run must reproduce."""
    model, tokenizer = load_translation_model(model_dir)
    return translate(
        model,
        tokenizer,
        SENTENCES,
        batch_tokens=SETTINGS.batch_tokens,
        max_sentences=SETTINGS.max_sentences,
        progress=False,
    )


def test_a_worker_killed_mid_run_loses_nothing(ray_instance, model_dir, reference, tmp_path):
    killed = []

    def kill_first_worker(result):
        if not killed:
            os.kill(result.pid, signal.SIGKILL)
            killed.append(result.pid)

    outputs, stats = translate_on_ray(
        model_dir,
        SENTENCES,
        settings=SETTINGS,
        options=TWO_WORKERS,
        work_dir=tmp_path / "work",
        progress=False,
        on_shard=kill_first_worker,
    )
    assert stats.shards >= 4 and stats.workers == 2
    assert stats.replaced_workers >= 1 and stats.retried_shards >= 1
    assert outputs == reference
    assert not (tmp_path / "work").exists()


def test_workers_wider_than_the_cluster_are_refused(ray_instance, model_dir):
    with pytest.raises(RayConnectionError, match="only 2 CPUs"):
        translate_on_ray(model_dir, SENTENCES, options=RayOptions(threads_per_worker=3))


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_from_finished_shards(
    ray_instance, model_dir, reference, tmp_path
):
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [*SENTENCES[:10], "", *SENTENCES[10:]]
    source.write_text("\n".join(lines) + "\n")
    finished = []

    def stop_after_two(result):
        finished.append(result.index)
        if len(finished) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        translate_file_on_ray(
            model_dir, lines, output, settings=SETTINGS, options=TWO_WORKERS,
            progress=False, on_shard=stop_after_two,
        )  # fmt: skip
    work = work_dir_for(output)
    assert not output.exists()
    assert len(list(work.glob("shard-*.json"))) == 2

    stats = translate_file_on_ray(
        model_dir, lines, output, settings=SETTINGS, options=TWO_WORKERS, progress=False
    )
    assert stats.resumed_shards == 2
    assert output.read_text() == translation_text(aligned_to_lines(lines, reference))
    assert not work.exists()


def test_cli_translate_and_evaluate_int8_on_ray_match_the_plain_commands(
    ray_instance, int8_dir, tmp_path
):
    source, refs = tmp_path / "in.txt", tmp_path / "ref.txt"
    source.write_text("\n".join(SENTENCES[:6]) + "\n")
    refs.write_text("\n".join(SENTENCES[1:7]) + "\n")
    common = ["--quiet", "translate", str(int8_dir), str(source), "--output"]
    assert main([*common, str(tmp_path / "plain.txt")]) == 0
    assert main([*common, str(tmp_path / "ray.txt"), "--ray", "--workers", "1"]) == 0
    assert (tmp_path / "ray.txt").read_text() == (tmp_path / "plain.txt").read_text()
    common = ["--quiet", "evaluate", str(int8_dir), str(source), str(refs), "--json"]
    assert main([*common, str(tmp_path / "plain.json")]) == 0
    assert main([*common, str(tmp_path / "ray.json"), "--ray", "--workers", "1"]) == 0
    assert (tmp_path / "ray.json").read_text() == (tmp_path / "plain.json").read_text()
