"""Output error of alternative versions of a layer, measured on the layer's real inputs.

Forward hooks on the float modules of a model run each alternative (an INT8 module, a
fake-quantized copy with another range) on the very input the float module received and
accumulate the signal power of the float output and the power of the difference, over the
positions that count (padding excluded with :func:`eightbit.nn.observation_mask`). The result is
the signal-to-quantization-noise ratio, ``SQNR = 10 log10(sum y**2 / sum (y - y_q)**2)`` in dB
(torchao's ``compute_error``): one number per layer that says how much of its output survives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from eightbit.nn.mask import current_mask

Alternative = Callable[[Tensor], Tensor]
"""``alternative(input) -> output``: another version of a layer, same input and output shapes."""


def sqnr_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``; ``inf`` for an exact output, ``-inf`` for a zero signal."""
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


@dataclass
class _Power:
    signal: float = 0.0
    noise: float = 0.0


def _counted(y: Tensor, mask: Tensor | None) -> Tensor:
    """The output rows that count: ``y`` (..., features) restricted to ``mask`` (...)."""
    return y if mask is None else y[mask]


class OutputErrorMeter:
    """Measure alternatives of named modules against the modules themselves.

    ``alternatives[name][label]`` is run on every input of module ``name`` (an alternative must
    not call that module itself: its hook would recurse); :meth:`sqnr` gives
    ``{name: {label: dB}}``. Use as a context manager around the forward passes::

        with OutputErrorMeter(model, alternatives) as meter:
            for batch in batches:
                run(model, batch)
        meter.sqnr()
    """

    def __init__(self, model: nn.Module, alternatives: Mapping[str, Mapping[str, Alternative]]):
        self.model = model
        self.alternatives = alternatives
        self.power = {
            name: {label: _Power() for label in alts} for name, alts in alternatives.items()
        }
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> OutputErrorMeter:
        for name in self.alternatives:
            module = self.model.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        @torch.no_grad()
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            mask = current_mask(output)
            reference = _counted(output, mask).double()  # (rows, features)
            signal = float(reference.pow(2).sum())
            for label, alternative in self.alternatives[name].items():
                approx = _counted(alternative(inputs[0]), mask).double()
                power = self.power[name][label]
                power.signal += signal
                power.noise += float((reference - approx).pow(2).sum())

        return hook

    def sqnr(self) -> dict[str, dict[str, float]]:
        """SQNR in dB per module and alternative over everything seen so far."""
        return {
            name: {label: sqnr_db(p.signal, p.noise) for label, p in powers.items()}
            for name, powers in self.power.items()
        }

    def pooled_sqnr(self, groups: Mapping[str, Sequence[str]], label: str) -> dict[str, float]:
        """SQNR of ``label`` per group of modules (e.g. tied embeddings), powers summed."""
        pooled = {}
        for group, names in groups.items():
            signal = sum(self.power[n][label].signal for n in names)
            noise = sum(self.power[n][label].noise for n in names)
            pooled[group] = sqnr_db(signal, noise)
        return pooled
