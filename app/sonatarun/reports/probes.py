"""Config -> ProbeSpec for membrane, multimeter and synapse reports."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.engines.base import ProbeSpec
from sonatarun.errors import ConfigError


def _common(name: str, cfg: dict[str, Any], ctx, kind: str, default_sections: Any) -> list[ProbeSpec]:
    file = ctx.config.source_of("reports")
    key = f"reports.{name}"
    variables = cfg.get("variable_name", cfg.get("variable_names", cfg.get("variables")))
    if variables is None:
        raise ConfigError("report needs 'variable_name'", file=file, key=f"{key}.variable_name",
                          fix='e.g. "variable_name": "v"')
    variables = [variables] if isinstance(variables, str) else list(variables)
    cells = cfg.get("cells", cfg.get("node_set", "all"))
    selection = ctx.node_set(cells, key=f"{key}.cells") if cells != "all" else ctx.all_nodes(non_virtual=True)
    specs = []
    for pop, ids in selection.items():
        gids = ctx.circuit.gids(pop, ids)
        mine = ctx.owned(gids)
        specs.append(ProbeSpec(name=name, kind=kind, variables=variables, population=pop, node_ids=ids[mine],
                               gids=gids[mine], sections=cfg.get("sections", default_sections),
                               dt=cfg.get("dt"), start_time=cfg.get("start_time"), end_time=cfg.get("end_time"),
                               options={k: v for k, v in cfg.items() if k not in {
                                   "module", "variable_name", "cells", "node_set", "sections", "dt",
                                   "start_time", "end_time", "enabled"}}))
    return specs


def membrane(name: str, cfg: dict[str, Any], ctx) -> list[ProbeSpec]:
    return _common(name, cfg, ctx, "membrane", "soma")


def multimeter(name: str, cfg: dict[str, Any], ctx) -> list[ProbeSpec]:
    return _common(name, cfg, ctx, "multimeter", "soma")


def synapse(name: str, cfg: dict[str, Any], ctx) -> list[ProbeSpec]:
    return _common(name, cfg, ctx, "synapse", "all")


def weight_recorder(name: str, cfg: dict[str, Any], ctx) -> list[ProbeSpec]:
    """BMTK PointNet's weight_recorder: synapse weights over time to a CSV the engine appends to.

    No compartment writer is paired with it (no variables): the engine writes the CSV rows
    itself at each block end.
    """
    fname = Path(cfg.get("file_name") or f"{name}.csv")
    path = fname if fname.is_absolute() else (ctx.output_dir or ctx.config.output.output_dir) / fname
    pops = [[p, int(ctx.circuit.offsets[p]), pop.size] for p, pop in ctx.circuit.nodes.items()]
    return [ProbeSpec(name=name, kind="weight_recorder", variables=[], population="",
                      node_ids=np.zeros(0, np.int64), gids=np.zeros(0, np.int64),
                      options={"nest_model": cfg.get("nest_model"), "model_template": cfg.get("model_template"),
                               "file": str(path), "populations": pops})]
