"""Node-set queries: a name, a dict of attribute filters, or a list of node ids."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.circuit.circuit import Circuit
from sonatarun.errors import ConfigError

Selection = dict[str, np.ndarray]  # population -> sorted node ids


def resolve_node_set(spec: Any, circuit: Circuit, named: dict[str, Any], *, file: Path | None = None,
                     key: str = "node_set", _depth: int = 0) -> Selection:
    """Resolve a node set to sorted node ids per population.

    A string names an entry of `node_sets` or, as BMTK allows, a population.
    A dict filters on any node attribute (`population` and `node_id` included; a list
    value means any of). A list of strings is the union of those sets; a list of ints
    is node ids (in every population that has them).
    """
    if _depth > 32:
        raise ConfigError("node sets refer to each other in a loop", file=file, key=key)
    if isinstance(spec, str):
        if spec in named:
            return resolve_node_set(named[spec], circuit, named, file=file, key=key, _depth=_depth + 1)
        if spec in circuit.nodes:
            return {spec: np.arange(circuit.nodes[spec].size, dtype=np.int64)}
        choices = sorted(set(named) | set(circuit.nodes))
        raise ConfigError(f"unknown node set '{spec}'", file=file, key=key,
                          fix=f"use one of: {', '.join(choices)}" if choices else "define it in node_sets")
    if isinstance(spec, list):
        if all(isinstance(s, str) for s in spec):
            out: Selection = {}
            for s in spec:
                for pop, ids in resolve_node_set(s, circuit, named, file=file, key=key, _depth=_depth + 1).items():
                    out[pop] = np.union1d(out.get(pop, np.zeros(0, np.int64)), ids)
            return out
        if all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
            return resolve_node_set({"node_id": spec}, circuit, named, file=file, key=key, _depth=_depth + 1)
        raise ConfigError("a node set list must hold only names or only node ids", file=file, key=key)
    if isinstance(spec, dict):
        return _filter(spec, circuit, file, key)
    raise ConfigError(f"a node set must be a name, an object of filters or a list, got {spec!r}", file=file, key=key)


def _filter(spec: dict[str, Any], circuit: Circuit, file: Path | None, key: str) -> Selection:
    pops = spec.get("population", list(circuit.nodes))
    pops = [pops] if isinstance(pops, str) else list(pops)
    for p in pops:
        if p not in circuit.nodes:
            raise ConfigError(f"unknown population '{p}' in node set", file=file, key=f"{key}.population",
                              fix=f"use one of: {', '.join(circuit.nodes)}")
    out: Selection = {}
    for p in pops:
        pop = circuit.nodes[p]
        mask = np.ones(pop.size, dtype=bool)
        for attr, wanted in spec.items():
            if attr == "population":
                continue
            values = wanted if isinstance(wanted, list) else [wanted]
            if attr in ("node_id", "node_ids"):
                ids = np.asarray(values, dtype=np.int64)
                m = np.zeros(pop.size, dtype=bool)
                m[ids[(ids >= 0) & (ids < pop.size)]] = True
                mask &= m
                continue
            table = pop.table
            if attr not in table.columns:
                if len(pops) == 1:
                    raise ConfigError(f"population '{p}' has no attribute '{attr}'", file=file, key=f"{key}.{attr}",
                                      fix=f"filter on one of: {', '.join(map(str, table.columns))}")
                mask &= False
                continue
            mask &= table[attr].isin(values).to_numpy()
        ids = np.nonzero(mask)[0].astype(np.int64)
        if len(ids):
            out[p] = ids
    return out
