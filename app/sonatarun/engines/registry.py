"""Engine registry: an engine is a module that calls :func:`register` on import."""
from __future__ import annotations

import importlib

from sonatarun.errors import ConfigError

_ENGINES: dict[str, str] = {
    "neuron": "sonatarun.engines.neuron.engine",
    "nest": "sonatarun.engines.nest.engine",
}
_CLASSES: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        _CLASSES[name] = cls
        return cls

    return deco


def names() -> list[str]:
    return sorted(_ENGINES)


def get(name: str) -> type:
    key = name.lower()
    if key not in _ENGINES:
        raise ConfigError(f"unknown simulator '{name}'", key="target_simulator",
                          fix=f"use one of: {', '.join(n.upper() for n in names())}")
    if key not in _CLASSES:
        importlib.import_module(_ENGINES[key])
    return _CLASSES[key]
