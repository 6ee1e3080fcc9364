"""The NEST engine: BMTK PointNet semantics, built in bulk, run in blocks.

The simulation layer calls build_cells, build_connections, add_stimulus (per input),
add_probe (per report), prepare, then advance/drain_spikes per block, then finish.
Each block is one Prepare/Run/Cleanup cycle (what BMTK's block mode does with
nest.Simulate), so the recorders can be emptied between blocks.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sonatarun.engines.base import (CellBatch, ConnectionBatch, CurrentClamp, EdgeChunk, Engine, Probe,
                                    ProbeSpec, RunSettings, SpikeTrains)
from sonatarun.engines.nest import build, kernel, locality, pipeline, recorders
from sonatarun.engines.nest.models import resolve_model
from sonatarun.engines.nest.recorders import TAP_RECEPTOR, MultimeterProbe, SpikeRecorder, SpikeTap, can_tap
from sonatarun.engines.nest.weight_recorder import WeightRecorderProbe, recorded_template
from sonatarun.engines.registry import register
from sonatarun.errors import EngineError
from sonatarun.mpi import Comm


def engine_options(settings: RunSettings) -> dict[str, Any]:
    """NEST-specific run keys (precise_times, allow_offgrid_spikes, nest_modules) if the plan carries them."""
    opts = dict(getattr(settings, "engine_options", None) or {})
    modules = settings.components.get("nest_modules") if settings.components else None
    if modules is not None and "nest_modules" not in opts:
        opts["nest_modules"] = [str(modules)]
    return opts


@register("nest")
class NestEngine(Engine):
    # No exact checkpoint/resume for NEST (see save_state below): the simulation layer should
    # not schedule automatic checkpoints (batch schedulers) for this engine, and should refuse
    # --checkpoint-interval / --resume before the run starts.
    supports_checkpoints: ClassVar[bool] = False
    # With an MPI build of NEST, every rank creates every node (NEST keeps its share, round-robin
    # over virtual processes), hands NEST the edges onto its own neurons and records those.
    places_cells: ClassVar[bool] = True
    # Large edge populations come as EdgeChunks: the pipeline reads chunk k+1 while NEST connects chunk k
    streams_edges: ClassVar[bool] = True

    def __init__(self, settings: RunSettings, comm: Comm, log: logging.Logger) -> None:
        super().__init__(settings, comm, log)
        kernel.check_ranks(comm)
        self.nest = kernel.import_nest(quiet=settings.quiet)
        self.options = engine_options(settings)
        kernel.configure(self.nest, settings, self.options)
        # asked once: nest.synapse_models is a collective call with an MPI NEST, and ranks connect
        # different numbers of batches; models the engine defines later are added here
        self._synapse_models: set[str] = set(self.nest.synapse_models)
        self.gid_map = build.GidMap()
        # virtual processes: NEST's results are the same for the same count, however many ranks
        self.vps = max(1, int(settings.threads or 1)) * comm.size
        self._neurons: list = []                       # NodeCollections of non-virtual cells, creation order
        self._virtual: list[CellBatch] = []
        self._generators: set[int] = set()             # nest ids of the spike generators
        self._played: dict[int, np.ndarray] = {}       # nest id -> spike times given so far
        self._recordables: list[tuple[int, int, set[str]]] = []  # (first id, last id, recordables)
        self._models: list[str] = []                   # NEST model of each entry of _neurons
        self._recorder: SpikeRecorder | None = None
        self._spike_sources: list[SpikeRecorder | SpikeTap] = []
        self._recorder_connected = False
        self._pending: dict[str, list[ConnectionBatch]] = {}  # edges waiting for a weight_recorder's model
        self._probes_other: list[Probe] = []
        self._probes: list[MultimeterProbe] = []
        self._stimuli: list = []
        self._connected = False
        self._flushed = False
        self.stats: dict[str, int] = {"cells": 0, "virtual": 0, "edges": 0, "edges_reordered": 0, "edge_chunks": 0}

    @classmethod
    def check_plan(cls, plan: dict[str, Any], components: dict[str, Path]) -> list[str]:
        """Problems the build would hit (ranks, models, synapse models, inputs, reports), found before any write."""
        from sonatarun.mpi import world

        try:
            kernel.check_ranks(world())
        except EngineError as exc:
            return [exc.render()]  # and do not import NEST: without MPI it exits under mpiexec -n >1
        nest = kernel.import_nest(quiet=True)
        # each asked once: a kernel-status query is a collective call with an MPI NEST, and ranks
        # see different edge types (each reads only the edges onto its own neurons)
        node_models, synapse_models = set(nest.node_models), set(nest.synapse_models)
        extensions = bool(components.get("nest_modules"))  # models may come from modules not loaded yet
        recorded = {recorded_template(spec) for _, spec in plan.get("probes", [])
                    if spec.kind == "weight_recorder"}
        problems: list[str] = []
        seen: set = set()
        for b in plan.get("cells", []):
            key = (b.population, b.node_type_id)
            if key in seen or build.is_virtual(b):
                continue
            seen.add(key)
            try:
                model = resolve_model(b)
            except EngineError as exc:
                problems.append(exc.render())
                continue
            if not extensions and model.name not in node_models:
                problems.append(f"population '{b.population}', node type {b.node_type_id}: NEST has no model "
                                f"'{model.name}' (model_template {b.model_template})")
        heads = [h for c in plan.get("connections", []) for h in (c.heads if isinstance(c, EdgeChunk) else [c])]
        for c in heads:
            key = (c.edge_population, c.edge_type_id)
            if key in seen:
                continue
            seen.add(key)
            try:
                name = build.synapse_model_name(c)
            except EngineError as exc:
                problems.append(exc.render())
                continue
            if not extensions and name not in synapse_models and name not in recorded:
                problems.append(f"edge population '{c.edge_population}', edge type {c.edge_type_id}: NEST has no "
                                f"synapse model '{name}' (use e.g. static_synapse, stdp_synapse, tsodyks_synapse)")
        for stim in plan.get("stimuli", []):
            if not isinstance(stim, (SpikeTrains, CurrentClamp)):
                problems.append(f"input '{getattr(stim, 'name', '?')}': the NEST engine cannot apply a "
                                f"{type(stim).__name__} (point neurons take spike trains and current clamps)")
        ranks = world().size
        for _, spec in plan.get("probes", []):
            if spec.kind == "weight_recorder" and ranks > 1:
                problems.append(f"report '{spec.name}': a weight_recorder report follows NEST's connection order, "
                                f"which is per rank, so it is written in one process only: run with `--threads N`")
            if spec.kind not in ("multimeter", "membrane", "weight_recorder"):
                problems.append(f"report '{spec.name}': the NEST engine does not support '{spec.kind}' reports "
                                f"(use multimeter_report with a NEST recordable)")
        return problems

    @classmethod
    def edge_targets_here(cls, cells: list[CellBatch], rank: int, size: int, threads: int):
        """Several ranks: each reads only the edges onto the neurons NEST will place on it (their
        NEST ids are known from the plan, see build.planned_nest_ids; build_cells checks them)."""
        if size <= 1:
            return None
        gids, ids = build.planned_nest_ids(cells)
        top = int(max([gids.max(initial=-1)] + [int(np.max(b.gids)) for b in cells if len(b)])) + 1
        here = np.ones(top, dtype=bool)  # virtual cells: kept, so edges onto them still fail clearly
        here[gids] = build.on_rank(ids, rank, size, max(1, int(threads)) * size)
        return lambda target_gids: here[np.asarray(target_gids, dtype=np.int64)]

    # -- model ---------------------------------------------------------------
    def build_cells(self, batches: list[CellBatch]) -> None:
        n_nodes = sum(len(b) for b in batches)
        untappable = any(resolve_model(b).name not in TAP_RECEPTOR for b in batches if not build.is_virtual(b))
        if self._recorder is None and untappable and self.vps == 1 and \
                n_nodes >= recorders.HPC_MAX_LOCAL_INDEX:
            # Large single-thread network with cells the spike tap cannot serve: the recorder
            # goes first so the cheap synapse can address it (see recorders.py); one thread
            # updates and delivers in the same order whatever the absolute node ids, so spikes
            # stay BMTK's. With several threads the node ids decide the thread of each neuron:
            # keep BMTK's ids there.
            self._recorder = SpikeRecorder(self.nest, self.gid_map, local_index=0)
        for batch in build.order_cell_batches(batches):
            if len(batch) == 0:
                continue
            if build.is_virtual(batch):
                self._virtual.append(batch)
                continue
            nodes = build.create_cells(self.nest, batch, self.log)
            ids = build.node_ids_of(nodes)
            self.gid_map.add(batch.gids, ids)
            if self.comm.size > 1 and not np.array_equal(build.local_positions(self.nest, nodes, ids), np.flatnonzero(
                    build.on_rank(ids, self.comm.rank, self.comm.size, self.vps))):
                self._misplaced(batch)
            self._neurons.append(nodes)
            self._models.append(resolve_model(batch).name)
            recordables = self.nest.GetDefaults(self._models[-1], "recordables")
            self._recordables.append((int(ids[0]), int(ids[-1]), set(recordables)))
            self.stats["cells"] += len(batch)
        if self.comm.size > 1:  # the NEST ids each rank read its edges for (edge_targets_here)
            gids, planned = build.planned_nest_ids(batches)
            if len(gids) and not np.array_equal(self.gid_map.nest_ids(gids, what="cells"), planned):
                self._misplaced(batches[0])

    def _misplaced(self, batch: CellBatch) -> None:
        raise EngineError(f"NEST placed the cells of {batch.population} elsewhere than planned: a rank may lack the "
                          "edges onto some of them", fix="report this as a sonatarun bug; run in one process meanwhile")

    def _connect_recorder(self) -> None:
        """Spike recording for every neuron: a SpikeTap where the model allows, else a spike_recorder.

        The tap takes its delay from the connections made so far, so a network without any
        connection yet (whose min_delay NEST has not fixed) uses the spike_recorder.
        """
        if self._recorder_connected:
            return
        self._recorder_connected = True
        tap_nodes, tap_receptors, rec_nodes = [], [], []
        # NEST counts (and bounds the delays of) each rank's own connections: decide on all ranks' together
        mine = int(self.nest.GetKernelStatus("num_connections"))
        has_edges = not self._agree(mine == 0)
        for nodes, model in zip(self._neurons, self._models):
            if has_edges and self._agree(can_tap(self.nest, model, nodes)):
                tap_nodes.append(nodes)
                tap_receptors.append(TAP_RECEPTOR[model])
            else:
                rec_nodes.append(nodes)
        if tap_nodes:
            tap = SpikeTap(self.nest, self.gid_map)
            delay = float(self.nest.GetKernelStatus("min_delay"))
            if self.comm.size > 1:  # the smallest delay of any rank's connections (a rank without any has none)
                delay = -self.comm.allreduce_max(-(delay if mine else float("inf")))
            tap.connect(tap_nodes, tap_receptors, delay)
            self._spike_sources.append(tap)
        if rec_nodes:
            if self._recorder is None:
                neurons = self.stats["cells"]
                devices = int(self.nest.GetKernelStatus("network_size")) - neurons
                local_index = -(-neurons // self.vps) + devices + 1
                self._recorder = SpikeRecorder(self.nest, self.gid_map, local_index=local_index)
            self._recorder.connect(rec_nodes)
            self._spike_sources.append(self._recorder)
        self.log.debug("spikes recorded by %s", ", ".join(type(s).__name__ for s in self._spike_sources) or "nothing")

    def _agree(self, ok: bool) -> bool:
        """True only if every rank says so: what each rank creates must be the same everywhere."""
        return ok if self.comm.size == 1 else not self.comm.allreduce_max(int(not ok))

    def _create_generators(self) -> None:
        """Spike generators for virtual cells, after the recurrent edges (BMTK's order)."""
        sg_params: dict[str, Any] = {"precise_times": bool(self.options.get("precise_times", True))}
        if self.options.get("allow_offgrid_spikes"):
            sg_params["allow_offgrid_times"] = True
        for batch in self._virtual:
            gens = build.create_spike_generators(self.nest, batch, sg_params)
            ids = build.node_ids_of(gens)
            self.gid_map.add(batch.gids, ids)
            self._generators.update(ids.tolist())
            self.stats["virtual"] += len(batch)
        self._virtual = []

    def build_connections(self, batches: list[ConnectionBatch | EdgeChunk]) -> None:
        virtual_pops = {b.population for b in self._virtual}
        recurrent = [b for b in batches if b.source_population not in virtual_pops]
        from_virtual = [b for b in batches if b.source_population in virtual_pops]
        if any(b.target_population in virtual_pops for b in recurrent):
            # edges onto virtual cells (an error: a spike generator takes no input): the sequence of
            # before, so the error stays the same
            self._connect(recurrent)
            self._create_generators()
            self._connect(from_virtual)
        else:
            # BMTK creates the generators after the recurrent connects; creating them first gives
            # them the same node ids (connects create no node) and lets the virtual edges be
            # prepared while the recurrent ones connect. Both sets are still ordered apart.
            self._create_generators()
            self._connect(recurrent, then=from_virtual)
        self._connected = True
        # Connecting every neuron to the spike recorder is a sizeable part of NEST's build
        # (seconds at 100k cells), so it happens here, with the rest of the model build.
        self._connect_recorder()

    def _connect(self, batches: list[ConnectionBatch | EdgeChunk], *, file_order: bool = False,
                 then: list[ConnectionBatch | EdgeChunk] | None = None) -> None:
        """Connect now, in the order that NEST connects fastest where no spike can change
        (locality.py), or keep a batch until the weight_recorder report that defines its synapse model.
        Each batch's edges are prepared on a worker thread while NEST connects the one before
        (pipeline.py); ``then``: batches connected next in the same pipeline, ordered apart."""
        parts = []
        for group in (batches, then):
            if group is None:
                continue
            ready, chunks, whole = [], [], set()
            for item in group:
                if isinstance(item, EdgeChunk):
                    if all(build.synapse_model_name(h) in self._synapse_models for h in item.heads):
                        chunks.append(pipeline.Part([], file_order, chunk=item))  # read in the pipeline
                        continue
                    # a weight_recorder's model among them: its rows follow the connection order,
                    # so the population is read now, whole, in the batches and order BMTK connects
                    if item.edge_population in whole:
                        continue
                    whole.add(item.edge_population)
                    loaded = item.whole()
                else:
                    loaded = [item]
                for batch in loaded:
                    name = build.synapse_model_name(batch)
                    if name in self._synapse_models:
                        ready.append(batch)
                    else:
                        self._pending.setdefault(name, []).append(batch)
            # a chunk shares no (source, target) pair with any other batch: ordered on its own
            parts.extend([pipeline.Part(ready, file_order)] + chunks)
            self.stats["edge_chunks"] += len(chunks)
        pipeline.connect_batches(parts, self.gid_map, float(self.settings.dt), self._connect_batch)

    def _connect_batch(self, batch: ConnectionBatch, edges: locality.Edges, reordered: bool) -> None:
        """One batch to NEST (main thread only), counted in the engine stats."""
        build.connect(self.nest, batch, edges, self._synapse_models)
        self.stats["edges"] += len(edges)  # on this rank (several ranks: the edges onto its neurons)
        self.stats["edges_reordered"] += len(edges) if reordered else 0

    def add_stimulus(self, stimulus: Any) -> None:
        if not self._connected:
            self._create_generators()
            self._connected = True
        if isinstance(stimulus, SpikeTrains):
            n = build.set_spike_trains(self.nest, stimulus, self._generators, self.gid_map, self._played)
            self.log.debug("input %s: %d spikes on %d virtual cells", stimulus.name, n, len(stimulus.gids))
        elif isinstance(stimulus, CurrentClamp):
            self._stimuli.append(build.add_current_clamp(self.nest, stimulus, self.gid_map,
                                                         float(self.settings.dt), self.log))
        else:
            kind = type(stimulus).__name__
            raise EngineError(f"the NEST engine cannot apply a {kind} input",
                              key=f"inputs.{getattr(stimulus, 'name', kind)}",
                              fix="NEST point neurons take spike trains (virtual nodes) and current clamps")

    def add_probe(self, spec: ProbeSpec) -> Probe:
        if spec.kind == "weight_recorder":
            probe = WeightRecorderProbe(self.nest, spec, self.gid_map, tstop=float(self.settings.tstop))
            self._synapse_models.add(probe.template)
            # rows of a weight_recorder follow NEST's connection order: keep the file's
            self._connect(self._pending.pop(probe.template, []), file_order=True)
            self._probes_other.append(probe)
            return probe
        if spec.kind not in ("multimeter", "membrane"):
            raise EngineError(f"the NEST engine does not support '{spec.kind}' reports", key=f"reports.{spec.name}",
                              fix="use module multimeter_report (or membrane_report) with a NEST recordable")
        probe = MultimeterProbe(self.nest, spec, self.gid_map, dt=float(self.settings.dt),
                                tstart=float(self.settings.tstart), tstop=float(self.settings.tstop),
                                recordables=self._recordables)
        self._probes.append(probe)
        return probe

    # -- time ----------------------------------------------------------------
    def prepare(self) -> None:
        if not self._connected:
            self._create_generators()
            self._connected = True
        for name, pending in self._pending.items():
            b = pending[0]
            raise EngineError(f"NEST has no synapse model '{name}'",
                              key=f"{b.edge_population} edge_type_id {b.edge_type_id}: model_template",
                              fix="use a model listed by nest.synapse_models (static_synapse, stdp_synapse, ...), "
                                  "or define it with a weight_recorder report (model_template)")
        self._connect_recorder()
        for probe in self._probes:
            probe.capture_initial()

    def advance(self, t_stop: float) -> None:
        dt = float(self.settings.dt)
        steps = int(round((float(t_stop) - self.time) / dt))
        if steps <= 0:
            return
        self._run(steps * dt)
        needs_flush = bool(self._probes) or any(src.needs_flush for src in self._spike_sources)
        if needs_flush and t_stop >= float(self.settings.tstop) - dt / 2 and not self._flushed:
            # A multimeter (and the spike tap) gets the events of a min-delay slice during
            # the next slice, so the last slice needs one more (unrecorded) slice: spikes
            # after tstop are dropped by drain_spikes, multimeters stop at tstop.
            self._flushed = True
            self._run(float(self.nest.GetKernelStatus("min_delay")))

    def _run(self, ms: float) -> None:
        nest = self.nest
        nest.Prepare()
        try:
            nest.Run(ms)
        finally:
            nest.Cleanup()

    def drain_spikes(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._spike_sources:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        drained = [src.drain() for src in self._spike_sources]
        gids = np.concatenate([d[0] for d in drained])
        times = np.concatenate([d[1] for d in drained])
        if self._flushed:
            keep = times <= float(self.settings.tstop) + 1e-9
            gids, times = gids[keep], times[keep]
        return gids, times

    @property
    def time(self) -> float:
        t = float(self.nest.biological_time)
        return min(t, float(self.settings.tstop)) if self._flushed else t

    # -- checkpoints ---------------------------------------------------------
    # save_state/restore_state: the base class refuses. NEST cannot set its clock, and it
    # exposes neither the spikes in flight (ring buffers) nor all synaptic state, so a
    # NEST run cannot continue from a checkpoint bit-identically (see docs/nest.md).

    def finish(self) -> None:
        self.log.debug("NEST engine finished at t=%.3f ms: %s", self.time, json.dumps(self.stats))
