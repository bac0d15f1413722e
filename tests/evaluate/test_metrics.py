import pytest

from eightbit.evaluate.metrics import accuracy, balanced_accuracy, translation_scores


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
