"""Config + circuit -> the rank-local plan an engine builds (cell and connection batches)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonatarun.circuit import Circuit
from sonatarun.config import SimulationConfig
from sonatarun.engines.base import CellBatch, ConnectionBatch
from sonatarun.errors import CircuitError, ConfigError

# BMTK: which components dir holds a node's dynamics_params, by model_type
_PARAM_DIRS = {
    "biophysical": "biophysical_neuron_models_dir",
    "point_process": "point_neuron_models_dir",
    "point_neuron": "point_neuron_models_dir",
    "virtual": "point_neuron_models_dir",
}
_SECTION_COLUMNS = ("afferent_section_id", "sec_id")


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


class ParamFiles:
    """dynamics_params JSON files, each read once per run."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self._cache: dict[Path, dict[str, Any]] = {}

    def load(self, value: Any, component: str, *, where: str) -> dict[str, Any]:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            return {}
        if isinstance(value, dict):
            return value
        name = str(value)
        base = self.config.components.get(component)
        path = Path(name) if Path(name).is_absolute() else (base / name if base else Path(name))
        if path not in self._cache:
            if not path.exists():
                if not name.endswith(".json"):
                    return {"_file": str(path)}  # e.g. a .nml or .hoc the engine interprets
                raise ConfigError(f"dynamics_params file '{name}' ({where}) not found in {component}",
                                  file=self.config.source_of("components"), key=f"components.{component}",
                                  fix=f"put {name} in {base}" if base else f"set components.{component}")
            try:
                self._cache[path] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                                  file=path) from exc
        return self._cache[path]


def choose_engine(config: SimulationConfig, circuit: Circuit) -> str:
    if config.target_simulator:
        return config.target_simulator.lower()
    for pop in circuit.nodes.values():
        t = pop.types.get("model_template")
        if t is not None and t.astype(str).str.startswith("nest:").any():
            return "nest"
    return "neuron"


def cell_batches(config: SimulationConfig, circuit: Circuit, owned, params: ParamFiles) -> list[CellBatch]:
    batches: list[CellBatch] = []
    for name, pop in circuit.nodes.items():
        table = pop.table
        if "model_type" not in table.columns:
            raise CircuitError(f"population '{name}' has no model_type", file=pop.types_path, key="model_type",
                               fix="add a model_type column (virtual, point_process, biophysical, ...)")
        gids = circuit.gids(name, table["node_id"].to_numpy())
        local = table[owned(gids)]
        if local.empty:
            continue
        keys = ["node_type_id", "model_type"] + [c for c in ("model_template", "dynamics_params",
                                                           "model_processing") if c in local.columns]
        grouped = local.groupby([local[k].astype(str) for k in keys], sort=False, dropna=False)
        for _, frame in grouped:
            first = frame.iloc[0]
            model_type = str(first["model_type"])
            template = first.get("model_template")
            template = None if template is None or (isinstance(template, float) and np.isnan(template)) else str(template)
            dyn = params.load(first.get("dynamics_params"), _PARAM_DIRS.get(model_type, "point_neuron_models_dir"),
                              where=f"population {name}, node type {int(first['node_type_id'])}")
            node_ids = frame["node_id"].to_numpy(np.int64)
            proc = first.get("model_processing")
            batches.append(CellBatch(
                population=name, node_type_id=int(first["node_type_id"]), model_type=model_type,
                model_template=template, node_ids=node_ids, gids=circuit.gids(name, node_ids),
                attributes=frame.reset_index(drop=True), dynamics=dyn,
                node_dynamics=pop.node_dynamics(node_ids) if model_type != "virtual" else {},
                model_processing=None if proc is None or (isinstance(proc, float) and np.isnan(proc)) else str(proc),
                morphology_dir=config.components.get("morphologies_dir"),
            ))
    return batches


def _column(group: dict[str, np.ndarray], type_row: pd.Series, key: str, n: int) -> np.ndarray | None:
    """Per-edge values: the h5 group column where set, else the edge type's CSV value, else None."""
    h5 = group.get(key)
    csv = type_row.get(key) if key in type_row.index else None
    if h5 is None:
        return None if _is_null(csv) else np.full(n, csv)
    if not _is_null(csv) and h5.dtype.kind == "f":
        h5 = np.where(np.isnan(h5), csv, h5)
    return h5


