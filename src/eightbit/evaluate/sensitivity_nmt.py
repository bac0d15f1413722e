"""The translation task of the sensitivity analysis: a Marian model scored by greedy dev BLEU."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from eightbit.evaluate.metrics import translation_scores
from eightbit.evaluate.sensitivity import SensitivityTask, dev_sample
from eightbit.models.marian import calibration_batches, calibration_run, load_marian, translate

TRANSLATION = "translation"
DEFAULT_DEV_SIZE = 100  # sentences: the defaults finish in minutes on the shipped model


@dataclass
class DevScorer:
    """Greedy dev-set BLEU of a model (the ``metric`` of :mod:`eightbit.mixed`)."""

    tokenizer: Any
    dev: list[tuple[str, str]]

    def __call__(self, model: nn.Module) -> float:
        return self.evaluate(model)["bleu"]

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """BLEU, chrF, EOS failures, translate seconds and generated tokens per second."""
        start = time.perf_counter()
        outputs = translate(model, self.tokenizer, [s for s, _ in self.dev], progress=False)
        seconds = time.perf_counter() - start
        texts = [o.text for o in outputs]
        scores = translation_scores(
            texts, [r for _, r in self.dev], [o.hit_length_limit for o in outputs]
        )
        tokens = sum(len(ids) for ids in self.tokenizer(text_target=texts)["input_ids"])
        return {
            **scores.__dict__,
            "translate_seconds": round(seconds, 2),
            "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1),
        }


def translation_task(
    model_dir: str | os.PathLike[str],
    sources: list[str],
    dev: list[tuple[str, str]],
    dev_size: int | None = DEFAULT_DEV_SIZE,
    seed: int = 0,
    progress: bool = True,
) -> SensitivityTask:
    """The FP32 Marian model in ``model_dir``, calibrated on ``sources`` (its own greedy
    translations teacher-forced), scored by greedy BLEU on a seeded sample of ``dev`` pairs."""
    model, tokenizer = load_marian(Path(model_dir))
    scorer = DevScorer(tokenizer, dev_sample(dev, dev_size, seed))
    return SensitivityTask(
        kind=TRANSLATION,
        model=model,
        tokenizer=tokenizer,
        batches=calibration_batches(model, tokenizer, sources, progress=progress),
        run=calibration_run,
        score=scorer,
        evaluate=scorer.evaluate,
        metric_key="bleu",
        describe={
            "metric": "dev BLEU (greedy, sacreBLEU)",
            "dev_sentences": len(scorer.dev),
            "calibration_sentences": len(sources),
            "seed": seed,
        },
    )
