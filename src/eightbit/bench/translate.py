"""Translation benchmark (issue 5): every engine on the same models, beams and threads, one run.

Engines and precisions: Hugging Face ``generate`` on the FP32 model and on eightbit's INT8 model
(the quality reference for the fast engine), the eightbit decoding engine (FP32, INT8), and
CTranslate2 (FP32, INT8, converted from the same checkpoint; :mod:`eightbit.bench.ct2_peer`).
Each eightbit and HF engine and precision is one :class:`~eightbit.models.marian.Translator`,
whose workers start in the warm-up and serve every timed run, as a CTranslate2 translator's
replicas do.

``tokens_per_s``: generated target tokens (the start token excluded, EOS included) per wall
second over the whole workload, tokenization and detokenization included, at the median of
``repeats`` timed runs; the runs go round every engine in turn (so a slow spell of a shared
machine hits all of them, not one), after one warm-up call per engine on a few sentences.
The count is engine-neutral, computed from each output: a sentence that hit
the length limit generated exactly the limit; any other generated its text's tokens plus EOS
(its text re-encoded, so identical outputs count identically whatever the engine).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eightbit.bench.ct2_peer import (
    convert_checkpoint,
    ct2_translate,
    import_ctranslate2,
    load_translator,
)
from eightbit.bench.timing import machine_info
from eightbit.bench.translate_workloads import (
    BASE_VOCAB,
    TRANSFORMER_BASE,
    Workload,
    base_workload,
    int8_model,
    shipped_workload,
)
from eightbit.errors import EightbitError
from eightbit.evaluate.metrics import translation_scores
from eightbit.models.marian import Translation, Translator, load_marian, max_new_tokens_for
from eightbit.models.marian_build import MarianArchitecture
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)

ENGINES = ("hf", "eightbit", "ctranslate2")
PRECISIONS = ("fp32", "int8")
WARMUP_SENTENCES = 4

Runner = Callable[[Sequence[str]], list[Translation]]


@dataclass(frozen=True)
class TranslateBenchConfig:
    """What to measure; the defaults are the issue's benchmark (about 5-8 minutes, 2 cores)."""

    model_dir: Path = Path("models/marian-en-es")
    models: tuple[str, ...] = ("shipped", "base")
    engines: tuple[str, ...] = ENGINES
    beams: tuple[int, ...] = (1, 4)
    threads: int = 2
    test_size: int | None = None  # shipped: the first N test sentences (default all 1,000)
    hf_test_size: int | None = 500  # shipped: HF generate (the slowest) on the first N only
    base_sentences: int = 32
    base_source_tokens: int = 20
    calibration_size: int = 600
    repeats: int = 3  # timed runs per engine, interleaved; rows report the median
    worker_kind: str = "process"  # eightbit and HF workers (data.parallel.map_in_workers)
    backend: str = "auto"
    progress: bool = True
    base_arch: MarianArchitecture = field(default=TRANSFORMER_BASE)
    base_vocab: int = BASE_VOCAB


def generated_tokens(
    tokenizer: Any, sources: Sequence[str], outputs: Sequence[Translation], max_positions: int
) -> list[int]:
    """Tokens each output took to generate (see the module docstring)."""
    source_lengths = [
        len(ids)
        for ids in tokenizer(list(sources), truncation=True, max_length=max_positions)["input_ids"]
    ]
    target_lengths = [
        len(ids) for ids in tokenizer(text_target=[o.text for o in outputs])["input_ids"]
    ]
    return [
        max_new_tokens_for(source, max_positions) if out.hit_length_limit else target
        for source, target, out in zip(source_lengths, target_lengths, outputs, strict=True)
    ]


def _translator_runner(translator: Translator, beam: int) -> Runner:
    return lambda sentences: translator.translate(sentences, beam=beam, progress=False)


@dataclass
class _Engines:
    """The runners of one workload, keyed by (engine, precision, beam), and the eightbit and HF
    translators (with their worker processes) they run on, to close after the workload."""

    runners: dict[tuple[str, str, int], Runner]
    tokenizer: Any
    max_positions: int
    translators: list[Translator]

    def close(self) -> None:
        for translator in self.translators:
            translator.close()


