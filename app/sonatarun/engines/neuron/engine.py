"""The NEURON engine: ParallelContext, gids round-robin across ranks, native spike
recording, and integration in blocks with ``pc.psolve`` (no Python per time step)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.engines.base import (CellBatch, ConnectionBatch, Engine, Probe, ProbeSpec, RunSettings,
                                    SpikeTrains)
from sonatarun.engines.neuron import mechanisms
from sonatarun.engines.neuron.cells import NrnCell, builder_for
from sonatarun.engines.registry import register
from sonatarun.errors import EngineError
from sonatarun.mpi import Comm


def _load_mechanisms(components: dict[str, Any], use_coreneuron: bool, log: logging.Logger | None) -> None:
    """The package's and the config's mechanisms: NEURON-only libraries, or one CoreNEURON build."""
    mech_dir = components.get("mechanisms_dir")
    if use_coreneuron:
        from sonatarun.engines.neuron import coreneuron

        coreneuron.load(Path(mech_dir) if mech_dir is not None else None, log=log)
        return
    mechanisms.load(mechanisms.PACKAGE_MOD_DIR, log=log)
    if mech_dir is not None and mechanisms.mod_files(Path(mech_dir)):
        mechanisms.load(Path(mech_dir), log=log)


def _excluded_synapses(batches: list[ConnectionBatch]) -> list[str]:
    """Edge types whose synapse model comes from a .mod file left out of the CoreNEURON build."""
    from sonatarun.engines.neuron.coreneuron import excluded_note

    problems, seen = [], set()
    for b in batches:
        for name in (b.model_template, (b.dynamics or {}).get("model_template")):
            name = str(name or "").removeprefix("nrn:")
            note = excluded_note([name]) if name and name not in seen else ""
            seen.add(name)
            if note:
                problems.append(f"edge population '{b.edge_population}': synapse model '{name}' is unavailable "
                                f"with --coreneuron{note}")
    return problems


@register("neuron")
class NeuronEngine(Engine):
    def __init__(self, settings: RunSettings, comm: Comm, log: logging.Logger) -> None:
        super().__init__(settings, comm, log)
        os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")  # no "no DISPLAY" banner on every rank
        from neuron import h

        self.h = h
        if comm.mpi is not None:
            h.nrnmpi_init()
        h.load_file("stdrun.hoc")
        self.pc = h.ParallelContext()
        if comm.size > 1 and int(self.pc.nhost()) != comm.size:
            raise EngineError(f"NEURON sees {int(self.pc.nhost())} rank(s) but MPI has {comm.size}",
                              fix="set MPI_LIB_NRN_PATH to the libmpi.so.12 that mpi4py uses")
        self.coreneuron = bool(settings.engine_options.get("coreneuron"))
        _load_mechanisms(settings.components, self.coreneuron, log if comm.is_root else None)
        h.dt = settings.dt
        h.steps_per_ms = 1.0 / settings.dt
        h.celsius = settings.celsius
        h.tstop = settings.tstop
        self.cells: dict[int, NrnCell] = {}
        self._recorded: list[int] = []  # gids whose spikes are output (BMTK does not report virtual nodes)
        self._virtual_populations: set[str] = set()
        self._keep: list[Any] = []
        self._spike_t = h.Vector()
        self._spike_gid = h.Vector()
        self.probes: list[Probe] = []

    @classmethod
    def check_plan(cls, plan: dict[str, Any], components: dict[str, Path], *, coreneuron: bool = False) -> list[str]:
        """Problems `build_cells` would hit, found without building (nothing is written)."""
        os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
        from neuron import h

        from sonatarun.engines.neuron.cells import BUILDERS

        problems: list[str] = []
        try:
            _load_mechanisms(components, coreneuron, None)
        except EngineError as exc:
            return [exc.render()]
        if coreneuron:
            problems.extend(_excluded_synapses(plan["connections"]))
        seen = set()
        for b in plan["cells"]:
            key = (b.population, b.node_type_id, b.model_type, b.model_template)
            if key in seen:
                continue
            seen.add(key)
            where = f"population '{b.population}', node type {b.node_type_id}"
            if b.model_type not in BUILDERS:
                problems.append(f"{where}: model_type '{b.model_type}' is not supported by NEURON "
                                f"(use one of: {', '.join(sorted(BUILDERS))})")
            elif b.model_type == "biophysical":
                from sonatarun.engines.neuron.cells.biophysical import check_batch

                problems.extend(check_batch(b, components))
            elif b.model_type in ("point_process", "point_neuron"):
                kind, _, name = (b.model_template or "").partition(":")
                if kind != "nrn" or not name:
                    problems.append(f"{where}: unknown model_template '{b.model_template}' "
                                    f"(use nrn:<ArtificialCell>, e.g. nrn:IntFire1)")
                elif not hasattr(h, name):
                    from sonatarun.engines.neuron.coreneuron import excluded_note

                    problems.append(f"{where}: unknown model_template '{b.model_template}': NEURON has no "
                                    f"'{name}'{excluded_note([name])} (load the mechanism that defines it via "
                                    f"components.mechanisms_dir)")
        return problems

    # -- model ---------------------------------------------------------------
    def build_cells(self, batches: list[CellBatch]) -> None:
        rank = int(self.pc.id())
        for batch in batches:
            if len(batch) == 0:
                continue
            for cell in builder_for(batch.model_type, population=batch.population).build(batch, self.settings):
                self.pc.set_gid2node(cell.gid, rank)
                nc = cell.spike_source(self.settings.spike_threshold)
                self.pc.cell(cell.gid, nc)
                self._keep.append(nc)
                self.cells[cell.gid] = cell
                if batch.model_type != "virtual":
                    self._recorded.append(cell.gid)
            if batch.model_type == "virtual":
                self._virtual_populations.add(batch.population)
        for names in self.comm.allgather(sorted(self._virtual_populations)):
            self._virtual_populations.update(names)

    def build_connections(self, batches: list[ConnectionBatch]) -> None:
        """Connect in BMTK's order (recurrent edge populations, then those fed by virtual nodes),
        after giving each detailed cell its synapse-placement draws for that order, so the same
        segments are chosen as in BMTK whatever order batches arrive in."""
        from sonatarun.engines.neuron.synapses import plan_placement

        batches = sorted(batches, key=lambda b: b.source_population in self._virtual_populations)
        plan_placement(batches, self.cells)
        for batch in batches:
            if len(batch) == 0:
                continue
            order = np.argsort(batch.target_gids, kind="stable")
            tg = batch.target_gids[order]
            bounds = np.flatnonzero(np.diff(tg)) + 1
            for rows in np.split(order, bounds):
                gid = int(batch.target_gids[rows[0]])
                self._keep.extend(self.cells[gid].connect(batch, rows, self.pc))

    def add_stimulus(self, stimulus: Any) -> None:
        if isinstance(stimulus, SpikeTrains):
            for gid, times in zip(stimulus.gids.tolist(), stimulus.times):
                cell = self.cells.get(gid)
                if cell is None or not hasattr(cell, "play"):
                    raise EngineError(f"input '{stimulus.name}' plays spikes into gid {gid}, which is not a "
                                      f"virtual node", key=f"inputs.{stimulus.name}.node_set",
                                      fix="point spike inputs at a node set of virtual nodes")
                cell.play(times)  # type: ignore[attr-defined]
            return
        try:
            from sonatarun.engines.neuron import stimuli
        except ImportError as exc:  # pragma: no cover - until clamps land
            raise EngineError(f"input '{getattr(stimulus, 'name', stimulus)}' is not supported by the NEURON "
                              f"engine yet") from exc
        self._keep.extend(stimuli.apply(stimulus, self.cells, self.settings))

    def add_probe(self, spec: ProbeSpec) -> Probe:
        try:
            from sonatarun.engines.neuron import probes
        except ImportError:
            return super().add_probe(spec)
        probe = probes.create(spec, self.cells, self.settings)
        self.probes.append(probe)
        return probe

    # -- time ----------------------------------------------------------------
    def prepare(self) -> None:
        h = self.h
        h.cvode.cache_efficient(1)  # as BMTK: contiguous state arrays, same numbers, faster (CoreNEURON needs it)
        if self.coreneuron:
            from sonatarun.engines.neuron import coreneuron

            coreneuron.enable()
        if self.settings.threads > 1:
            self.pc.nthread(self.settings.threads)  # each cell stays whole in one thread: same results
        self.pc.set_maxstep(10)
        for gid in self._recorded:
            self.pc.spike_record(gid, self._spike_t, self._spike_gid)
        h.t = self.settings.tstart
        h.finitialize(self.settings.v_init)
        if self.settings.tstart:
            h.t = self.settings.tstart

    def advance(self, t_stop: float) -> None:
        self.pc.psolve(t_stop)

    def drain_spikes(self) -> tuple[np.ndarray, np.ndarray]:
        gids = self._spike_gid.as_numpy().astype(np.int64)
        times = self._spike_t.as_numpy().copy()
        self._spike_gid.resize(0)
        self._spike_t.resize(0)
        return gids, times

    @property
    def time(self) -> float:
        return float(self.h.t)

    # -- checkpoints ---------------------------------------------------------
    def save_state(self, directory: Path) -> dict[str, Any]:
        """BBSaveState, one file per gid, so a restore may use another rank count.

        NEURON 9 writes ``bbss_out/tmp.<gid>.<rank>`` relative to the working directory; each rank
        then turns its own files into the ``in/tmp.<gid>`` form that ``restore_test`` reads
        (a count line, then the cell), in parallel: no serial merge.
        """
        h, rank = self.h, int(self.pc.id())
        cwd = os.getcwd()
        if rank == 0:
            (directory / "bbss_out").mkdir(parents=True, exist_ok=True)
            (directory / "in").mkdir(parents=True, exist_ok=True)
        self.pc.barrier()
        os.chdir(directory)
        try:
            h.BBSaveState().save_test()
        finally:
            os.chdir(cwd)
        self.pc.barrier()
        out, inn = directory / "bbss_out", directory / "in"
        suffix = f".{rank}"
        for f in out.iterdir():
            if f.name.startswith("tmp.") and f.name.endswith(suffix):
                gid = f.name.split(".")[1]
                (inn / f"tmp.{gid}").write_bytes(b"1\n" + f.read_bytes())
                f.unlink()
        self.pc.barrier()
        if rank == 0:
            os.replace(out / "tmp", inn / "tmp")
            out.rmdir()
        self.pc.barrier()
        return {"t": self.time, "gids": int(self.comm.allreduce_sum(len(self.cells)))}

    def restore_state(self, directory: Path, meta: dict[str, Any]) -> None:
        h = self.h
        n_gids = int(self.comm.allreduce_sum(len(self.cells)))
        if n_gids != int(meta.get("gids", n_gids)):
            raise EngineError(f"the checkpoint holds {meta['gids']} cells, this model {n_gids}", file=directory,
                              fix="resume with the config that wrote the checkpoint")
        cwd = os.getcwd()
        os.chdir(directory)
        try:
            h.BBSaveState().restore_test()
        finally:
            os.chdir(cwd)
        h.frecord_init()  # Vector.record restarts from the restored time
        steps = int(round((self.time - self.settings.tstart) / self.settings.dt))
        for probe in self.probes:
            resume = getattr(probe, "resume_at", None)
            if resume is not None:
                resume(steps)
        self.pc.barrier()

    def finish(self) -> None:
        self.pc.barrier()
