"""Spike-train inputs (`input_type: spikes`, module sonata/h5/csv) into virtual nodes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.engines.base import SpikeTrains
from sonatarun.errors import ConfigError, InputError
from sonatarun.io.spike_files import read_spike_file


def build(name: str, cfg: dict[str, Any], ctx) -> list[SpikeTrains]:
    file = ctx.config.source_of("inputs")
    key = f"inputs.{name}"
    if "input_file" not in cfg:
        raise ConfigError("spike input needs 'input_file'", file=file, key=f"{key}.input_file")
    path = ctx.resolve_path(cfg["input_file"], "inputs", f"{key}.input_file")
    table = read_spike_file(path, str(cfg.get("module")), key=f"{key}.input_file")
    selection = ctx.node_set(cfg.get("node_set"), key=f"{key}.node_set")
    out = []
    for pop, wanted in selection.items():
        if pop in table:
            ids, times = table[pop]
        elif len(table) == 1 and len(selection) == 1:
            ids, times = next(iter(table.values()))  # unnamed/other-named population: BMTK takes it
        else:
            continue
        size = ctx.circuit.nodes[pop].size
        bad = (ids < 0) | (ids >= size)
        if bad.any():
            raise InputError(f"node id {int(ids[bad][0])} is out of range for population '{pop}' "
                             f"({size} nodes)", file=Path(path), key=f"{key}.input_file",
                             fix=f"node ids must be 0..{size - 1}")
        keep = np.isin(ids, wanted)
        ids, times = ids[keep], times[keep]
        gids = ctx.circuit.gids(pop, ids)
        mine = ctx.owned(gids)
        gids, times = gids[mine], times[mine]
        order = np.lexsort((times, gids))
        gids, times = gids[order], times[order]
        uniq, starts = np.unique(gids, return_index=True)
        trains = np.split(times, starts[1:]) if len(uniq) else []
        out.append(SpikeTrains(name=name, gids=uniq, times=list(trains)))
    return out
