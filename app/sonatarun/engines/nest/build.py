"""Turn the rank-local plan into NEST nodes and connections, in bulk.

One ``nest.Create`` per node type, one ``nest.Connect`` (array form, ``one_to_one``)
per edge type: no Python per cell or per edge. The creation order follows BMTK's
PointNet (populations in order, node types in order of first appearance, spike
generators after the recurrent connections) so NEST assigns the same relative node
ids and delivers spikes in the same order, which keeps spike times bit-identical.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonatarun.engines.base import CellBatch, ConnectionBatch, CurrentClamp, SpikeTrains
from sonatarun.engines.nest.locality import Edges
from sonatarun.engines.nest.models import VIRTUAL_MODEL_TYPES, resolve_model, split_template
from sonatarun.errors import EngineError, InputError

# BMTK PointNet's built-in weight functions multiply syn_weight by nsyns themselves; a
# user weight function's result is taken as the final weight (bmtk pointnet
# default_setters/synaptic_weights.py and sonata_adaptors.PointEdgeAdaptor.get_batches).
NSYNS_WEIGHT_FUNCTIONS = frozenset({"default_weight_fnc", "set_syn_weight", "wmax"})


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == "" or \
        str(value).lower() in ("none", "null", "nan")


def order_cell_batches(batches: list[CellBatch]) -> list[CellBatch]:
    """Populations in the order given; inside one, node types by first node id (BMTK's Counter order)."""
    pop_rank: dict[str, int] = {}
    for b in batches:
        pop_rank.setdefault(b.population, len(pop_rank))
    return sorted(batches, key=lambda b: (pop_rank[b.population],
                                          int(np.min(b.node_ids)) if len(b) else 0))


@dataclass
class GidMap:
    """gid <-> NEST node id, as dense lookup arrays (gids are population offset + node id)."""

    gid_to_nest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    nest_to_gid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, gids: np.ndarray, nest_ids: np.ndarray) -> None:
        gids = np.asarray(gids, dtype=np.int64)
        nest_ids = np.asarray(nest_ids, dtype=np.int64)
        if len(gids) == 0:
            return
        self.gid_to_nest = _grow(self.gid_to_nest, int(gids.max()) + 1)
        self.nest_to_gid = _grow(self.nest_to_gid, int(nest_ids.max()) + 1)
        if np.any(self.gid_to_nest[gids] >= 0):
            dup = gids[self.gid_to_nest[gids] >= 0][0]
            raise EngineError(f"gid {dup} was built twice", fix="report this as a sonatarun bug")
        self.gid_to_nest[gids] = nest_ids
        self.nest_to_gid[nest_ids] = gids

    def nest_ids(self, gids: np.ndarray, *, what: str) -> np.ndarray:
        gids = np.asarray(gids, dtype=np.int64)
        bad = (gids >= len(self.gid_to_nest))
        if not bad.any():
            out = self.gid_to_nest[gids]
            bad = out < 0
            if not bad.any():
                return out
        raise EngineError(f"{what}: gid {int(gids[bad][0])} has no NEST node", key=what,
                          fix="check that the node population is listed under networks.nodes")

    def gids(self, nest_ids: np.ndarray) -> np.ndarray:
        return self.nest_to_gid[np.asarray(nest_ids, dtype=np.int64)]


def _grow(arr: np.ndarray, size: int) -> np.ndarray:
    if len(arr) >= size:
        return arr
    out = np.full(size, -1, dtype=np.int64)
    out[:len(arr)] = arr
    return out


def node_ids_of(collection) -> np.ndarray:
    """NEST ids of a freshly created collection without NodeCollection.tolist (0.2 s per 10k nodes).

    nest.Create returns one contiguous id range, so first id + arange is exact.
    """
    n = len(collection)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(collection[0].get("global_id"))
    last = int(collection[n - 1].get("global_id"))
    if last - first + 1 != n:  # not contiguous (never for Create, but stay exact)
        return np.asarray(collection.tolist(), dtype=np.int64)
    return np.arange(first, first + n, dtype=np.int64)


def model_copy(nest, model: str, params: dict[str, Any] | None, tag: str) -> str:
    """A copy of `model` whose defaults are `params`, so nest.Create sets no per-node status.

    nest.Create(model, n, params) reads the status of all n nodes before setting them
    (0.7 s per 30k cells); creating from a model copy gives the same node state, because
    the same set_status code runs once on the prototype.
    """
    if not params:
        return model
    name = f"{model}__sr_{tag}"
    name = "".join(c if (c.isalnum() or c == "_") else "_" for c in name)
    if name not in nest.node_models:
        nest.CopyModel(model, name, params)
    return name


