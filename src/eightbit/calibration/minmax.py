"""Range observers: running min/max and its exponential moving average.

Min/max is the naive range that Bhandare et al. 2019 show failing on Transformer activations
(outliers stretch the range); it is still right for weights and well-behaved tensors. The moving
average is the activation range of simulated-quantization training: Jacob et al. 2018 (section
3.1) keep EMAs of the batch min and max; Q8BERT (Zafrir et al. 2019) keeps an EMA of the batch
``max|x|`` (``symmetric=True`` here). Both work per tensor or per channel (``axis``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.calibration.base import Observer, batch_min_max, symmetrize
from eightbit.calibration.config import ObserverConfig


class MinMaxObserver(Observer):
    """Running minimum and maximum over every batch seen."""

    def __init__(self, config: ObserverConfig | None = None) -> None:
        super().__init__(config)
        # Scalars until the first batch; then (channels,) when per channel.
        self.register_buffer("min_val", torch.tensor(torch.inf))
        self.register_buffer("max_val", torch.tensor(-torch.inf))

    def observe(self, x: Tensor, mask: Tensor | None) -> None:
        lo, hi = batch_min_max(x, mask, self.axis)
        self.min_val = torch.minimum(self.min_val, lo)
        self.max_val = torch.maximum(self.max_val, hi)

    def _range(self) -> tuple[Tensor, Tensor]:
        if not bool(torch.all(self.min_val <= self.max_val)):
            raise self._no_data()
        return self.min_val.clone(), self.max_val.clone()


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of the batch min and max.

    ``ema = decay * ema + (1 - decay) * batch``; the first batch (per channel: the first batch
    that counts any position of the channel) initializes it. With ``symmetric=True`` the tracked
    quantity is the batch ``max|x|`` (Q8BERT), so the range is ``(-ema, ema)``.
    """

    def observe(self, x: Tensor, mask: Tensor | None) -> None:
        lo, hi = batch_min_max(x, mask, self.axis)
        if self.symmetric:
            lo, hi = symmetrize(lo, hi)
        self.min_val = self._update(self.min_val, lo)
        self.max_val = self._update(self.max_val, hi)

    def _update(self, average: Tensor, batch: Tensor) -> Tensor:
        decay = self.config.ema_decay
        seen = torch.isfinite(batch)  # False for channels without a counted position
        first = ~torch.isfinite(average)
        blended = torch.where(first, batch, decay * average + (1.0 - decay) * batch)
        return torch.where(seen, blended, average)
