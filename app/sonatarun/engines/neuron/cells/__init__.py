"""Cell builders of the NEURON engine, one module per SONATA `model_type`.

A new kind of cell is one module with a :class:`CellBuilder` and one line here.
"""
from __future__ import annotations

import importlib

from sonatarun.engines.neuron.cells.base import CellBuilder, NrnCell
from sonatarun.errors import EngineError

# model_type -> "module:Class"
BUILDERS: dict[str, str] = {
    "virtual": "sonatarun.engines.neuron.cells.virtual:VirtualBuilder",
    "point_process": "sonatarun.engines.neuron.cells.point_process:PointProcessBuilder",
    "point_neuron": "sonatarun.engines.neuron.cells.point_process:PointProcessBuilder",
    "biophysical": "sonatarun.engines.neuron.cells.biophysical:BiophysicalBuilder",
}


def builder_for(model_type: str, *, population: str = "") -> CellBuilder:
    target = BUILDERS.get(model_type)
    if target is None:
        raise EngineError(f"model_type '{model_type}' of population '{population}' is not supported by NEURON",
                          key="model_type", fix=f"use one of: {', '.join(sorted(BUILDERS))}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BUILDERS", "builder_for", "CellBuilder", "NrnCell"]