def create_cells(nest, batch: CellBatch, log: logging.Logger):
    """One nest.Create for the whole batch; per-node h5 dynamics set with one array call per column."""
    model = resolve_model(batch)
    where = f"{batch.population} node_type_id {batch.node_type_id}"
    if model.name not in nest.node_models:
        raise EngineError(f"NEST has no model '{model.name}'", key=f"{where}: model_template",
                          fix="use a model listed by nest.node_models, or install its extension module "
                              "(components.nest_modules)")
    try:
        name = model_copy(nest, model.name, model.params, tag=f"{batch.population}_{batch.node_type_id}")
        nodes = nest.Create(name, len(batch))
    except Exception as exc:
        raise EngineError(f"NEST cannot create {model.name} with parameters {sorted(model.params)}: {exc}",
                          key=f"{where}: dynamics_params",
                          fix="use parameter names and units of the NEST model (see nest.GetDefaults)") from exc
    # several ranks: each sets its own nodes (NodeCollection.set spreads lists over local nodes only)
    local = local_positions(nest, nodes, node_ids_of(nodes)) if batch.node_dynamics and \
        int(nest.NumProcesses()) > 1 else None
    for col, values in (batch.node_dynamics or {}).items():
        values = np.asarray(values)
        if values.dtype.kind == "f":
            have = np.nonzero(~np.isnan(values))[0]
        else:
            have = np.arange(len(values))
        if local is not None:
            have = np.intersect1d(have, local)
        if len(have) == 0:
            continue
        target = nodes if len(have) == len(nodes) else nodes[have.tolist()]
        try:
            target.set({col: values[have].tolist()})
        except Exception as exc:
            raise EngineError(f"NEST rejected per-node parameter '{col}' for {model.name}: {exc}",
                              key=f"{where}: dynamics_params/{col}",
                              fix="per-node dynamics_params columns must be scalar parameters of the model") from exc
    log.debug("created %d %s for %s", len(batch), model.name, where)
    return nodes


def planned_nest_ids(batches: list[CellBatch]) -> tuple[np.ndarray, np.ndarray]:
    """(gids, NEST ids) of the neurons as :func:`create_cells` will create them after a kernel
    reset: batch after batch in :func:`order_cell_batches` order, ids from 1, virtual cells
    (spike generators, created later) left out. The engine checks its nodes against it."""
    gids, ids, nxt = [], [], 1
    for b in order_cell_batches(batches):
        if len(b) == 0 or is_virtual(b):
            continue
        gids.append(np.asarray(b.gids, dtype=np.int64))
        ids.append(np.arange(nxt, nxt + len(b), dtype=np.int64))
        nxt += len(b)
    if not gids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(gids), np.concatenate(ids)


def on_rank(nest_ids: np.ndarray, rank: int, ranks: int, vps: int) -> np.ndarray:
    """NEST's placement: neuron ``i`` on virtual process ``i % vps``, VP ``v`` on rank ``v % ranks``."""
    return (np.asarray(nest_ids, dtype=np.int64) % vps) % ranks == rank


def local_positions(nest, nodes, ids: np.ndarray) -> np.ndarray:
    """Positions in ``nodes`` (neurons, NEST ids ``ids``) of those NEST placed on this rank (all
    of them in one process).

    NEST puts neuron ``i`` on virtual process ``i % VPs`` and VP ``v`` on rank ``v % ranks``.
    Asking NEST instead (``NodeCollection.local``) costs ~20 µs per node (2 s at 100k), so the
    rule is used and checked against NEST's answer on the first few nodes.
    """
    n = len(nodes)
    ranks = int(nest.NumProcesses())
    if ranks == 1:
        return np.arange(n)
    vps = int(nest.GetKernelStatus("total_num_virtual_procs"))
    here = on_rank(ids, int(nest.Rank()), ranks, vps)
    k = min(n, 2 * vps)
    if k and not np.array_equal(np.atleast_1d(np.asarray(nodes[:k].local, dtype=bool)), here[:k]):
        here = np.atleast_1d(np.asarray(nodes.local, dtype=bool))  # another placement: ask for every node
    return np.flatnonzero(here)


def connection_weights(batch: ConnectionBatch) -> np.ndarray:
    """syn_weight x nsyns unless a user weight function already produced the final weight."""
    weights = np.asarray(batch.weights, dtype=np.float64)
    fn = batch.type_attrs.get("weight_function") if batch.type_attrs else None
    if _blank(fn) or str(fn) in NSYNS_WEIGHT_FUNCTIONS:
        nsyns = np.asarray(batch.nsyns, dtype=np.float64) if batch.nsyns is not None else None
        if nsyns is not None and len(nsyns) == len(weights):
            weights = weights * nsyns
    return weights


