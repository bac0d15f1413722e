"""The quantized layers of a model as units that can be switched between INT8 and FP32.

A unit is a group of INT8 modules that hold one weight: a Marian model has one embedding table
tied between ``model.shared``, ``encoder.embed_tokens`` and ``decoder.embed_tokens`` (modules
that share one int8 copy), which is one unit; every other ``QuantLinear`` is a unit of its own
(the output projection shares the table's weight too but is a different kind of layer, so it is
a unit apart). Switching swaps module objects between the INT8 model and its FP32 original, so
no layer is ever re-quantized: one calibration serves every mix. After each swap the uint8
feed-forward chains are brought up to date (:func:`eightbit.fusion.chain_feed_forward`): an INT8
``fc1`` requantizes to ``fc2``'s input only while that ``fc2`` is INT8 too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

from eightbit.fusion import chain_feed_forward
from eightbit.nn import QuantEmbedding, QuantLinear


@dataclass(frozen=True)
class Unit:
    """One quantized module: ``name`` (its first name), every name it has, and its kind."""

    name: str
    names: tuple[str, ...]
    kind: str  # "linear" or "embedding"


def quantized_units(int8: nn.Module) -> list[Unit]:
    """Every INT8 unit of ``int8``, in module order."""
    names: dict[tuple[str, int], list[str]] = {}
    for name, module in int8.named_modules(remove_duplicate=False):
        if isinstance(module, (QuantLinear, QuantEmbedding)):
            kind = "linear" if isinstance(module, QuantLinear) else "embedding"
            names.setdefault((kind, id(module.weight)), []).append(name)
    return [Unit(n[0], tuple(n), kind) for (kind, _), n in names.items()]


def modules_at(model: nn.Module, units: Iterable[Unit]) -> dict[str, nn.Module]:
    """``{name: module}`` of ``model`` at every name of ``units``."""
    return {name: model.get_submodule(name) for unit in units for name in unit.names}


def set_modules(model: nn.Module, modules: dict[str, nn.Module]) -> None:
    """Put each module of ``modules`` at its name in ``model``."""
    for name, module in modules.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
    chain_feed_forward(model)


def set_unit(model: nn.Module, unit: Unit, source: nn.Module) -> None:
    """Put ``source``'s modules at every name of ``unit`` in ``model``."""
    set_modules(model, modules_at(source, [unit]))
    chain_feed_forward(source)  # modules now shared with ``model`` were rechained for it


@contextmanager
def swapped(model: nn.Module, units: Iterable[Unit], source: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` runs ``source``'s modules at ``units``; restored afterwards."""
    units = list(units)
    saved = modules_at(model, units)
    try:
        set_modules(model, modules_at(source, units))
        yield model
    finally:
        set_modules(model, saved)
        chain_feed_forward(source)


@contextmanager
def feed_forward_unchained(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every INT8 ``fc1`` has its fp32 epilogue (so its output can be compared
    with the FP32 layer's, before ReLU); chained again afterwards."""
    chain_feed_forward(model, enabled=False)
    try:
        yield model
    finally:
        chain_feed_forward(model)
