"""The eightbit decoding engine for Marian models: encoder once per batch, incremental decoder
with a preallocated KV cache, greedy and beam search with Hugging Face ``generate`` semantics.

Runs FP32 models and INT8 models from :func:`eightbit.quantize` alike (it calls the model's own
layers), with fused projections (:mod:`eightbit.engine.fuse`) and finished sentences leaving
the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.engine import decoder
from eightbit.engine.plan import DecoderPlan, UnsupportedModelError, build_plan
from eightbit.engine.search import beam_search, greedy

__all__ = ["DecoderPlan", "UnsupportedModelError", "build_plan", "generate"]


def generate(plan: DecoderPlan, batch: dict[str, Tensor], beam: int, max_new_tokens: int) -> Tensor:
    """Token ids (batch, 1 + generated) for one encoded batch, like ``model.generate`` with
    ``num_beams=beam``, ``early_stopping=True`` and no forced end-of-sentence.

    ``plan``: :func:`build_plan` of the model (built once, reused for every batch).
    """
    with torch.inference_mode():
        states = decoder.encode(plan, batch["input_ids"], batch["attention_mask"])
        if beam == 1:
            return greedy(plan, states, batch["attention_mask"], max_new_tokens)
        return beam_search(plan, states, batch["attention_mask"], beam, max_new_tokens)