def connection_batches(config: SimulationConfig, circuit: Circuit, owned, params: ParamFiles,
                       weight_fn=None) -> list[ConnectionBatch]:
    """One batch per (edge population, edge type, edge group) with the edges this rank's cells receive.

    BMTK decides synapse rules per edge group (which columns the group has), so a batch never
    mixes groups. Splitting is one stable lexsort per population; no DataFrame is built unless
    a weight function needs one.
    """
    batches: list[ConnectionBatch] = []
    for epop in circuit.edges:
        tgt_pop = circuit.nodes[epop.target_population]
        tgt_ids = np.arange(tgt_pop.size, dtype=np.int64)
        mine = tgt_ids[owned(circuit.gids(epop.target_population, tgt_ids))]
        every = len(mine) == tgt_pop.size
        ids = np.arange(epop.size, dtype=np.int64) if every else epop.edge_ids_for_targets(mine)
        if len(ids) == 0:
            continue
        edges = epop.read_columns(ids, every_edge=every)
        unknown = set(np.unique(edges.edge_type).tolist()) - set(epop.types.index)
        if unknown:
            raise CircuitError(f"edge population '{epop.name}' uses edge_type_id {sorted(unknown)[0]} that the "
                               f"types table does not define", file=epop.types_path, key="edge_type_id")
        src_size = circuit.nodes[epop.source_population].size
        if edges.source.max() >= src_size or edges.target.max() >= tgt_pop.size:
            raise CircuitError(f"edge population '{epop.name}' refers to node ids beyond the populations' sizes",
                               file=epop.h5_path, key=f"/edges/{epop.name}/source_node_id")
        src_gids = circuit.gids(epop.source_population, edges.source)
        tgt_gids = circuit.gids(epop.target_population, edges.target)
        order = np.lexsort((edges.group_id, edges.edge_type))
        keys = np.stack([edges.edge_type[order], edges.group_id[order]])
        cuts = np.flatnonzero(np.any(np.diff(keys, axis=1) != 0, axis=0)) + 1
        for part in np.split(order, cuts):
            type_id, group_id = int(edges.edge_type[part[0]]), int(edges.group_id[part[0]])
            own = epop.group_columns.get(group_id, set())
            group = {c: v[part] for c, v in edges.columns.items() if c in own}
            batches.append(_batch(epop, type_id, group, part, edges, src_gids, tgt_gids, params, weight_fn))
    return batches


def _batch(epop, type_id: int, group: dict[str, np.ndarray], part: np.ndarray, edges, src_gids: np.ndarray,
           tgt_gids: np.ndarray, params: ParamFiles, weight_fn) -> ConnectionBatch:
    n = len(part)
    row = epop.types.loc[type_id]
    where = f"edge population {epop.name}, edge type {type_id}"
    weights = _column(group, row, "syn_weight", n)
    wfn = _column(group, row, "weight_function", n)
    if weights is None and wfn is None:
        raise CircuitError(f"{where} has no syn_weight", file=epop.types_path, key="syn_weight",
                           fix="add syn_weight to the edge types CSV or the edges file")
    delays = _column(group, row, "delay", n)
    if delays is None:
        raise CircuitError(f"{where} has no delay", file=epop.types_path, key="delay",
                           fix="add delay (ms) to the edge types CSV or the edges file")
    nsyns = _column(group, row, "nsyns", n)
    type_attrs = {k: (None if _is_null(v) else v) for k, v in row.items()}
    template = _column(group, row, "model_template", n)
    w = np.zeros(n) if weights is None else weights.astype(np.float64)
    if wfn is not None and weight_fn is not None:
        frame = pd.DataFrame({"edge_id": edges.edge_ids[part], "source_node_id": edges.source[part],
                              "target_node_id": edges.target[part], "edge_type_id": edges.edge_type[part],
                              **group})
        w = weight_fn(wfn, frame, row, epop, w)
    group_cols = set(group) | {c for c in row.index if not _is_null(row[c])}
    return ConnectionBatch(
        edge_population=epop.name, source_population=epop.source_population,
        target_population=epop.target_population, edge_type_id=type_id,
        model_template=None if template is None else str(template[0]),
        dynamics=params.load(type_attrs.get("dynamics_params"), "synaptic_models_dir", where=where),
        source_gids=src_gids[part], target_gids=tgt_gids[part], source_node_ids=edges.source[part],
        target_node_ids=edges.target[part], weights=w, delays=delays.astype(np.float64),
        nsyns=np.ones(n, np.int64) if nsyns is None else nsyns.astype(np.int64),
        columns={c: v for c, v in group.items() if c not in ("syn_weight", "delay", "nsyns")},
        type_attrs=type_attrs, edge_ids=edges.edge_ids[part],
        preselected=any(c in group_cols for c in _SECTION_COLUMNS) or nsyns is None,
    )
