"""Config -> ProbeSpec for membrane, multimeter and synapse reports."""
from __future__ import annotations

from typing import Any

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
