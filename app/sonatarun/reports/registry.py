"""Report registry: `module` of a `reports` entry -> builder of a ProbeSpec.

A builder is ``fn(name, cfg, ctx) -> list[ProbeSpec]`` (one per population). The
simulation loop pairs each probe with a compartment-report writer, unless the probe's
kind is in ``WRITERS``: reports with their own file layout name a factory
``fn(spec, probe, comm) -> {drain key: writer}`` there.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from sonatarun.errors import ConfigError

REPORTS: dict[str, str] = {
    "membrane_report": "sonatarun.reports.probes:membrane",
    "multimeter_report": "sonatarun.reports.probes:multimeter",
    "multimeter": "sonatarun.reports.probes:multimeter",
    "netcon_report": "sonatarun.reports.probes:synapse",
    "syn_report": "sonatarun.reports.probes:synapse",
    "weight_recorder": "sonatarun.reports.probes:weight_recorder",
    "extracellular": "sonatarun.reports.ecp:extracellular",
}

WRITERS: dict[str, str] = {
    "extracellular": "sonatarun.reports.ecp:writers",
}


def builder(name: str, cfg: dict[str, Any], *, file: Any = None) -> Callable | None:
    """The builder for a report entry; None when the report is disabled."""
    if cfg.get("enabled", True) is False:
        return None
    module = cfg.get("module")
    if not module:
        raise ConfigError("a report needs 'module'", file=file, key=f"reports.{name}.module",
                          fix=f"use one of: {', '.join(sorted(REPORTS))}")
    target = REPORTS.get(str(module))
    if target is None:
        raise ConfigError(f"unknown report module '{module}'", file=file, key=f"reports.{name}.module",
                          fix=f"use one of: {', '.join(sorted(REPORTS))}")
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)


def writers_for(kind: str) -> Callable | None:
    """The writer factory of a probe kind with its own file layout; None for compartment reports."""
    target = WRITERS.get(kind)
    if target is None:
        return None
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)
