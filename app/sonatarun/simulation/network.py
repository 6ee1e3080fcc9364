"""Config + circuit -> the rank-local plan an engine builds (cell and connection batches)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.circuit import Circuit
from sonatarun.config import SimulationConfig
from sonatarun.circuit.ids import small_unique
from sonatarun.engines.base import CellBatch, ConnectionBatch, EdgeChunk
from sonatarun.errors import CircuitError, ConfigError
from sonatarun.util.values import as_scalar, is_missing

# BMTK: which components dir holds a node's dynamics_params, by model_type
_PARAM_DIRS = {
    "biophysical": "biophysical_neuron_models_dir",
    "point_process": "point_neuron_models_dir",
    "point_neuron": "point_neuron_models_dir",
    "virtual": "point_neuron_models_dir",
}
_SECTION_COLUMNS = ("afferent_section_id", "sec_id")


class ParamFiles:
    """dynamics_params JSON files, each read once per run."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self._cache: dict[Path, dict[str, Any]] = {}

    def load(self, value: Any, component: str, *, where: str) -> dict[str, Any]:
        if is_missing(value) or value == "":
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
        t = pop.types.columns.get("model_template")
        if t is not None and any(str(v).startswith("nest:") for v in t.tolist()):
            return "nest"
    return "neuron"


