"""The observer interface: a stream of tensors in, a quantization range out.

An observer is an ``nn.Module`` with two verbs (as in torch.ao and optimum-quanto):
``forward(x, mask=None)`` records statistics and returns ``x`` unchanged, so it can sit inline in
a model, and :meth:`Observer.calculate_qparams` turns the statistics into a
:class:`~eightbit.core.qparams.QParams`. :meth:`Observer.range` gives the chosen ``[min, max]``.
Statistics live in registered buffers, so they travel with ``state_dict`` (e.g. the EMA ranges
learned during quantization-aware training).

The optional ``mask`` marks which positions count: padding must not shift a range (Bhandare et
al. 2019 calibrate on padded batches of sentences).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from eightbit.calibration.config import ObserverConfig, ObserverError
from eightbit.core.qparams import QParams, qparams_from_range


def expand_mask(x: Tensor, mask: Tensor | None) -> Tensor | None:
    """``mask`` over the leading dims of ``x`` (e.g. (batch, time)), broadcast to ``x.shape``."""
    if mask is None:
        return None
    if mask.dim() > x.dim():
        raise ObserverError(
            f"mask of shape {tuple(mask.shape)} has more dims than x of {tuple(x.shape)}"
        )
    mask = mask.to(device=x.device).bool()
    mask = mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))
    try:
        return mask.expand_as(x)
    except RuntimeError as err:
        raise ObserverError(
            f"mask of shape {tuple(mask.shape)} does not match the leading dims of x "
            f"{tuple(x.shape)}"
        ) from err


def check_finite(x: Tensor, mask: Tensor | None) -> None:
    """Raise :class:`ObserverError` if a counted position of ``x`` is NaN or infinite.

    Masked-out positions are not checked: padding may legitimately hold ``-inf`` (masked
    attention scores).
    """
    bad = ~torch.isfinite(x)
    if mask is not None:
        bad &= mask
    if bool(bad.any()):
        nan = int(torch.isnan(x)[bad].sum())
        raise ObserverError(
            f"observer input has {nan} NaN and {int(bad.sum()) - nan} infinite values at counted "
            "positions; calibration data must be finite"
        )


def masked_values(x: Tensor, mask: Tensor | None) -> Tensor:
    """The counted values of ``x`` as a 1-d float64 tensor (checked finite)."""
    full = expand_mask(x, mask)
    check_finite(x, full)
    values = x if full is None else x[full]
    return values.reshape(-1).double()


def batch_min_max(x: Tensor, mask: Tensor | None, axis: int | None) -> tuple[Tensor, Tensor]:
    """Minimum and maximum of the counted values of ``x``, per tensor or per channel of ``axis``.

    Returns float32 tensors (0-d, or ``(x.shape[axis],)``); a channel with no counted value gets
    ``+inf`` / ``-inf``, which leave running minima and maxima unchanged.
    """
    full = expand_mask(x, mask)
    check_finite(x, full)
    x = x.float()
    lo = x if full is None else torch.where(full, x, torch.inf)
    hi = x if full is None else torch.where(full, x, -torch.inf)
    if axis is None:
        if x.numel() == 0:
            return torch.tensor(torch.inf), torch.tensor(-torch.inf)
        return lo.amin(), hi.amax()
    channels = x.shape[axis]
    lo = lo.movedim(axis, 0).reshape(channels, -1)  # (channels, rest)
    hi = hi.movedim(axis, 0).reshape(channels, -1)
    if lo.shape[1] == 0:
        return torch.full((channels,), torch.inf), torch.full((channels,), -torch.inf)
    return lo.amin(dim=1), hi.amax(dim=1)


def symmetrize(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """``(-a, a)`` with ``a = max(|lo|, |hi|)``."""
    amax = torch.maximum(-lo, hi) + 0.0  # + 0.0: never -0.0
    return -amax, amax


class Observer(nn.Module, ABC):
    """Base class: records statistics in ``forward``, turns them into a range and qparams.

    Subclasses implement :meth:`observe` (update the buffers from one batch) and
    :meth:`_range` (the raw ``[min, max]`` thresholds). With ``config.symmetric`` the range is
    made symmetric around 0.
    """

    def __init__(self, config: ObserverConfig | None = None) -> None:
        super().__init__()
        self.config = config or ObserverConfig()

    @property
    def axis(self) -> int | None:
        return self.config.axis

    @property
    def symmetric(self) -> bool:
        return self.config.symmetric

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Record the statistics of ``x`` (positions where ``mask`` is False excluded); return x.

        ``mask`` is boolean and broadcasts over the leading dims of ``x``: (batch, time) for x of
        (batch, time, hidden). Raises :class:`ObserverError` on NaN/Inf at counted positions.
        """
        with torch.no_grad():
            self.observe(x.detach(), mask)
        return x

    @abstractmethod
    def observe(self, x: Tensor, mask: Tensor | None) -> None:
        """Update the statistics with one batch."""

    @abstractmethod
    def _range(self) -> tuple[Tensor, Tensor]:
        """Raw thresholds ``(min, max)`` as float32 tensors; raises if nothing was observed."""

    def range(self) -> tuple[Tensor, Tensor]:
        """The chosen thresholds ``(min, max)``: float32, 0-d or per channel ``(channels,)``."""
        lo, hi = self._range()
        return symmetrize(lo, hi) if self.symmetric else (lo, hi)

    def calculate_qparams(self) -> QParams:
        """Scale and zero point mapping :meth:`range` onto the configured integer grid."""
        lo, hi = self.range()
        return qparams_from_range(
            lo,
            hi,
            dtype=self.config.dtype,
            symmetric=self.symmetric,
            narrow=self.config.narrow,
            reduce_range=self.config.reduce_range,
            axis=self.axis,
        )

    def _no_data(self) -> ObserverError:
        return ObserverError(
            f"{type(self).__name__} has observed no data (every position masked, or no batch "
            "run); run calibration batches before asking for a range"
        )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Buffers adopt the saved shapes: per-channel ranges are sized by the first batch.
        for name, buffer in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buffer is not None and saved is not None and saved.shape != buffer.shape:
                self._buffers[name] = torch.empty_like(saved, dtype=buffer.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"method={self.config.method!r}, dtype={self.config.dtype}, axis={self.axis}"
