"""Task metrics. BLEU and chrF come from sacrebleu (never a home-grown BLEU)."""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class PairedComparison:
    """Two classifiers on the same examples: ``broken``, examples the reference got right and
    the candidate wrong; ``fixed``, the reverse; ``agreement``, the share of identical
    predictions; ``p_value``, McNemar's exact two-sided test that ``broken`` and ``fixed`` are
    equally likely (large: the accuracy difference is within chance)."""

    agreement: float
    broken: int
    fixed: int
    p_value: float


def mcnemar_exact_p(broken: int, fixed: int) -> float:
    """Two-sided exact McNemar p-value: twice the binomial(n, 1/2) tail at ``min(b, c)``,
    capped at 1 (``n = b + c`` discordant pairs; 1.0 when there are none)."""
    if broken < 0 or fixed < 0:
        raise ValueError(f"counts must be non-negative, got {broken} and {fixed}")
    n = broken + fixed
    tail = sum(math.comb(n, i) for i in range(min(broken, fixed) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact in integers up to the final division


def paired_comparison(
    reference: Sequence[int], candidate: Sequence[int], labels: Sequence[int]
) -> PairedComparison:
    """How ``candidate``'s predictions differ from ``reference``'s (e.g. INT8 vs FP32)."""
    if not (len(reference) == len(candidate) == len(labels)) or not labels:
        raise ValueError("predictions and labels must be non-empty and of equal length")
    triples = list(zip(reference, candidate, labels, strict=True))
    broken = sum(r == y != c for r, c, y in triples)
    fixed = sum(c == y != r for r, c, y in triples)
    agreement = sum(r == c for r, c, _ in triples) / len(labels)
    return PairedComparison(agreement, broken, fixed, mcnemar_exact_p(broken, fixed))