def _node_groups(pop, cols: dict[str, np.ndarray], keys: list[str], rows: np.ndarray) -> list[np.ndarray]:
    """Positions (into `rows`) of each distinct combination of the `keys` columns, groups in order of
    first appearance (as pandas' groupby(sort=False) gives them). A column from the types CSV is a
    function of node_type_id, so only columns the h5 groups set are factorised per node."""
    code = cols["node_type_id"][rows]
    for k in keys:
        if k == "node_type_id" or k not in pop.h5_columns:
            continue
        values = cols[k][rows]
        _, inv = np.unique(values.astype(str), return_inverse=True)
        _, code = np.unique(np.stack([code, inv.astype(np.int64)], axis=1), axis=0, return_inverse=True)
        code = code.reshape(-1)
    _, first, inv = np.unique(code, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if len(first) == 1:
        return [np.arange(len(rows))]
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    grp = rank[inv]
    order = np.argsort(grp, kind="stable")
    return np.split(order, np.cumsum(np.bincount(grp, minlength=len(first)))[:-1])


def cell_batches(config: SimulationConfig, circuit: Circuit, owned, params: ParamFiles) -> list[CellBatch]:
    batches: list[CellBatch] = []
    for name, pop in circuit.nodes.items():
        cols = pop.columns
        if "model_type" not in cols:
            raise CircuitError(f"population '{name}' has no model_type", file=pop.types_path, key="model_type",
                               fix="add a model_type column (virtual, point_process, biophysical, ...)")
        rows = np.flatnonzero(owned(circuit.gids(name, cols["node_id"])))
        if not len(rows):
            continue
        keys = ["node_type_id", "model_type"] + [c for c in ("model_template", "dynamics_params",
                                                           "model_processing") if c in cols]
        for part in _node_groups(pop, cols, keys, rows):
            sel = rows[part]
            first = {c: as_scalar(cols[c][sel[0]]) for c in keys}
            model_type = str(first["model_type"])
            template = first.get("model_template")
            template = None if template is None else str(template)
            dyn = params.load(first.get("dynamics_params"), _PARAM_DIRS.get(model_type, "point_neuron_models_dir"),
                              where=f"population {name}, node type {int(first['node_type_id'])}")
            node_ids = cols["node_id"][sel]
            proc = first.get("model_processing")
            batches.append(CellBatch(
                population=name, node_type_id=int(first["node_type_id"]), model_type=model_type,
                model_template=template, node_ids=node_ids, gids=circuit.gids(name, node_ids),
                attributes={c: v[sel] for c, v in cols.items()}, dynamics=dyn,
                node_dynamics=pop.node_dynamics(node_ids) if model_type != "virtual" else {},
                model_processing=None if proc is None else str(proc),
                morphology_dir=config.components.get("morphologies_dir"),
            ))
    return batches


def _column(group: dict[str, np.ndarray], type_row: dict[str, Any], key: str, n: int) -> np.ndarray | None:
    """Per-edge values: the h5 group column where set, else the edge type's CSV value, else None."""
    h5 = group.get(key)
    csv = type_row.get(key)
    if h5 is None:
        return None if is_missing(csv) else np.full(n, csv)
    if not is_missing(csv) and h5.dtype.kind == "f":
        h5 = np.where(np.isnan(h5), csv, h5)
    return h5


# Edges per chunk for engines that stream them (the largest chunk; the first is an eighth;
# populations of at most twice this stay whole): big enough that a chunk's few dozen Python
# steps are nothing beside its numpy work, small enough that the first read before anything
# overlaps stays short.
EDGE_CHUNK = 2_000_000


def edge_chunk_size() -> int:
    """EDGE_CHUNK, or ``SONATARUN_EDGE_CHUNK`` (tests cut small networks into several chunks)."""
    import os

    env = os.environ.get("SONATARUN_EDGE_CHUNK", "")
    return max(8, int(env)) if env.isdigit() else EDGE_CHUNK


def connection_batches(config: SimulationConfig, circuit: Circuit, owned, params: ParamFiles,
                       weight_fn=None, *, chunk_edges: int | None = None) -> list[ConnectionBatch | EdgeChunk]:
    """One batch per (edge population, edge type, edge group) with the edges this rank's cells receive.

    BMTK decides synapse rules per edge group (which columns the group has), so a batch never
    mixes groups. Splitting is one stable lexsort per population; no DataFrame is built unless
    a weight function needs one.

    ``chunk_edges`` (engines that stream edges): a population of more than twice that many
    edges that can be cut into chunks (:func:`_chunks`) becomes EdgeChunks of growing size up to
    that many edges, read when the engine loads them; only their targets and types are read
    here, for the same checks. Smaller populations stay whole: NEST connects their edges
    faster than one thread reads and prepares them, and the streamed build was slower there
    (bench_pointnet, 1 thread: 3M edges 1.2 s whole against 1.5-1.9 s streamed; 1M edges
    0.6 against 0.8-0.9 s; 10M edges 5.4 s against 3.8-4.1 s).
    """
    batches: list[ConnectionBatch | EdgeChunk] = []
    joins = Counter((e.source_population, e.target_population) for e in circuit.edges)
    for epop in circuit.edges:
        tgt_pop = circuit.nodes[epop.target_population]
        tgt_ids = np.arange(tgt_pop.size, dtype=np.int64)
        mine = tgt_ids[owned(circuit.gids(epop.target_population, tgt_ids))]
        every = len(mine) == tgt_pop.size
        ids = np.arange(epop.size, dtype=np.int64) if every else epop.edge_ids_for_targets(mine)
        if len(ids) == 0:
            continue
        known = None
        if chunk_edges and len(ids) > 2 * chunk_edges and joins[(epop.source_population, epop.target_population)] == 1 \
                and _streamable(epop):
            target, etype = epop.read_targets_and_types(ids, every_edge=every)
            chunks = _chunks(epop, ids, target, etype, chunk_edges, circuit, params, weight_fn)
            if chunks is not None:
                batches.extend(chunks)
                continue
            known = {"target_node_id": target, "edge_type_id": etype}  # not read twice
        batches.extend(_population_batches(epop, ids, every, circuit, params, weight_fn, known))
    return batches


def _population_batches(epop, ids: np.ndarray, every: bool, circuit: Circuit, params: ParamFiles,
                        weight_fn, known: dict[str, np.ndarray] | None = None) -> list[ConnectionBatch]:
    """The batches of the edges `ids` (sorted; ``every``: all of the population's) of one population;
    ``known``: core columns of these edges already read."""
    edges = epop.read_columns(ids, every_edge=every, known=known)
    parts = split_by_type_and_group(edges.edge_type, edges.group_id)
    _check_types(epop, {t for t, _, _ in parts})
    src_size = circuit.nodes[epop.source_population].size
    tgt_size = circuit.nodes[epop.target_population].size
    if edges.source.max() >= src_size or edges.target.max() >= tgt_size or \
            edges.source.min() < 0 or edges.target.min() < 0:
        _beyond(epop)
    out = []
    for type_id, group_id, part in parts:
        own = epop.group_columns.get(group_id, set())
        group = {c: (v if part is None else v[part]) for c, v in edges.columns.items() if c in own}
        out.append(_batch(epop, type_id, group, part, edges, every, circuit, params, weight_fn))
    return out


def _check_types(epop, present: set[int]) -> None:
    unknown = {t for t in present if t not in epop.types}
    if unknown:
        raise CircuitError(f"edge population '{epop.name}' uses edge_type_id {sorted(unknown)[0]} that the "
                           f"types table does not define", file=epop.types_path, key="edge_type_id")


def _beyond(epop) -> None:
    raise CircuitError(f"edge population '{epop.name}' refers to node ids beyond the populations' sizes",
                       file=epop.h5_path, key=f"/edges/{epop.name}/source_node_id")


def _streamable(epop) -> bool:
    """Synapse models from the edge types CSV (a per-edge h5 model_template is decided by a
    batch's first edge) and no weight function (a vectorised one sees its whole batch)."""
    if {"model_template", "weight_function"} & set().union(set(), *epop.group_columns.values()):
        return False
    wfn = epop.types.columns.get("weight_function")
    return wfn is None or all(is_missing(v) for v in wfn.tolist())


def _chunks(epop, ids: np.ndarray, target: np.ndarray, etype: np.ndarray, chunk_edges: int, circuit: Circuit,
            params: ParamFiles, weight_fn) -> list[EdgeChunk] | None:
    """The population (`ids`, with their targets and edge types) as EdgeChunks, or None where it
    stays whole: more than one chunk needs targets in ascending order (the file sorted by
    target, as SONATA writers sort it: chunks cut where the target changes hold disjoint
    targets). Chunks grow from chunk_edges / 8 to chunk_edges, so the first one, read before
    anything else can run beside it, is small."""
    if len(target) > 1 and (target[1:] < target[:-1]).any():
        return None
    present = small_unique(etype).tolist()
    _check_types(epop, set(present))  # checked here as the whole read checks it, before any write
    if target[0] < 0 or target[-1] >= circuit.nodes[epop.target_population].size:
        _beyond(epop)
    cuts, size = [0], max(1, chunk_edges // 8)
    while cuts[-1] < len(ids):
        p = cuts[-1] + size
        if p >= len(ids):
            cuts.append(len(ids))
            break
        q = int(np.searchsorted(target, target[p], side="left"))
        cuts.append(q if q > cuts[-1] else int(np.searchsorted(target, target[p], side="right")))
        size = min(2 * size, chunk_edges)
    if len(cuts) < 3:
        return None
    heads = [_head(epop, t, params) for t in present]

    def loader(a: int, b: int):
        known = {"target_node_id": target[a:b], "edge_type_id": etype[a:b]}  # not read twice
        return lambda: _population_batches(epop, ids[a:b], False, circuit, params, weight_fn, known)

    def whole() -> list[ConnectionBatch]:
        return _population_batches(epop, ids, False, circuit, params, weight_fn,
                                   {"target_node_id": target, "edge_type_id": etype})

    return [EdgeChunk(epop.name, epop.source_population, epop.target_population, b - a, heads, loader(a, b), whole)
            for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _head(epop, type_id: int, params: ParamFiles) -> ConnectionBatch:
    """An edge-less batch with one edge type's type-level fields (EdgeChunk.heads)."""
    row = epop.types.row(type_id)
    template = row.get("model_template")
    no_i, no_f = np.zeros(0, np.int64), np.zeros(0)
    return ConnectionBatch(
        edge_population=epop.name, source_population=epop.source_population,
        target_population=epop.target_population, edge_type_id=int(type_id),
        model_template=None if is_missing(template) else str(template),
        dynamics=params.load(row.get("dynamics_params"), "synaptic_models_dir",
                             where=f"edge population {epop.name}, edge type {type_id}"),
        source_gids=no_i, target_gids=no_i, source_node_ids=no_i, target_node_ids=no_i, weights=no_f,
        delays=no_f, nsyns=no_i, type_attrs={k: (None if is_missing(v) else v) for k, v in row.items()})


def split_by_type_and_group(edge_type: np.ndarray, group_id: np.ndarray) -> list[tuple[int, int, np.ndarray | None]]:
    """(edge type, edge group, positions) for each pair present, in (type, group) order, positions
    in file order; positions None means every edge. The same split as a stable
    ``np.lexsort((group_id, edge_type))`` cut at key changes, without sorting two int64 keys
    of millions of edges: pairs get dense small codes from one bincount, then a few pairs take
    one comparison pass each and many pairs one stable (radix) sort of the codes; one pair
    (the common case) needs no positions at all.
    """
    n = len(edge_type)
    if n == 0:
        return []
    t_lo, t_hi = int(edge_type.min()), int(edge_type.max())
    g_lo, g_hi = int(group_id.min()), int(group_id.max())
    if t_lo == t_hi and g_lo == g_hi:
        return [(t_lo, g_lo, None)]
    span_g = g_hi - g_lo + 1
    if span_g == 1 and t_hi - t_lo < 8:
        # one group, a few type ids (the usual file): one comparison pass per id on the ids as
        # read, no key, count or lookup arrays of millions of entries
        out = []
        for t in range(t_lo, t_hi + 1):
            mask = edge_type == t
            if mask.any():
                out.append((t, g_lo, np.flatnonzero(mask)))
        return out
    n_keys = (t_hi - t_lo + 1) * span_g
    if n_keys > max(1 << 16, n):  # sparse ids: sort the keys themselves
        order = np.lexsort((group_id, edge_type))
        keys = np.stack([edge_type[order], group_id[order]])
        cuts = np.flatnonzero(np.any(np.diff(keys, axis=1) != 0, axis=0)) + 1
        return [(int(edge_type[p[0]]), int(group_id[p[0]]), p) for p in np.split(order, cuts)]
    key = edge_type - t_lo if t_lo else edge_type
    if span_g > 1:
        key = key * span_g + (group_id - g_lo)
    counts = np.bincount(key, minlength=n_keys)
    present = np.flatnonzero(counts)
    pairs = [(int(k // span_g) + t_lo, int(k % span_g) + g_lo) for k in present.tolist()]
    if len(present) == 1:
        return [(*pairs[0], None)]
    lut = np.zeros(n_keys, dtype=np.uint16 if len(present) > 255 else np.uint8)
    lut[present] = np.arange(len(present))
    code = lut[key]
    if len(present) <= 8:
        return [(t, g, np.flatnonzero(code == i)) for i, (t, g) in enumerate(pairs)]
    order = np.argsort(code if len(present) <= 1 << 16 else key, kind="stable")
    bounds = np.cumsum(counts[present])[:-1]
    return [(t, g, p) for (t, g), p in zip(pairs, np.split(order, bounds))]


def _batch(epop, type_id: int, group: dict[str, np.ndarray], part: np.ndarray | None, edges, every: bool,
           circuit: Circuit, params: ParamFiles, weight_fn) -> ConnectionBatch:
    """One ConnectionBatch; `part` selects the edges of `edges` (None: all of them, without copies)."""
    n = len(edges) if part is None else len(part)

    def pick(values: np.ndarray) -> np.ndarray:
        return values if part is None else values[part]

    src_nodes, tgt_nodes = pick(edges.source), pick(edges.target)
    # every edge of the population read: edge ids are 0..size-1, so the positions are the ids
    edge_ids = edges.edge_ids if part is None else (part if every else edges.edge_ids[part])
    row = epop.types.row(type_id)
    where = f"edge population {epop.name}, edge type {type_id}"
    weights = _column(group, row, "syn_weight", n)
    wfn = group.get("weight_function", row.get("weight_function"))
    wfn = None if is_missing(wfn) else wfn
    if weights is None and wfn is None:
        raise CircuitError(f"{where} has no syn_weight", file=epop.types_path, key="syn_weight",
                           fix="add syn_weight to the edge types CSV or the edges file")
    delays = _column(group, row, "delay", n)
    if delays is None:
        raise CircuitError(f"{where} has no delay", file=epop.types_path, key="delay",
                           fix="add delay (ms) to the edge types CSV or the edges file")
    nsyns = _column(group, row, "nsyns", n)
    type_attrs = {k: (None if is_missing(v) else v) for k, v in row.items()}
    template = _first(group, row, "model_template") if n else None
    w = np.zeros(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if wfn is not None and weight_fn is not None:
        def frame():
            import pandas as pd  # the argument of user weight functions; built-ins need no DataFrame

            return pd.DataFrame({"edge_id": edge_ids, "source_node_id": src_nodes, "target_node_id": tgt_nodes,
                                 "edge_type_id": pick(edges.edge_type).astype(np.int64), **group})

        w = weight_fn(wfn, frame, row, epop, w)
    group_cols = set(group) | {c for c, v in row.items() if not is_missing(v)}
    return ConnectionBatch(
        edge_population=epop.name, source_population=epop.source_population,
        target_population=epop.target_population, edge_type_id=type_id,
        model_template=None if template is None else str(template),
        dynamics=params.load(type_attrs.get("dynamics_params"), "synaptic_models_dir", where=where),
        source_gids=_gids(circuit, epop.source_population, src_nodes),
        target_gids=_gids(circuit, epop.target_population, tgt_nodes), source_node_ids=src_nodes,
        target_node_ids=tgt_nodes, weights=w, delays=np.asarray(delays, dtype=np.float64),
        # integer nsyns stay in the file's type (often uint16: no 8-byte copy of millions of edges)
        nsyns=np.ones(n, np.int64) if nsyns is None else (nsyns if nsyns.dtype.kind in "iu" else
                                                          nsyns.astype(np.int64)),
        columns={c: v for c, v in group.items() if c not in ("syn_weight", "delay", "nsyns")},
        type_attrs=type_attrs, edge_ids=edge_ids,
        preselected=any(c in group_cols for c in _SECTION_COLUMNS) or nsyns is None,
    )


def _gids(circuit: Circuit, population: str, node_ids: np.ndarray) -> np.ndarray:
    """circuit.gids without a copy for the first population (offset 0): gids are the node ids.
    (The batch arrays are read-only for engines, so sharing is safe.)"""
    if circuit.offsets[population] == 0 and node_ids.dtype == np.int64:
        return node_ids
    return circuit.gids(population, node_ids)


def _first(group: dict[str, np.ndarray], type_row: dict[str, Any], key: str) -> Any:
    """The first edge's value of `key` (h5 column where set, else the type's), None if neither:
    what ``_column(...)[0]`` gives, without a per-edge array of the type's value."""
    h5 = group.get(key)
    csv = type_row.get(key)
    if h5 is None:
        return None if is_missing(csv) else csv
    first = h5[0]
    if not is_missing(csv) and h5.dtype.kind == "f" and np.isnan(first):
        return csv
    return first
