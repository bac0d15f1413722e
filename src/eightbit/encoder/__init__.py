"""eightbit's encoder path for INT8 BERT classifiers: the model's own modules, called directly,
with fused query/key/value projections; the same logits as the model's Hugging Face forward.

:func:`classifier_runner` is what prediction and the classification benchmark call: it takes
this path for eightbit INT8 BERT classifiers and the model's own forward for everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn

from eightbit.encoder.forward import classify, encode
from eightbit.encoder.plan import (
    ClassifierPlan,
    Kernels,
    build_classifier_plan,
    check_supported,
    is_quantized,
)
from eightbit.engine.plan import UnsupportedModelError

__all__ = [
    "ClassifierPlan",
    "UnsupportedModelError",
    "build_classifier_plan",
    "check_supported",
    "classifier_runner",
    "classify",
    "encode",
    "is_quantized",
]

PLAN_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})

Runner = Callable[[Mapping[str, Tensor]], Tensor]


def _hf_logits(model: nn.Module) -> Runner:
    return lambda batch: model(**batch).logits


def classifier_runner(model: nn.Module, kernels: Kernels = "auto") -> Runner:
    """``run(batch) -> logits`` for a sequence classifier and batches of its inputs.

    eightbit INT8 BERT classifiers run on the encoder path (the plan is built here, once; build
    a new runner after changing the model); any other model, or a batch with inputs beyond
    ``input_ids``, ``attention_mask`` and ``token_type_ids``, runs ``model(**batch).logits``.
    Call it under ``torch.inference_mode()`` (or ``no_grad``), like the model's forward.
    ``kernels``: as :func:`build_classifier_plan` (``"torch"``: logits bit-identical to the
    model's forward; the default ``"auto"``: eightbit's fused kernels where they run).
    """
    hf = _hf_logits(model)
    if not is_quantized(model):
        return hf
    try:
        plan = build_classifier_plan(model, kernels)
    except UnsupportedModelError:
        return hf

    def run(batch: Mapping[str, Tensor]) -> Tensor:
        if not PLAN_INPUTS.issuperset(batch) or "input_ids" not in batch:
            return hf(batch)
        return classify(plan, **batch)

    return run