def synapse_model_name(batch: ConnectionBatch) -> str:
    """The edge type's model_template without BMTK's optional 'nest:' prefix (static_synapse if none)."""
    template = batch.model_template
    if _blank(template):
        return "static_synapse"
    model = str(template)
    if model.startswith("nest:"):
        where = f"{batch.edge_population} edge_type_id {batch.edge_type_id}: model_template"
        model = split_template(model, where=where)[1]
    return model


def synapse_params(batch: ConnectionBatch) -> dict[str, Any]:
    """The nest.Connect syn_spec without its per-edge arrays: model from model_template, then dynamics JSON."""
    spec: dict[str, Any] = {"synapse_model": synapse_model_name(batch)}
    spec.update(batch.dynamics or {})
    return spec


def connection_edges(batch: ConnectionBatch, gid_map: GidMap, resolution: float) -> Edges:
    """What NEST gets per edge: node ids of both ends, checked delays, final weights (file order)."""
    where = f"{batch.edge_population} edge_type_id {batch.edge_type_id}"
    delays = np.asarray(batch.delays, dtype=np.float64)
    if len(delays) and np.isnan(delays).any():
        raise EngineError("edges have no delay", key=f"{where}: delay",
                          fix="add a delay column to the edge types CSV or the edges h5 group")
    if len(delays) and delays.min() < resolution - 1e-12:
        raise EngineError(f"delay {delays.min()} ms is shorter than dt ({resolution} ms)", key=f"{where}: delay",
                          fix="NEST needs delays >= dt: lower run.dt or raise the delays")
    return Edges(synapse_model_name(batch), gid_map.nest_ids(batch.source_gids, what=f"{where}: source"),
                 gid_map.nest_ids(batch.target_gids, what=f"{where}: target"), delays, connection_weights(batch))


# Edges per nest.Connect call. PyNEST's array Connect holds Python's lock while NEST connects
# (NEST 3.10: 2.94 of 2.99 s for 3M edges), so a worker thread preparing the next batch
# (pipeline.py) gets it back only between calls: consecutive slices of one batch, in order,
# give NEST the same edges in the same order, and the worker one step per slice (~3-6 ms of
# NEST at 100k neurons). The extra calls cost nothing measurable (3M edges in 1 or 184 calls).
CONNECT_SLICE = 1 << 14


def connect(nest, batch: ConnectionBatch, edges: Edges, models: Collection[str]) -> None:
    """nest.Connect in array form (NEST's connect_arrays fast path), as BMTK does, with the
    edges in the order given (file order, or the cache order of :mod:`sonatarun.engines.nest.locality`),
    in consecutive slices of CONNECT_SLICE edges. ``models``: NEST's synapse models, asked once
    by the engine (``nest.synapse_models`` is a collective call under MPI, and ranks connect
    different numbers of batches)."""
    if len(batch) == 0:
        return
    where = f"{batch.edge_population} edge_type_id {batch.edge_type_id}"
    spec = synapse_params(batch)
    if spec["synapse_model"] not in models:
        raise EngineError(f"NEST has no synapse model '{spec['synapse_model']}'", key=f"{where}: model_template",
                          fix="use a model listed by nest.synapse_models (static_synapse, stdp_synapse, ...)")
    try:
        for a in range(0, len(edges), CONNECT_SLICE):
            b = a + CONNECT_SLICE
            spec["delay"], spec["weight"] = edges.delays[a:b], edges.weights[a:b]
            nest.Connect(edges.sources[a:b], edges.targets[a:b], conn_spec="one_to_one", syn_spec=spec)
    except Exception as exc:
        raise EngineError(f"NEST cannot connect {where} with {spec['synapse_model']}: {exc}", key=where,
                          fix="check the synapse dynamics_params (e.g. receptor_type 1..4 onto glif_psc; "
                              "plastic synapses cannot start at virtual spike generators)") from exc


def create_spike_generators(nest, batch: CellBatch, params: dict[str, Any]):
    return nest.Create(model_copy(nest, "spike_generator", dict(params), tag="virtual"), len(batch))


