"""Spike tap, spike recorder and multimeters, recorded to memory and emptied after every block.

BMTK PointNet records to ASCII files and converts them after the run (seconds of
pandas for a small network). Here the recorders keep events in memory for one block
only: the engine drains them between blocks (outside NEST's Prepare/Cleanup context,
where ``n_events = 0`` is allowed) and the writers stream them to disk.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from sonatarun.engines.base import Probe, ProbeSpec
from sonatarun.engines.nest.build import GidMap, local_positions, node_ids_of
from sonatarun.errors import EngineError

# NEST's time base: 1000 tics per ms. Every grid time is a whole number of tics, so
# rounding to 3 decimals removes only the float noise of tics * 0.001 (and gives the
# same values BMTK reads back from NEST's 3-decimal ASCII files).
TIME_DECIMALS = 3

# SONATA/NEURON variable names accepted for point-neuron membrane reports.
VARIABLE_ALIASES = {"v": "V_m", "V": "V_m", "vm": "V_m"}


# NEST stores each neuron's connections to devices in a block of 1024 connections, so
# the first connection of every neuron to the spike recorder costs 1024 x the synapse size:
# 33 kB per neuron with static_synapse (3.3 GB at 100k cells, what BMTK pays), 15 kB with
# static_synapse_hpc, which records the same events. HPC synapses address their target by
# its thread-local index, which must stay below 65534: true when the recorder is created
# after fewer than that many nodes per thread, or before all the neurons.
RECORDER_SYNAPSE = "static_synapse_hpc"
HPC_MAX_LOCAL_INDEX = 65000


def drain_events(device, gid_map: GidMap) -> tuple[np.ndarray, np.ndarray]:
    """(gids, times) of the spikes a recording device holds, which it then forgets."""
    ev = device.get("events")
    senders = np.asarray(ev["senders"], dtype=np.int64)
    times = np.round(np.asarray(ev["times"], dtype=np.float64), TIME_DECIMALS)
    if len(senders):
        device.n_events = 0
    return gid_map.gids(senders), times


class SpikeRecorder:
    """One spike_recorder on every non-virtual node."""

    needs_flush = False  # a spike_recorder sees each spike in the step that emits it

    def __init__(self, nest, gid_map: GidMap, local_index: int) -> None:
        """`local_index`: an upper bound of the recorder's thread-local index (neurons per thread
        created before it, plus every device created before it: devices exist on every thread)."""
        self._nest = nest
        self._gid_map = gid_map
        self.device = nest.Create("spike_recorder", params={"record_to": "memory"})
        self.synapse = RECORDER_SYNAPSE if (RECORDER_SYNAPSE in nest.synapse_models
                                            and local_index < HPC_MAX_LOCAL_INDEX) else "static_synapse"

    def connect(self, nodes: list) -> None:
        for collection in nodes:
            self._nest.Connect(collection, self.device, syn_spec={"synapse_model": self.synapse})

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        return drain_events(self.device, self._gid_map)


# Neuron models whose SpikeEvent handler does nothing but add weight x multiplicity to an
# input ring buffer (read in NEST's models/<name>.cpp), with the receptor port a spike of
# weight 0 can use. For these a weight-0 spike changes no state bit: x + 0.0 == x (and
# x - 0.0 == x) for every buffer value, which starts at +0.0 and never becomes -0.0.
# Precise-timing (_ps) models, parrots and multisynapse models are deliberately absent.
TAP_RECEPTOR: dict[str, int] = {
    "iaf_psc_alpha": 0, "iaf_psc_exp": 0, "iaf_psc_delta": 0, "iaf_cond_alpha": 0, "iaf_cond_exp": 0,
    "aeif_cond_alpha": 0, "izhikevich": 0, "glif_psc": 1, "glif_cond": 1,
}
TAP_SYNAPSE = "sonatarun_spike_tap"


def can_tap(nest, model: str, nodes) -> bool:
    """True when `nodes` (one NEST model) can report spikes through a SpikeTap."""
    if model not in TAP_RECEPTOR:
        return False
    if TAP_RECEPTOR[model] > 0:  # receptor ports 1..len(tau_syn)
        local = local_positions(nest, nodes, node_ids_of(nodes))
        if not len(local):
            return True  # nothing of it here: the ranks that hold its nodes decide
        return len(np.atleast_1d(nodes[int(local[0])].get("tau_syn"))) >= TAP_RECEPTOR[model]
    return True


class SpikeTap:
    """Every spike of the tapped neurons, without a device connection per neuron.

    A spike_recorder is a device: NEST gives each neuron connected to it its own connector
    of 1024 preallocated synapses (15-33 kB per neuron, ~25-60 µs each; 1.5-3.3 GB and
    seconds at 100k cells). Here every neuron instead gets one ordinary connection onto
    itself with weight 0, through a copy of static_synapse that reports each transmitted
    spike to a weight_recorder (sender = the neuron, time = its spike time). Ordinary
    connections cost ~20 bytes and ~0.3 µs each. The weight-0 spike changes nothing in the
    models of TAP_RECEPTOR; its delay is the network's current min_delay, so the delay
    extrema (NEST's slice length) stay what they were; spikes are identical to a
    spike_recorder's (tests/nest compare them).

    Unlike a spike_recorder (which sees a spike at once), the weight_recorder sees it when
    NEST delivers it: spikes of the last min-delay slice of a `Run` arrive during the next
    `Run`, so the engine runs one more slice after tstop (`needs_flush`) and drops what it
    emitted. Blocks then carry consecutive, non-overlapping time ranges, as before.
    """

    needs_flush = True

    def __init__(self, nest, gid_map: GidMap) -> None:
        self._nest = nest
        self._gid_map = gid_map
        self.device = nest.Create("weight_recorder", params={"record_to": "memory"})
        nest.CopyModel("static_synapse", TAP_SYNAPSE, {"weight_recorder": self.device})  # gone at ResetKernel

    def connect(self, nodes: list, receptors: list[int], delay: float) -> None:
        """``delay``: the network's min_delay so far (over every rank's connections)."""
        for collection, receptor in zip(nodes, receptors):
            ids = node_ids_of(collection)
            spec: dict[str, Any] = {"synapse_model": TAP_SYNAPSE, "weight": np.zeros(len(ids)),
                                    "delay": np.full(len(ids), delay)}
            if receptor:
                spec["receptor_type"] = np.full(len(ids), float(receptor))
            self._nest.Connect(ids, ids, "one_to_one", spec)

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        return drain_events(self.device, self._gid_map)


class MultimeterProbe(Probe):
    """A multimeter on the spec's cells: one column per cell (point cells have one element)."""

    def __init__(self, nest, spec: ProbeSpec, gid_map: GidMap, *, dt: float, tstart: float, tstop: float,
                 recordables: list[tuple[int, int, set[str]]]) -> None:
        self._nest = nest
        self.spec = spec
        self.variables = [VARIABLE_ALIASES.get(v, v) for v in spec.variables]
        gids = np.asarray(spec.gids, dtype=np.int64)
        nest_ids = gid_map.nest_ids(gids, what=f"reports.{spec.name}")
        for first, last, can in recordables:
            mine = nest_ids[(nest_ids >= first) & (nest_ids <= last)]
            missing = [v for v in self.variables if v not in can]
            if len(mine) and missing:
                raise EngineError(f"cell gid {int(gid_map.gids(mine[:1])[0])} cannot record {missing}",
                                  key=f"reports.{spec.name}.variable_name",
                                  fix=f"record one of: {', '.join(sorted(can))}")
        known = np.zeros(len(nest_ids), dtype=bool)
        for first, last, _ in recordables:
            known |= (nest_ids >= first) & (nest_ids <= last)
        if not known.all():
            raise EngineError(f"gid {int(gids[~known][0])} is a virtual cell and has no state to record",
                              key=f"reports.{spec.name}.cells", fix="report on non-virtual populations only")
        unique_sorted = np.unique(nest_ids)
        # with several ranks each records the cells NEST placed on it: its columns of the report
        local_ids = unique_sorted
        if nest.NumProcesses() > 1 and len(unique_sorted):
            local_ids = unique_sorted[local_positions(nest, nest.NodeCollection(unique_sorted.tolist()), unique_sorted)]
        here = np.isin(nest_ids, local_ids)
        nest_ids = nest_ids[here]
        self.node_ids = np.asarray(spec.node_ids, dtype=np.int64)[here]
        n = len(self.node_ids)
        self.counts = np.ones(n, dtype=np.int64)
        self.element_ids = np.zeros(n, dtype=np.int64)
        # BMTK PointNet writes element_pos 0.0 for point cells.
        self.element_pos = np.zeros(n, dtype=np.float64)
        self.units = "mV" if self.variables == ["V_m"] else ""
        self.dt = float(spec.dt or dt)
        steps = self.dt / dt
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise EngineError(f"report dt {self.dt} is not a multiple of the simulation dt {dt}",
                              key=f"reports.{spec.name}.dt", fix="use a multiple of run.dt")
        start = float(spec.start_time) if spec.start_time is not None else tstart
        stop = float(spec.end_time) if spec.end_time is not None else tstop
        # Rows are t = start, start + dt, ... < stop (the writers' [tstart, tstop, dt] layout).
        # A NEST multimeter records samples at t in (start, stop], each the state at the end
        # of the step ending at t; it cannot sample t = 0, so that row is the initial state.
        self.n_rows = int(round((stop - start) / self.dt))
        self._needs_initial = start < self.dt / 2
        mm_start = 0.0 if self._needs_initial else start - self.dt
        params: dict[str, Any] = {"record_from": self.variables, "interval": self.dt, "record_to": "memory",
                                  "start": mm_start, "stop": max(mm_start, stop - self.dt)}
        self.device = nest.Create("multimeter", params=params)
        if len(unique_sorted):  # the same call on every rank; NEST connects each rank's own
            nest.Connect(self.device, nest.NodeCollection(unique_sorted.tolist()))
        self._targets = nest.NodeCollection(local_ids.tolist()) if len(local_ids) else None
        # column j of the output is cell j of the spec here (its slot among the sorted local ids)
        self._columns = np.searchsorted(local_ids, nest_ids).astype(np.int64)
        self._n_unique = len(local_ids)
        self._id_base = np.asarray(local_ids, dtype=np.int64)
        self._initial: dict[str, np.ndarray] | None = None
        self.rows_out = 0

    def capture_initial(self) -> None:
        """Read the state at t = 0 (before the first Run) for the first row."""
        if self._needs_initial and self._initial is None:
            if self._targets is None:
                self._initial = {v: np.zeros((1, 0), dtype=np.float32) for v in self.variables}
                return
            self._initial = {v: np.asarray(self._targets.get(v), dtype=np.float32).reshape(1, -1)[:, self._columns]
                             for v in self.variables}

    def drain(self) -> dict[str, np.ndarray]:
        ev = self.device.get("events")
        senders = np.asarray(ev["senders"], dtype=np.int64)
        out: dict[str, np.ndarray] = {}
        if len(senders):
            times = np.asarray(ev["times"], dtype=np.float64)
            tsteps = np.rint(times / self.dt).astype(np.int64)
            uniq_steps, row = np.unique(tsteps, return_inverse=True)
            col = np.searchsorted(self._id_base, senders)
            for v in self.variables:
                grid = np.full((len(uniq_steps), self._n_unique), np.nan, dtype=np.float32)
                grid[row, col] = np.asarray(ev[v], dtype=np.float64)
                out[v] = grid[:, self._columns]
            self.device.n_events = 0
        else:
            out = {v: np.zeros((0, len(self.node_ids)), dtype=np.float32) for v in self.variables}
        if self._initial is not None:
            out = {v: np.concatenate([self._initial[v], out[v]]) for v in self.variables}
            self._initial = None
            self._needs_initial = False
        room = self.n_rows - self.rows_out
        out = {v: a[:room] for v, a in out.items()}
        self.rows_out += len(next(iter(out.values()))) if out else 0
        return out