def _build_engines(workload: Workload, config: TranslateBenchConfig, tmp: Path) -> _Engines:
    model, tokenizer = load_marian(workload.model_dir)
    max_positions = model.config.max_position_embeddings
    models = {"fp32": model}
    if {"hf", "eightbit"} & set(config.engines):
        log.info("%s: building the INT8 model (%s)", workload.name, workload.int8_method)
        models["int8"] = int8_model(
            workload, model, tokenizer, config.calibration_size, config.backend, config.progress
        )
    ct2 = {}
    if "ctranslate2" in config.engines:
        ct2_dir = convert_checkpoint(workload.model_dir, tmp / f"{workload.name}-ct2")
        ct2 = {p: load_translator(ct2_dir, p, config.threads) for p in PRECISIONS}
    # one per engine and precision, for every beam, its workers kept across the runs (as CT2
    # keeps its replicas): one worker per thread, so the warm-up call starts them
    ours = {
        (engine, precision): Translator(
            models[precision], tokenizer, engine=engine, workers=config.threads,
            worker_kind=config.worker_kind,
        )
        for engine in config.engines if engine != "ctranslate2"
        for precision in PRECISIONS
    }  # fmt: skip
    runners: dict[tuple[str, str, int], Runner] = {}
    for beam in config.beams:
        for engine in config.engines:
            for precision in PRECISIONS:
                if engine == "ctranslate2":
                    runner = _ct2_runner(ct2[precision], tokenizer, beam, max_positions)
                else:
                    runner = _translator_runner(ours[(engine, precision)], beam)
                runners[(engine, precision, beam)] = runner
    return _Engines(runners, tokenizer, max_positions, list(ours.values()))


def _ct2_runner(translator: Any, tokenizer: Any, beam: int, max_positions: int) -> Runner:
    return lambda sentences: ct2_translate(
        translator, tokenizer, sentences, beam=beam, max_positions=max_positions
    )


def _time_run(
    workload: Workload, engines: _Engines, key: tuple[str, str, int], size: int | None, warm: bool
) -> tuple[float, list[Translation]]:
    """Seconds of one engine on the first ``size`` sentences (``None``: all) and its output,
    after a warm-up call when ``warm`` is false."""
    runner = engines.runners[key]
    sentences = workload.sentences[:size]
    if not warm:
        runner(sentences[:WARMUP_SENTENCES])
    start = time.perf_counter()
    outputs = runner(sentences)
    return time.perf_counter() - start, outputs


def _row(
    workload: Workload,
    engines: _Engines,
    key: tuple[str, str, int],
    outputs: list[Translation],
    runs: list[float],
) -> dict[str, Any]:
    """The result row of one engine: speed at the median of its timed ``runs``, quality."""
    engine, precision, beam = key
    sentences = workload.sentences[: len(outputs)]
    tokens = sum(generated_tokens(engines.tokenizer, sentences, outputs, engines.max_positions))
    seconds = statistics.median(runs)
    row: dict[str, Any] = {
        "model": workload.name,
        "engine": engine,
        "precision": precision,
        "beam": beam,
        "sentences": len(outputs),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "runs_seconds": [round(r, 3) for r in runs],
        "tokens_per_s": round(tokens / seconds, 1),
        "sentences_per_s": round(len(outputs) / seconds, 2),
    }
    if workload.references is not None:
        scores = _scores(outputs, workload.references)
        row.update(bleu=scores.bleu, chrf=scores.chrf, eos_failure_rate=scores.eos_failure_rate)
    if workload.forced_tokens is not None:
        row["at_forced_length"] = all(o.hit_length_limit for o in outputs)
    return row


def _scores(outputs: Sequence[Translation], references: Sequence[str]) -> Any:
    """Scores of ``outputs`` against the first ``len(outputs)`` references."""
    return translation_scores(
        [o.text for o in outputs],
        references[: len(outputs)],
        [o.hit_length_limit for o in outputs],
    )


def same_as_hf(
    engine: Sequence[Translation],
    hf: Sequence[Translation],
    references: Sequence[str] | None,
) -> dict[str, Any]:
    """The eightbit engine's output against ``generate``'s for the same model and beam, on the
    sentences both translated (HF's, a prefix): how many are identical, and the engine's BLEU
    there (the issue's goal: equal to HF's BLEU on them)."""
    shared = min(len(engine), len(hf))
    identical = sum(a.text == b.text for a, b in zip(engine[:shared], hf[:shared], strict=True))
    result: dict[str, Any] = {"sentences": shared, "identical": identical}
    if references is not None:
        result["bleu"] = _scores(engine[:shared], references).bleu
    return result


