"""Method name -> observer factory. A new calibration method is one handler registered here
(see :mod:`eightbit.calibration.methods`), not a new ``elif``."""

from __future__ import annotations

from collections.abc import Callable

from eightbit.calibration.base import Observer
from eightbit.calibration.config import CALIBRATION_METHODS, ObserverConfig, ObserverError

ObserverFactory = Callable[[ObserverConfig], Observer]

_FACTORIES: dict[str, ObserverFactory] = {}


def register(method: str) -> Callable[[ObserverFactory], ObserverFactory]:
    """Decorator: make ``factory(config)`` the observer of calibration method ``method``."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"{method!r} is not in CALIBRATION_METHODS; add it there first")

    def decorate(factory: ObserverFactory) -> ObserverFactory:
        if method in _FACTORIES:
            raise ValueError(f"calibration method {method!r} is registered twice")
        _FACTORIES[method] = factory
        return factory

    return decorate


def registered_methods() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def make_observer(config: ObserverConfig | None = None) -> Observer:
    """A fresh observer for ``config.method`` (default: ``ObserverConfig()``, min/max)."""
    config = config or ObserverConfig()
    factory = _FACTORIES.get(config.method)
    if factory is None:
        raise ObserverError(f"calibration method {config.method!r} has no registered observer")
    return factory(config)
