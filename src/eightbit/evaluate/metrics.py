"""Task metrics. BLEU and chrF come from sacrebleu (never a home-grown BLEU)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TranslationScores:
    """Corpus-level translation quality; ``eos_failure_rate`` is the share of outputs that hit
    the length limit without emitting the end-of-sentence token (Bhandare et al.'s failure)."""

    bleu: float
    chrf: float
    eos_failure_rate: float
    length_ratio: float


def translation_scores(
    hypotheses: Sequence[str], references: Sequence[str], hit_length_limit: Sequence[bool]
) -> TranslationScores:
    import sacrebleu

    if len(hypotheses) != len(references) or len(hypotheses) != len(hit_length_limit):
        raise ValueError(
            f"{len(hypotheses)} hypotheses, {len(references)} references and "
            f"{len(hit_length_limit)} length flags: expected equal counts"
        )
    if not hypotheses:
        raise ValueError("no sentences to score")
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)])
    chrf = sacrebleu.corpus_chrf(list(hypotheses), [list(references)])
    return TranslationScores(
        bleu=round(bleu.score, 2),
        chrf=round(chrf.score, 2),
        eos_failure_rate=round(sum(hit_length_limit) / len(hypotheses), 4),
        length_ratio=round(bleu.sys_len / max(bleu.ref_len, 1), 4),
    )


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    if len(predictions) != len(labels) or not labels:
        raise ValueError("predictions and labels must be non-empty and of equal length")
    return sum(int(p == y) for p, y in zip(predictions, labels, strict=True)) / len(labels)


def balanced_accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Mean per-class recall (robust to imbalanced classes)."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError("predictions and labels must be non-empty and of equal length")
    recalls = []
    for cls in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == cls]
        recalls.append(sum(int(predictions[i] == cls) for i in idx) / len(idx))
    return sum(recalls) / len(recalls)