def _on_hf_sentences(
    workload: Workload,
    engines: _Engines,
    key: tuple[str, str, int],
    outputs: dict[tuple[str, str, int], list[Translation]],
    hf_sentences: int,
) -> list[Translation]:
    """The engine's output on exactly the sentences ``generate`` translated, batched as they
    were there: when HF timed only a prefix, the engine translates that prefix again (untimed).
    Its timed run over all sentences packs them into other batches, and a sentence's encoder
    output depends on the padded length of its batch (the attention's reduction runs over the
    padded keys, masked, in other blocks), so near-ties in beam search may go the other way."""
    ours = outputs[key]
    if len(ours) == hf_sentences:
        return ours
    return engines.runners[key](workload.sentences[:hf_sentences])


def _workload(name: str, config: TranslateBenchConfig, tmp: Path) -> Workload:
    if name == "shipped":
        return shipped_workload(config.model_dir, config.test_size)
    if name == "base":
        return base_workload(
            tmp / "base",
            config.base_sentences,
            config.base_source_tokens,
            config.base_arch,
            config.base_vocab,
        )
    raise EightbitError(f"unknown benchmark model {name!r}; expected shipped or base")


def _measure(
    workload: Workload, engines: _Engines, config: TranslateBenchConfig
) -> list[dict[str, Any]]:
    """The result rows of one workload: every runner timed ``config.repeats`` times in turns."""
    name = workload.name
    runs: dict[tuple[str, str, int], list[float]] = {key: [] for key in engines.runners}
    outputs: dict[tuple[str, str, int], list[Translation]] = {}
    turns = [(repeat, key) for repeat in range(config.repeats) for key in runs]
    for repeat, key in progress_bar(turns, f"bench {name}", "run", config.progress):
        size = config.hf_test_size if key[0] == "hf" and name == "shipped" else None
        seconds, outputs[key] = _time_run(workload, engines, key, size, warm=repeat > 0)
        runs[key].append(seconds)
    rows = {key: _row(workload, engines, key, outputs[key], runs[key]) for key in runs}
    for (engine, precision, beam), row in rows.items():
        hf = outputs.get(("hf", precision, beam))
        if engine == "eightbit" and hf is not None:
            key = (engine, precision, beam)
            ours = _on_hf_sentences(workload, engines, key, outputs, len(hf))
            row["same_as_hf"] = same_as_hf(ours, hf, workload.references)
    return list(rows.values())


def run_translate_benchmark(config: TranslateBenchConfig) -> dict[str, Any]:
    """Measure every engine, precision and beam on every model; returns the JSON-ready report."""
    if config.repeats < 1:
        raise EightbitError(f"repeats must be at least 1, got {config.repeats}")
    unknown = sorted(set(config.engines) - set(ENGINES))
    if unknown:
        raise EightbitError(f"unknown engine {unknown[0]!r}; expected one of {', '.join(ENGINES)}")
    if "ctranslate2" in config.engines:
        import_ctranslate2()  # fail before any work when the extra is missing
    torch.set_num_threads(config.threads)
    results: list[dict[str, Any]] = []
    models = {}
    with tempfile.TemporaryDirectory(prefix="eightbit-bench-") as tmp:
        for name in config.models:
            workload = _workload(name, config, Path(tmp))
            engines = _build_engines(workload, config, Path(tmp))
            models[name] = {
                "description": workload.description,
                "sentences": len(workload.sentences),
                "int8": workload.int8_method,
                "forced_tokens": workload.forced_tokens,
            }
            try:
                results.extend(_measure(workload, engines, config))
            finally:
                engines.close()
    return {
        "benchmark": "translate",
        "threads": config.threads,
        "repeats": config.repeats,
        "worker_kind": config.worker_kind,
        "workers_kept": True,  # one Translator per engine and precision for all its runs
        "machine": machine_info("transformers", "ctranslate2"),
        "models": models,
        "results": results,
    }
