"""Input registry: (input_type, module) -> builder turning one `inputs` entry into stimuli.

A builder is ``fn(name: str, cfg: dict, ctx: BuildContext) -> list[stimulus]`` where a
stimulus is one of the dataclasses in :mod:`sonatarun.engines.base`. Adding an input kind
is adding a module and one line below.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from sonatarun.errors import ConfigError

INPUTS: dict[tuple[str, str], str] = {
    ("spikes", "sonata"): "sonatarun.inputs.spike_trains:build",
    ("spikes", "h5"): "sonatarun.inputs.spike_trains:build",
    ("spikes", "hdf5"): "sonatarun.inputs.spike_trains:build",
    ("spikes", "csv"): "sonatarun.inputs.spike_trains:build",
    ("current_clamp", "IClamp"): "sonatarun.inputs.clamps:current_clamp",
    ("voltage_clamp", "SEClamp"): "sonatarun.inputs.clamps:voltage_clamp",
}


def builder(name: str, cfg: dict[str, Any], *, file: Any = None) -> Callable:
    itype, module = cfg.get("input_type"), cfg.get("module")
    if not itype or not module:
        raise ConfigError("an input needs 'input_type' and 'module'", file=file, key=f"inputs.{name}",
                          fix='e.g. "input_type": "spikes", "module": "sonata"')
    target = INPUTS.get((str(itype), str(module)))
    if target is None:
        known = ", ".join(f"{t}/{m}" for t, m in sorted(INPUTS))
        raise ConfigError(f"unknown input type/module '{itype}/{module}'", file=file, key=f"inputs.{name}.module",
                          fix=f"use one of: {known}")
    mod, fn = target.split(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"input '{itype}/{module}' is not available in this build", file=file,
                          key=f"inputs.{name}.module") from exc
