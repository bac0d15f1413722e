"""Greedy and beam search over the incremental decoder, with Hugging Face ``generate`` semantics.

Beam search follows ``transformers`` (v5) for encoder-decoder models exactly: top ``2 * beams``
continuations of all beams, finished hypotheses scored ``sum log p / generated_len **
length_penalty``, ``early_stopping=True`` (a sentence is done once it has ``beams`` finished
hypotheses), the length limit finishes every beam, and no forced end-of-sentence. Sentences
that are done leave the batch, so later steps compute only the rest (unless the model's rows
depend on each other, as with per-tensor dynamic INT8: then they stay, as in ``generate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from eightbit.engine import decoder
from eightbit.engine.plan import DecoderPlan
from eightbit.kernels import native
from eightbit.nn import QuantLinear

_NEG = -1.0e9  # Hugging Face's "impossible" score offset


def _suppressor(plan: DecoderPlan) -> Callable[[Tensor], Tensor]:
    """``scores`` (rows, vocab) with the plan's suppressed tokens at -inf, in place."""
    if not plan.suppressed_tokens:
        return lambda scores: scores
    index = torch.tensor(plan.suppressed_tokens)  # built once per batch, not per step
    return lambda scores: scores.index_fill_(1, index, float("-inf"))


def _argmax(logits: Tensor) -> Tensor:
    """``logits.argmax(-1)``, by the native kernel where it runs (8x faster at 64 x 8k)."""
    if logits.dtype is torch.float32 and logits.is_contiguous() and native.is_available():
        return native.argmax_rows(logits)
    return logits.argmax(-1)


def _greedy_choice(plan: DecoderPlan) -> Callable[[Tensor], Tensor]:
    """The next tokens (rows,) of the decoder's hidden states (rows, d_model): the argmax of the
    logits (plus the logits bias) with the suppressed tokens at -inf. An INT8 output layer fuses
    the argmax into its GEMM (``QuantLinear.forward_argmax``: the same indices, and the
    (rows, vocab) logits are never written, 2 MB a step at 64 x 8k)."""
    head = plan.lm_head
    fusable = isinstance(head, QuantLinear) and not head.has_output_qparams
    if fusable and head.activation == "none":
        skip = None
        if plan.suppressed_tokens:
            skip = torch.zeros(plan.vocab_size, dtype=torch.bool)
            skip[list(plan.suppressed_tokens)] = True
        return lambda x: head.forward_argmax(x, skip, plan.logits_bias)
    suppress = _suppressor(plan)
    return lambda x: _argmax(suppress(decoder.output_logits(plan, x)))


def trim_to_longest(ids: Tensor, eos: int) -> Tensor:
    """Drop trailing columns after the longest hypothesis' end-of-sentence (as ``generate``)."""
    is_eos = ids[:, 1:] == eos
    ends = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 2, ids.shape[1])
    return ids[:, : int(ends.max())]


def greedy(
    plan: DecoderPlan,
    encoder_states: Tensor,
    attention_mask: Tensor,
    max_new_tokens: int,
    compact_fraction: float = 0.75,
) -> Tensor:
    """Token ids (batch, 1 + generated); rows done are padded. Finished rows are dropped from
    the batch once at most ``compact_fraction`` of the rows still run (fewer gathers), unless
    rows depend on each other (``plan.rows_independent``)."""
    batch = encoder_states.shape[0]
    out = torch.full((batch, max_new_tokens + 1), plan.pad_token, dtype=torch.long)
    out[:, 0] = plan.start_token
    cache = decoder.new_cache(plan, encoder_states, attention_mask, max_new_tokens)
    tokens = out[:, 0].clone()
    origin = torch.arange(batch)  # the output row of each decoder row
    running = torch.ones(batch, dtype=torch.bool)
    steps = 0
    choose = _greedy_choice(plan)
    for steps in range(1, max_new_tokens + 1):
        tokens = torch.where(
            running, choose(decoder.hidden_step(plan, cache, tokens)), plan.pad_token
        )
        out[origin, steps] = tokens
        running &= tokens != plan.eos_token
        alive = int(running.sum())
        if alive == 0:
            break
        if plan.rows_independent and alive <= compact_fraction * running.shape[0]:
            keep = running.nonzero().squeeze(1)
            cache.keep(keep, keep)
            origin, tokens, running = origin[keep], tokens[keep], running[keep]
    return out[:, : steps + 1]


@dataclass
class _Beams:
    """Search state of the sentences still running; (items, beams, ...) tensors."""

    running_seq: Tensor  # (items, beams, 1 + max_new) token ids
    running_scores: Tensor  # (items, beams) sum of log-probabilities
    finished_seq: Tensor
    finished_scores: Tensor  # length-normalized
    finished: Tensor  # (items, beams) bool: slot holds a finished hypothesis
    improvable: Tensor  # (items, 1) bool: HF's "early stop heuristic unsatisfied"
    origin: Tensor  # (items,) output row

    def select(self, items: Tensor) -> None:
        for name in ("running_seq", "running_scores", "finished_seq", "finished_scores"):
            setattr(self, name, getattr(self, name).index_select(0, items))
        self.finished = self.finished.index_select(0, items)
        self.improvable = self.improvable.index_select(0, items)
        self.origin = self.origin.index_select(0, items)


