import pytest
from hypothesis import given
from hypothesis import strategies as st

from eightbit.evaluate.metrics import (
    accuracy,
    balanced_accuracy,
    mcnemar_exact_p,
    paired_comparison,
    translation_scores,
)


def test_translation_scores_wrap_sacrebleu_and_count_eos_failures():
    hyps = ["el perro come", "la casa es grande y grande y grande"]
    refs = ["el perro come", "la casa es grande"]
    scores = translation_scores(hyps, refs, [False, True])
    assert 0 < scores.bleu < 100
    assert scores.eos_failure_rate == 0.5
    assert scores.length_ratio > 1.0
    perfect = translation_scores(refs, refs, [False, False])
    assert perfect.bleu == 100.0 and perfect.eos_failure_rate == 0.0


def test_translation_scores_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="equal counts"):
        translation_scores(["a"], ["a", "b"], [False])


def test_balanced_accuracy_weights_classes_equally():
    labels = [0, 0, 0, 1]
    preds = [0, 0, 0, 0]
    assert accuracy(preds, labels) == 0.75
    assert balanced_accuracy(preds, labels) == 0.5


@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_matches_the_two_sided_binomial_test(broken, fixed):
    stats = pytest.importorskip("scipy.stats")
    p = mcnemar_exact_p(broken, fixed)
    assert p == mcnemar_exact_p(fixed, broken)
    if broken + fixed:
        assert p == pytest.approx(stats.binomtest(broken, broken + fixed).pvalue, rel=1e-9)
    else:
        assert p == 1.0


def test_mcnemar_known_values():
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(3, 3) == 1.0
    assert mcnemar_exact_p(1, 10) == pytest.approx(2 * 12 / 2**11)
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar_exact_p(-1, 2)


def test_paired_comparison_counts_what_the_candidate_broke_and_fixed():
    labels = [0, 1, 1, 0, 1]
    fp32 = [0, 1, 0, 0, 0]  # right, right, wrong, right, wrong
    int8 = [0, 0, 1, 0, 0]  # right, wrong, right, right, wrong
    c = paired_comparison(fp32, int8, labels)
    assert (c.broken, c.fixed) == (1, 1)
    assert c.agreement == pytest.approx(3 / 5)
    assert c.p_value == 1.0
    with pytest.raises(ValueError, match="equal length"):
        paired_comparison([0], [0, 1], [0, 1])