def set_spike_trains(nest, trains: SpikeTrains, generators: set[int], gid_map: GidMap,
                     played: dict[int, np.ndarray], offset: float = 0.0) -> int:
    """Give each virtual cell's generator its spike times (sorted, > 0 ms, like BMTK requires).

    `played` holds the times already given to each generator (several inputs on one
    virtual cell add up); it is kept here because reading them back from NEST costs a
    kernel call per generator.
    """
    gids = np.asarray(trains.gids, dtype=np.int64)
    nest_ids = gid_map.nest_ids(gids, what=f"inputs.{trains.name}") if len(gids) else gids
    not_virtual = gids[~np.isin(nest_ids, np.fromiter(generators, dtype=np.int64, count=len(generators)))]
    if len(not_virtual):
        raise InputError(f"gid {int(not_virtual[0])} is not a virtual node; spike trains play only from virtual nodes",
                         key=f"inputs.{trains.name}.node_set",
                         fix="point node_set at a population whose model_type is virtual")
    times = [np.asarray(t, dtype=np.float64) for t in trains.times]
    lengths = [len(t) for t in times]
    if not any(lengths):
        return 0
    # checks and sortedness for all trains at once (10k trains: no per-train numpy calls)
    flat = np.concatenate(times)
    owner = np.repeat(np.arange(len(times)), lengths)
    bad = flat <= 0.0
    if bad.any():
        k = int(owner[np.argmax(bad)])
        raise InputError(f"spike train of gid {int(gids[k])} has a time <= 0 ms ({float(times[k].min())}); NEST "
                         f"cannot play it", key=f"inputs.{trains.name}", fix="shift or drop spikes at t <= 0")
    if offset:
        flat = flat + offset
    down = np.flatnonzero(flat[1:] < flat[:-1])
    unsorted = set(owner[down][owner[down] == owner[down + 1]].tolist())
    parts = np.split(flat, np.cumsum(lengths)[:-1])
    merged: dict[int, np.ndarray] = {}
    for k, nid in enumerate(nest_ids.tolist()):
        if not lengths[k]:
            continue
        prev = merged.get(nid)
        if prev is None:
            prev = played.get(nid)
        if prev is not None:
            merged[nid] = np.sort(np.concatenate([prev, parts[k]]), kind="stable")
        else:
            merged[nid] = np.sort(parts[k], kind="stable") if k in unsorted else parts[k]
    played.update(merged)
    ids = sorted(merged)
    try:
        set_each(nest, nest.NodeCollection(ids), [{"spike_times": merged[i]} for i in ids])
    except Exception as exc:
        raise InputError(f"NEST rejected spike times: {exc}", key=f"inputs.{trains.name}",
                         fix="with precise_times false, spike times must lie on the dt grid "
                             "(or set run.allow_offgrid_spikes true)") from exc
    return int(sum(len(v) for v in merged.values()))


def set_each(nest, collection, params: list[dict[str, Any]]) -> None:
    """collection.set(one dict per node), without the per-node `local` query that
    NodeCollection.set makes first (0.2 s per 10k nodes; every node is local here: one
    process). Falls back to the public call if pynest's kernel function is not there."""
    kernel_api = getattr(getattr(nest, "ll_api", None), "nestkernel", None)
    low_level_set = getattr(kernel_api, "llapi_set_nc_status", None)
    datum = getattr(collection, "_datum", None)
    if low_level_set is None or datum is None:
        collection.set(params)
        return
    low_level_set(datum, params)


def clamp_steps(clamp: CurrentClamp, dt: float, log: logging.Logger) -> tuple[list[float], list[float]]:
    """step_current_generator times/values exactly as BMTK PointNet's IClampMod builds them.

    Onsets at or before dt are skipped (NEST cannot change a current at t <= dt); each
    pulse switches off at delay + duration unless the next pulse starts earlier.
    """
    times: list[float] = []
    values: list[float] = []
    n = len(clamp.delays)
    for i in range(n):
        start = float(clamp.delays[i])
        if start <= dt:
            log.warning("current clamp %s: onset %.4g ms <= dt skipped (as BMTK PointNet does)", clamp.name, start)
            continue
        times.append(start)
        values.append(float(clamp.amps[i]))
        stop = start + float(clamp.durations[i])
        if i + 1 == n or stop <= float(clamp.delays[i + 1]):
            times.append(stop)
            values.append(0.0)
    return times, values


def add_current_clamp(nest, clamp: CurrentClamp, gid_map: GidMap, dt: float, log: logging.Logger):
    """One step_current_generator per clamp, connected to every target with delay dt.

    Amplitudes are passed to NEST unchanged, i.e. in pA, as BMTK PointNet does.
    """
    if not (len(clamp.amps) == len(clamp.delays) == len(clamp.durations)):
        raise InputError("amp, delay and duration must have the same length", key=f"inputs.{clamp.name}")
    times, values = clamp_steps(clamp, dt, log)
    try:
        gen = nest.Create("step_current_generator",
                          params={"amplitude_times": times, "amplitude_values": values})
    except Exception as exc:
        raise InputError(f"NEST rejected the current clamp steps {times}: {exc}", key=f"inputs.{clamp.name}",
                         fix="delays and delay+duration must be multiples of dt and strictly increasing") from exc
    targets = gid_map.nest_ids(clamp.gids, what=f"inputs.{clamp.name}")
    if len(targets):
        nest.Connect(gen, nest.NodeCollection(sorted(set(targets.tolist()))), syn_spec={"delay": dt})
    return gen


def is_virtual(batch: CellBatch) -> bool:
    return batch.model_type in VIRTUAL_MODEL_TYPES
