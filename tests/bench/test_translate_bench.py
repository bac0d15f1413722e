"""The translation benchmark: CTranslate2 conversion, forced output length, report schema.

No timing is asserted (speed lives in bench/results). Models: a tiny random Marian built from a
config with a small BPE vocabulary, and a few sentences of the shipped model.
"""

import json
import sys

import pytest
import torch

from eightbit.bench.ct2_peer import (
    MissingBenchDependency,
    convert_checkpoint,
    ct2_translate,
    import_ctranslate2,
    load_translator,
)
from eightbit.bench.translate import (
    ENGINES,
    PRECISIONS,
    TranslateBenchConfig,
    generated_tokens,
    run_translate_benchmark,
    same_as_hf,
)
from eightbit.bench.translate_report import to_markdown
from eightbit.bench.translate_workloads import base_workload
from eightbit.cli import main
from eightbit.data.corpus import load_parallel_corpus
from eightbit.models.marian import Translation, generate_batch, load_marian, translate
from tests.models.test_marian_build import TINY  # d_model 32, 1+1 layers, 64 positions

SHIPPED = "models/marian-en-es"
TINY_VOCAB = 300
SOURCE_TOKENS = 15
ROW_FIELDS = {"model", "engine", "precision", "beam", "tokens_per_s", "sentences_per_s", "tokens"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-base")
    workload = base_workload(root, 3, SOURCE_TOKENS, TINY, TINY_VOCAB)
    return workload, convert_checkpoint(workload.model_dir, root / "ct2")


def test_tiny_workload_has_fixed_length_sources_and_forced_output(tiny):
    workload, _ = tiny
    _, tokenizer = load_marian(workload.model_dir)
    assert len(tokenizer) == TINY_VOCAB
    assert [len(ids) for ids in tokenizer(workload.sentences)["input_ids"]] == [SOURCE_TOKENS] * 3
    assert workload.forced_tokens == 2 * SOURCE_TOKENS + 10
    assert workload.references is None and workload.int8_method == "dynamic"


@pytest.mark.parametrize("beam", [1, 3])
def test_every_engine_generates_exactly_the_forced_length(tiny, beam):
    workload, ct2_dir = tiny
    model, tokenizer = load_marian(workload.model_dir)
    batch = tokenizer(workload.sentences, return_tensors="pt", padding=True)
    forced = workload.forced_tokens
    with torch.inference_mode():
        ids = generate_batch(model, dict(batch), beam, max_new_tokens=forced)
    assert ids.shape == (3, 1 + forced)
    assert not (ids[:, 1:] == tokenizer.eos_token_id).any()
    translator = load_translator(ct2_dir, "int8", threads=2)
    source = [
        tokenizer.convert_ids_to_tokens(row) for row in tokenizer(workload.sentences)["input_ids"]
    ]
    results = translator.translate_batch(
        source, beam_size=beam, max_decoding_length=forced, return_end_token=True
    )
    assert [len(r.hypotheses[0]) for r in results] == [forced] * 3
    outputs = ct2_translate(translator, tokenizer, workload.sentences, beam=beam, max_positions=64)
    assert all(o.hit_length_limit for o in outputs)


def test_ct2_fp32_translates_like_generate_on_the_shipped_model(tmp_path):
    # the shipped model's <pad> (decoder start) embedding is not zero: the conversion keeps it
    model, tokenizer = load_marian(SHIPPED)
    sentences = [source for source, _ in load_parallel_corpus("test")[:4]]
    translator = load_translator(convert_checkpoint(SHIPPED, tmp_path / "ct2"), "fp32", threads=2)
    for beam in (1, 4):
        ours = translate(model, tokenizer, sentences, beam=beam, progress=False)
        peer = ct2_translate(translator, tokenizer, sentences, beam=beam, max_positions=256)
        assert [o.text for o in peer] == [o.text for o in ours]
        assert not any(o.hit_length_limit for o in peer)


def test_generated_tokens_count_the_limit_or_the_text_with_eos(tiny):
    workload, _ = tiny
    _, tokenizer = load_marian(workload.model_dir)
    sources = workload.sentences[:2]
    outputs = [Translation("God said.", False), Translation("anything", True)]
    text_tokens = len(tokenizer(text_target=["God said."])["input_ids"][0])
    assert generated_tokens(tokenizer, sources, outputs, 64) == [
        text_tokens,
        2 * SOURCE_TOKENS + 10,
    ]
    assert tokenizer(text_target=["God said."])["input_ids"][0][-1] == tokenizer.eos_token_id


def test_report_schema_and_markdown():
    config = TranslateBenchConfig(
        test_size=3,
        hf_test_size=2,  # the engine is checked against generate on these two, batched alike
        calibration_size=3,
        base_sentences=3,
        base_source_tokens=SOURCE_TOKENS,
        base_arch=TINY,
        base_vocab=TINY_VOCAB,
        beams=(2,),
        repeats=2,
        progress=False,
    )
    report = run_translate_benchmark(config)
    assert report["threads"] == 2 and set(report["models"]) == {"shipped", "base"}
    assert report["worker_kind"] == "process" and report["workers_kept"] is True
    seen = {(r["model"], r["engine"], r["precision"], r["beam"]) for r in report["results"]}
    everything = {
        (m, e, p, b) for m in ("shipped", "base") for e in ENGINES for p in PRECISIONS for b in (2,)
    }
    assert seen == everything
    for row in report["results"]:
        assert set(row) >= ROW_FIELDS and row["tokens_per_s"] > 0
        assert len(row["runs_seconds"]) == 2 and row["seconds"] == pytest.approx(
            sum(row["runs_seconds"]) / 2, abs=1e-3
        )  # the median of two runs
        if row["model"] == "shipped":
            assert row["sentences"] == (2 if row["engine"] == "hf" else 3)
            assert 0 <= row["bleu"] <= 100
        else:
            assert row["at_forced_length"] and row["tokens"] == 3 * (2 * SOURCE_TOKENS + 10)
    json.dumps(report)
    markdown = to_markdown(report)
    assert "forked processes (one `Translator` per engine and precision" in markdown
    assert markdown.count("| engine | precision | beam | sentences | tokens/s |") == 2
    assert "**shipped**" in markdown and "**base**" in markdown
    assert "eightbit and `hf` workers: forked processes" in markdown
    hf_rows = [line for line in markdown.splitlines() if line.startswith("| hf | FP32 |")]
    assert len(hf_rows) == 2 and all("| 1.00x |" in line for line in hf_rows)
    # the engine is token-identical to generate of the same model: the run shows it
    engine_rows = [r for r in report["results"] if r["engine"] == "eightbit"]
    for row in engine_rows:
        shared = 2 if row["model"] == "shipped" else 3
        assert row["same_as_hf"]["identical"] == row["same_as_hf"]["sentences"] == shared
    hf_bleu = {
        r["precision"]: r["bleu"]
        for r in report["results"]
        if r["engine"] == "hf" and r["model"] == "shipped"
    }
    shipped = [r for r in engine_rows if r["model"] == "shipped"]
    assert all(r["same_as_hf"]["bleu"] == hf_bleu[r["precision"]] for r in shipped)
    assert "FP32 beam 2 2/2 identical, BLEU" in markdown


def test_same_as_hf_counts_the_shared_prefix():
    sentences = ["the cat sat on the mat", "a dog ran in the park", "it rained all day long"]
    engine = [Translation(text, False) for text in sentences]
    hf = [Translation(sentences[0], False), Translation("something else", False)]
    assert same_as_hf(engine, hf, None) == {"sentences": 2, "identical": 1}
    scored = same_as_hf(engine, hf, sentences)  # BLEU of the engine's first two only
    assert scored["sentences"] == 2 and scored["bleu"] == pytest.approx(100.0)
    assert same_as_hf(engine, hf, [sentences[0], "x y z w v", ""])["bleu"] < 100


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out, md = tmp_path / "t.json", tmp_path / "t.md"
    args = ["--quiet", "bench", "translate", "--models", "shipped", "--test-size", "3"]
    args += ["--beams", "1", "--engines", "ctranslate2", "--json", str(out), "--markdown", str(md)]
    assert main([*args, "--worker-kind", "thread"]) == 0
    data = json.loads(out.read_text())
    assert data["worker_kind"] == "thread"
    assert {(r["engine"], r["precision"]) for r in data["results"]} == {
        ("ctranslate2", "fp32"),
        ("ctranslate2", "int8"),
    }
    assert md.read_text().startswith("Translation benchmark")
    assert "| ctranslate2 | INT8 | 1 | 3 |" in capsys.readouterr().out


def test_missing_ctranslate2_is_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    with pytest.raises(MissingBenchDependency, match="pip install 'eightbit\\[bench\\]'"):
        import_ctranslate2()
    args = ["--quiet", "bench", "translate", "--models", "shipped", "--engines", "ctranslate2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ctranslate2 is not installed" in err


def test_loading_a_ct2_translator_leaves_torch_threads_alone(tmp_path):
    """CTranslate2's constructor sets the calling thread's OpenMP count to intra_threads (1 with
    2 replicas on 2 threads); left so, every later eightbit run got one worker on one core."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        load_translator(convert_checkpoint(SHIPPED, tmp_path / "ct2"), "int8", threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_repeats_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--quiet", "bench", "translate", "--repeats", "0"])
    assert exit_info.value.code == 2
    assert "--repeats: expected a positive integer" in capsys.readouterr().err
