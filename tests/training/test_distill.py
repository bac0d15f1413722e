"""Knowledge distillation loss and the QAT loop learning from a teacher's logits (tiny BERT)."""

import math

import pytest
import torch
import torch.nn.functional as F

import eightbit
from eightbit.errors import EightbitError
from eightbit.models.bert import load_encoder_classifier, predict, predict_logits
from eightbit.training import classifier as clf
from eightbit.training.distill import DistillConfig, distillation_loss
from tests.tiny_classifier import synthetic_split, write_tiny_bert

STUDENT = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
TEACHER = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 2.0, 0.5]])
LABELS = torch.tensor([0, 1])


def test_weight_zero_is_the_label_cross_entropy():
    loss = distillation_loss(STUDENT, TEACHER, LABELS, DistillConfig(weight=0.0))
    assert torch.allclose(loss, F.cross_entropy(STUDENT, LABELS))


def test_soft_term_is_t_squared_kl_from_the_teacher():
    t = 3.0
    loss = distillation_loss(STUDENT, TEACHER, LABELS, DistillConfig(weight=1.0, temperature=t))
    p = torch.softmax(TEACHER / t, -1)
    q = torch.softmax(STUDENT / t, -1)
    kl = (p * (p.log() - q.log())).sum(-1).mean()
    assert math.isclose(float(loss), float(t * t * kl), rel_tol=1e-5)


def test_mixed_loss_is_the_weighted_sum_and_zero_kl_at_the_teacher():
    half = distillation_loss(STUDENT, TEACHER, LABELS, DistillConfig(weight=0.5))
    hard = distillation_loss(STUDENT, TEACHER, LABELS, DistillConfig(weight=0.0))
    soft = distillation_loss(STUDENT, TEACHER, LABELS, DistillConfig(weight=1.0))
    assert torch.allclose(half, 0.5 * hard + 0.5 * soft)
    same = distillation_loss(TEACHER, TEACHER, LABELS, DistillConfig(weight=1.0))
    assert abs(float(same)) < 1e-6


def test_gradient_flows_to_the_student_only():
    student, teacher = STUDENT.clone().requires_grad_(), TEACHER.clone().requires_grad_()
    distillation_loss(student, teacher, LABELS, DistillConfig()).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize("settings", [{"weight": 1.5}, {"weight": -0.1}, {"temperature": 0.0}])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        DistillConfig(**settings)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def test_qat_student_moves_toward_its_teacher_and_still_converts_exactly(tiny_dir):
    train = synthetic_split(40, seed=0)
    config = clf.FinetuneConfig(
        epochs=6, batch_size=8, learning_rate=1e-3, max_length=16, threads=1, progress=False
    )
    teacher, tokenizer = load_encoder_classifier(tiny_dir, 2)
    clf.train_classifier(teacher, tokenizer, train, config)
    target = predict_logits(teacher, tokenizer, train.texts, 8, 16, progress=False)
    assert not teacher.training and target.shape == (40, 2)
    student, _ = load_encoder_classifier(tiny_dir, 2)  # untrained: far from the teacher
    kd = DistillConfig(weight=1.0, temperature=1.0)

    def gap(model) -> float:
        with clf.ranges_frozen(model):
            logits = predict_logits(model.eval(), tokenizer, train.texts, 8, 16, progress=False)
        return float(distillation_loss(logits, target, torch.tensor(train.labels), kd))

    before = gap(student)
    qat = eightbit.prepare_qat(student)
    clf.train_classifier(qat, tokenizer, train, config, teacher=target, distill=kd)
    assert gap(qat) < 0.5 * before
    int8 = eightbit.convert(qat)
    texts = list(train.texts[:16])
    with clf.ranges_frozen(qat):
        assert predict(int8, tokenizer, texts, 8, 16, False) == predict(
            qat, tokenizer, texts, 8, 16, False
        )


def test_teacher_logits_must_cover_the_training_set(tiny_dir):
    model, tokenizer = load_encoder_classifier(tiny_dir, 2)
    train = synthetic_split(8)
    with pytest.raises(EightbitError, match="4 teacher logits for 8 training texts"):
        clf.train_classifier(model, tokenizer, train, teacher=torch.zeros(4, 2))
