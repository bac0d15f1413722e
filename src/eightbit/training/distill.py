"""Knowledge distillation for quantization-aware training: the FP32 model teaches its INT8 copy.

QAT of BERT models usually learns from the full-precision teacher's soft targets as well as the
labels (Hinton et al. 2015; TernaryBERT, Zhang et al. 2020): the student then matches the
teacher's whole output distribution, not only its arg-max, which recovers what fake quantization
perturbs instead of refitting the labels. The teacher's logits are computed once, in eval mode
(no dropout), before training, so each step costs no teacher forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class DistillConfig:
    """Loss ``(1 - weight) * CE(student, labels) + weight * T^2 * KL(teacher_T || student_T)``,
    where ``_T`` is the softmax at temperature ``T``; ``T^2`` keeps the soft-target gradients
    on the scale of the hard-label ones (Hinton et al. 2015)."""

    weight: float = 0.5
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"distillation weight {self.weight} is not in [0, 1]")
        if self.temperature <= 0:
            raise ValueError(f"distillation temperature {self.temperature} is not positive")


def distillation_loss(
    student: Tensor, teacher: Tensor, labels: Tensor, config: DistillConfig
) -> Tensor:
    """The mean loss of a batch: ``student`` and ``teacher`` logits (batch, classes)."""
    t = config.temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher.detach() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student, labels)
    return (1.0 - config.weight) * hard + config.weight * (t * t) * soft