def _initial_beams(plan: DecoderPlan, batch: int, beams: int, max_new_tokens: int) -> _Beams:
    seq = torch.full((batch, beams, max_new_tokens + 1), plan.pad_token, dtype=torch.long)
    seq[:, :, 0] = plan.start_token
    scores = torch.zeros(batch, beams)
    scores[:, 1:] = _NEG
    return _Beams(
        running_seq=seq,
        running_scores=scores,
        finished_seq=seq.clone(),
        finished_scores=torch.full((batch, beams), _NEG),
        finished=torch.zeros(batch, beams, dtype=torch.bool),
        improvable=torch.ones(batch, 1, dtype=torch.bool),
        origin=torch.arange(batch),
    )


def _advance(
    state: _Beams, log_probs: Tensor, step: int, last: bool, eos: int, length_penalty: float
) -> Tensor:
    """One beam step (HF ``_beam_search`` body); returns each new running beam's source beam."""
    items, beams = state.running_scores.shape
    vocab = log_probs.shape[-1]
    # in place: log_probs is this step's own buffer, and a second (rows, vocab) costs page faults
    total = log_probs.view(items, beams, vocab).add_(state.running_scores[:, :, None])
    total = total.view(items, -1)
    top_scores, top_index = torch.topk(total, 2 * beams)  # (items, 2 * beams)
    source_beam, top_tokens = top_index // vocab, top_index % vocab
    top_seq = state.running_seq.gather(
        1, source_beam[:, :, None].expand(-1, -1, state.running_seq.shape[2])
    )
    top_seq[:, :, step] = top_tokens
    hits = torch.full_like(top_tokens, True, dtype=torch.bool) if last else top_tokens == eos
    # running beams for the next step: the best continuations that did not just finish
    live_scores = top_scores + hits.float() * _NEG
    keep = torch.topk(live_scores, beams)[1]
    state.running_seq = top_seq.gather(1, keep[:, :, None].expand(-1, -1, top_seq.shape[2]))
    state.running_scores = live_scores.gather(1, keep)
    # finished hypotheses: only the top `beams` candidates may finish
    finishing = hits.clone()
    finishing[:, beams:] = False
    candidate = top_scores / (step**length_penalty)
    full = state.finished.all(-1, keepdim=True)
    candidate = candidate + (full | ~state.improvable).float() * _NEG + (~finishing).float() * _NEG
    merged_scores = torch.cat([state.finished_scores, candidate], 1)
    best = torch.topk(merged_scores, beams)[1]
    merged_seq = torch.cat([state.finished_seq, top_seq], 1)
    state.finished_seq = merged_seq.gather(1, best[:, :, None].expand(-1, -1, merged_seq.shape[2]))
    state.finished_scores = merged_scores.gather(1, best)
    state.finished = torch.cat([state.finished, finishing], 1).gather(1, best)
    best_running = state.running_scores[:, :1] / (step**length_penalty)
    worst_finished = torch.where(
        state.finished, state.finished_scores.min(1, keepdim=True)[0], torch.tensor(_NEG)
    )
    state.improvable &= (best_running > worst_finished).any(-1, keepdim=True)
    return source_beam.gather(1, keep)


def beam_search(
    plan: DecoderPlan,
    encoder_states: Tensor,
    attention_mask: Tensor,
    beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
) -> Tensor:
    """Best hypothesis per sentence, token ids (batch, 1 + generated), padded."""
    batch = encoder_states.shape[0]
    out = torch.full((batch, max_new_tokens + 1), plan.pad_token, dtype=torch.long)
    state = _initial_beams(plan, batch, beams, max_new_tokens)
    cache = decoder.new_cache(plan, encoder_states, attention_mask, max_new_tokens, beams)
    suppress = _suppressor(plan)
    log_probs = torch.empty(batch * beams, plan.vocab_size)  # one buffer for every step
    for step in range(1, max_new_tokens + 1):
        tokens = state.running_seq[:, :, step - 1].reshape(-1)  # (items * beams,)
        logits = decoder.step(plan, cache, tokens)
        rows_log_probs = log_probs[: logits.shape[0]]
        suppress(torch.log_softmax(logits, -1, out=rows_log_probs))
        last = step == max_new_tokens
        source = _advance(state, rows_log_probs, step, last, plan.eos_token, length_penalty)
        items = source.shape[0]
        rows = source + torch.arange(items)[:, None] * beams  # (items, beams) cache rows
        done = state.finished.all(-1) | ~state.improvable.squeeze(1)
        if last or bool(done.all()):
            break
        if plan.rows_independent and bool(done.any()):
            out[state.origin[done]] = state.finished_seq[done, 0]
            still = (~done).nonzero().squeeze(1)
            state.select(still)
            cache.keep(still, rows.index_select(0, still).reshape(-1))
        else:
            cache.reorder(rows.reshape(-1))
    out[state.origin] = state.finished_seq[:, 0]
    return trim_to_longest(out, plan.eos_token)
