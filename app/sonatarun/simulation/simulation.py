"""The public entry point: ``Simulation.from_config(path).run()``.

Everything a run needs is checked before anything is written (config, circuit,
inputs, reports), so bad input never touches an existing output directory. The
run itself is a loop over blocks: the engine integrates natively, then spikes and
reports are drained, written and flushed at each block end.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.circuit import Circuit
from sonatarun.config import SimulationConfig
from sonatarun.engines import registry as engines
from sonatarun.engines.base import CellBatch, ConnectionBatch, ProbeSpec, RunSettings
from sonatarun.inputs import registry as inputs
from sonatarun.mpi import Comm, world
from sonatarun.reports import registry as reports
from sonatarun.errors import Interrupted, OutputError
from sonatarun.simulation.checkpoint import CheckpointPolicy, CheckpointStore, StopRequest, fingerprint
from sonatarun.simulation.context import BuildContext
from sonatarun.simulation.network import (ParamFiles, cell_batches, choose_engine, connection_batches,
                                         edge_chunk_size)
from sonatarun.simulation.output import OutputLock, check_output_dir, setup_logging, write_run_record
from sonatarun.util.memory import memory_summary


@dataclass
class RunOptions:
    """Command-line overrides of the config."""

    output_dir: Path | None = None
    resume: bool = False
    checkpoint_interval: float | None = None
    threads: int | None = None
    debug: bool = False
    coreneuron: bool | None = None  # None: the config's run.coreneuron


@dataclass
class RunResult:
    output_dir: Path
    spikes_file: Path | None
    n_spikes: int
    wall_seconds: float
    phases: dict[str, float] = field(default_factory=dict)


class Simulation:
    def __init__(self, config: SimulationConfig, options: RunOptions | None = None, comm: Comm | None = None) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.comm = comm or world()
        self.circuit = Circuit.open(config.nodes, config.edges)
        self.engine_name = choose_engine(config, self.circuit)
        engine_cls = engines.get(self.engine_name)  # unknown simulator fails here, before any work
        self.output_dir = Path(self.options.output_dir).absolute() if self.options.output_dir else \
            config.output.output_dir.absolute()
        self.ctx = BuildContext(config, self.circuit, self.comm.rank, self.comm.size, self.output_dir,
                                whole=engine_cls.places_cells)
        self._plan: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, path: str | Path, **options: Any) -> "Simulation":
        """Load a SONATA simulation config (BMTK dialect) and its circuit."""
        return cls(SimulationConfig.from_file(path), RunOptions(**options))

    # -- planning ------------------------------------------------------------
    def settings(self) -> RunSettings:
        run = self.config.run
        engine_options = dict(run.engine_options)
        if self.options.coreneuron is not None:
            engine_options["coreneuron"] = self.options.coreneuron
        return RunSettings(tstart=run.tstart, tstop=run.tstop, dt=run.dt, spike_threshold=run.spike_threshold,
                           dL=run.dL, celsius=self.config.celsius, v_init=self.config.v_init,
                           nsteps_block=run.nsteps_block, threads=self.options.threads or run.threads or 1,
                           seed=run.seed, components=dict(self.config.components),
                           quiet=self.config.output.quiet_simulator, engine_options=engine_options)

    def plan(self, *, stream: bool = True) -> dict[str, Any]:
        """Rank-local cells, connections, stimuli and probes; raises on any bad input. With an engine
        that streams edges (``stream``), large populations come as EdgeChunks whose remaining
        columns are read during the build (their targets and types are checked here)."""
        if self._plan is None:
            params = ParamFiles(self.config)
            owned = self.ctx.owned
            from functools import partial

            from sonatarun.weights import apply_weight_functions

            cells = cell_batches(self.config, self.circuit, owned, params)
            targets_here = engines.get(self.engine_name).edge_targets_here(
                cells, self.comm.rank, self.comm.size, int(self.settings().threads or 1)) if self.ctx.whole else None
            chunk = edge_chunk_size() if stream and engines.get(self.engine_name).streams_edges else None
            conns = connection_batches(self.config, self.circuit, targets_here or owned, params,
                                       weight_fn=partial(apply_weight_functions, self.config, self.circuit),
                                       chunk_edges=chunk)
            stimuli: list[Any] = []
            src = self.config.source_of("inputs")
            for name, cfg in self.config.inputs.items():
                stimuli.extend(inputs.builder(name, cfg, file=src)(name, cfg, self.ctx))
            probes: list[tuple[dict[str, Any], ProbeSpec]] = []
            rsrc = self.config.source_of("reports")
            for name, cfg in self.config.reports.items():
                build = reports.builder(name, cfg, file=rsrc)
                if build is not None:
                    probes.extend((cfg, spec) for spec in build(name, cfg, self.ctx))
            self._plan = {"cells": cells, "connections": conns, "stimuli": stimuli, "probes": probes}
        return self._plan

    def check_engine(self, plan: dict[str, Any]) -> None:
        """Ask the engine whether it can build this plan (templates, mechanisms) before any write."""
        check = getattr(engines.get(self.engine_name), "check_plan", None)
        extra = {"coreneuron": True} if self.uses_coreneuron() else {}
        problems = check(plan, self.config.components, **extra) if check else []
        if problems:
            from sonatarun.errors import EngineError

            more = f" (and {len(problems) - 1} more problem(s): run `sonatarun validate`)" if len(problems) > 1 else ""
            raise EngineError(problems[0] + more, file=self.config.source_of("networks"))

    def uses_coreneuron(self) -> bool:
        """``--coreneuron`` / ``run.coreneuron``, checked against what CoreNEURON runs cannot do."""
        if not self.settings().engine_options.get("coreneuron"):
            return False
        from sonatarun.errors import InputError

        if self.engine_name != "neuron":
            raise InputError(f"--coreneuron needs the NEURON engine; this model runs on {self.engine_name}",
                             key="--coreneuron", fix="drop --coreneuron (and run.coreneuron)")
        fix = "run without --coreneuron (and run.coreneuron) to use checkpoints"
        if self.options.resume:
            raise InputError("--resume cannot be used with --coreneuron: CoreNEURON runs do not save or "
                             "restore checkpoints", key="--resume", fix=fix + ", or start again without --resume")
        if self.options.checkpoint_interval:
            raise InputError("--checkpoint-interval cannot be used with --coreneuron: CoreNEURON runs do not "
                             "save checkpoints", key="--checkpoint-interval", fix=fix)
        if self.options.checkpoint_interval is None and self.config.run.checkpoint_interval:
            raise InputError("run.checkpoint_interval cannot be used with --coreneuron: CoreNEURON runs do not "
                             "save checkpoints", key="run.checkpoint_interval", file=self.config.source_of("run"),
                             fix=fix + ", or remove the key")
        return True

    def summary(self) -> dict[str, Any]:
        """What `sonatarun validate` prints: the model as sonatarun understands it."""
        pops = []
        for name, pop in self.circuit.nodes.items():
            types = {}
            if "model_type" in pop.columns:
                kinds, counts = np.unique(pop.columns["model_type"].astype(str), return_counts=True)
                types = {str(k): int(c) for k, c in sorted(zip(kinds, counts), key=lambda kc: -kc[1])}
            pops.append({"name": name, "nodes": pop.size, "model_types": types})
        edges = [{"name": e.name, "source": e.source_population, "target": e.target_population, "edges": e.size}
                 for e in self.circuit.edges]
        return {
            "config": str(self.config.path), "engine": self.engine_name, "populations": pops, "edges": edges,
            "inputs": {k: f"{v.get('input_type')}/{v.get('module')}" for k, v in self.config.inputs.items()},
            "reports": {k: v.get("module") for k, v in self.config.reports.items()},
            "run": {"tstart": self.config.run.tstart, "tstop": self.config.run.tstop, "dt": self.config.run.dt,
                    "nsteps_block": self.config.run.nsteps_block},
            "output_dir": str(self.output_dir), "warnings": list(self.config.warnings),
        }

    # -- running -------------------------------------------------------------
    def run(self) -> RunResult:
        t_all = time.perf_counter()
        cfg, comm = self.config, self.comm
        phases: dict[str, float] = {}
        # every input check happens before the output dir is touched, except what only the rest of
        # a streamed chunk's columns show (read during the build, before any output file is opened)
        plan = self.plan()
        self.check_engine(plan)
        check_output_dir(self.output_dir, cfg.output.overwrite_output_dir, resume=self.options.resume)
        comm.barrier()
        lock = OutputLock(self.output_dir)
        if comm.is_root:
            lock.acquire()
        comm.barrier()
        try:
            log = setup_logging(cfg.output.in_dir(cfg.output.log_file, self.output_dir), cfg.output.log_to_console,
                                cfg.output.log_level, comm.rank, debug=self.options.debug)
            for w in cfg.warnings:
                log.warning(w)
            log.info("sonatarun: %s on %s, %d rank(s), %d cells, tstop %.6g ms", cfg.path.name, self.engine_name,
                     comm.size, self.circuit.n_cells, cfg.run.tstop)
            return self._run(plan, log, phases, t_all)
        finally:
            if comm.is_root:
                lock.release()

    def _run(self, plan: dict[str, Any], log: logging.Logger, phases: dict[str, float], t_all: float) -> RunResult:
        cfg, comm = self.config, self.comm
        settings = self.settings()
        t0 = time.perf_counter()
        engine = engines.get(self.engine_name)(settings, comm, log)
        engine.build_cells(plan["cells"])
        engine.build_connections(plan["connections"])
        for stim in plan["stimuli"]:
            engine.add_stimulus(stim)
        probes = [(rcfg, spec, engine.add_probe(spec)) for rcfg, spec in plan["probes"]]
        phases["build"] = time.perf_counter() - t0
        where = f"placed by {self.engine_name} on {comm.size} ranks" if self.ctx.whole and comm.size > 1 else "local"
        log.info("built %d cells and %d connections (%s) in %.2f s", sum(len(b) for b in plan["cells"]),
                 sum(len(b) for b in plan["connections"]), where, phases["build"])

        from sonatarun.io.spike_writer import SpikeWriter

        spikes_h5 = cfg.output.in_dir(cfg.output.spikes_file, self.output_dir)
        spikes_csv = cfg.output.in_dir(cfg.output.spikes_file_csv, self.output_dir)
        pop_names = self.circuit.population_names
        spiking = [p for p in pop_names if self.circuit.has_cells(p)]
        spike_writer = SpikeWriter(spikes_h5, comm, spiking, cfg.output.spikes_sort_order, spikes_csv)
        report_writers = self._report_writers(probes)
        writers = [spike_writer] + [w for ws in report_writers for w in ws.values()]
        engine.prepare()
        store = CheckpointStore(self.output_dir, comm)
        interval = self.options.checkpoint_interval
        if interval is None:
            interval = cfg.run.checkpoint_interval
        policy = CheckpointPolicy.choose(interval, settings.tstart)
        if policy.enabled and settings.engine_options.get("coreneuron"):  # only the scheduler default gets here
            if comm.is_root:
                log.warning("no automatic checkpoints under the batch scheduler: CoreNEURON runs (--coreneuron) "
                            "cannot save them; a stopped job starts again from t = 0")
            policy = CheckpointPolicy.choose(0, settings.tstart)
        fprint = fingerprint(cfg.raw)
        t, block, n_spikes = settings.tstart, 0, 0
        if self.options.resume:
            t, block = self._restore(store, engine, writers, [p for _, _, p in probes], fprint, log)
            policy.done(t)
        else:
            store.clear()
        if policy.enabled and comm.is_root:
            log.info("checkpoints every %s", f"{policy.interval_ms:g} ms" if policy.interval_ms else
                     f"{policy.wall_seconds:g} s of wall time (batch scheduler)")

        t_sim = time.perf_counter()
        t_begin = t
        span = settings.tstop - t_begin
        with StopRequest() as stop:
            while t < settings.tstop - 1e-9:
                t_next = min(settings.tstart + (block + 1) * settings.block_ms, settings.tstop)
                engine.advance(t_next)
                gids, times = engine.drain_spikes()
                n_spikes += len(gids)
                pop_idx, node_ids = self.circuit.population_of_gids(gids)
                for i, name in enumerate(pop_names):
                    if name not in spiking:
                        continue
                    sel = pop_idx == i
                    spike_writer.append(name, node_ids[sel], times[sel])
                spike_writer.flush()
                for (_, _, probe), writer in zip(probes, report_writers):
                    data = probe.drain()
                    for var, w in writer.items():
                        w.write_block(data[var])
                        w.flush()
                t, block = t_next, block + 1
                if comm.is_root:
                    wall = time.perf_counter() - t_sim
                    done = (t - t_begin) / span
                    eta = wall / done * (1 - done) if done > 0 else 0.0
                    log.info("t = %.6g / %.6g ms (%3.0f%%), wall %.1f s, ~%.1f s left", t, settings.tstop,
                             100 * (t - settings.tstart) / (settings.tstop - settings.tstart), wall, eta)
                signum = stop.agreed(comm)
                if t < settings.tstop - 1e-9 and (signum or policy.due(t)):
                    for w in writers:
                        w.flush(sync=True)
                    t_ck = time.perf_counter()
                    path = store.save(t, block, engine, writers, fprint, save_engine=self._engine_saver(engine))
                    policy.done(t)
                    phases["checkpoint"] = phases.get("checkpoint", 0.0) + time.perf_counter() - t_ck
                    log.info("checkpoint at t = %.6g ms written in %.2f s (%s)", t, time.perf_counter() - t_ck, path)
                    if signum:
                        raise Interrupted(
                            f"stopped by {signal.Signals(signum).name} at t = {t:.6g} ms; checkpoint written",
                            file=self.output_dir, fix="run the same command with --resume to continue")
        phases["simulate"] = time.perf_counter() - t_sim
        t_fin = time.perf_counter()
        spike_writer.close()
        for writer in report_writers:
            for w in writer.values():
                w.close()
        engine.finish()
        phases["finalize"] = time.perf_counter() - t_fin
        total = comm.allreduce_sum(n_spikes)
        memory = memory_summary()
        by_rank = comm.gather(memory["peak_rss_mb"]) if comm.size > 1 else None  # collective
        if by_rank:
            memory["peak_rss_mb_by_rank"] = by_rank  # the node's total, when the ranks share one
        wall = time.perf_counter() - t_all
        if comm.is_root:
            write_run_record(self.output_dir, {
                "config": str(cfg.path), "engine": self.engine_name, "ranks": comm.size,
                "threads": settings.threads, "tstart": settings.tstart, "tstop": settings.tstop, "dt": settings.dt,
                "n_cells": self.circuit.n_cells, "n_spikes": int(total), "wall_seconds": wall, "phases": phases,
                "engine_stats": dict(engine.stats), "memory": memory,
                "spikes_file": str(spikes_h5) if spikes_h5 else None,
                "reports": [str(w.path) for ws in report_writers for w in ws.values()],
            })
        log.info("done: %d spikes in %.2f s (build %.2f s, simulate %.2f s, write %.2f s); outputs in %s", total,
                 wall, phases["build"], phases["simulate"], phases["finalize"], self.output_dir)
        return RunResult(self.output_dir, spikes_h5, total, wall, phases)

    def _restore(self, store: CheckpointStore, engine, writers: list, probes: list, fprint: str,
                 log: logging.Logger) -> tuple[float, int]:
        directory, meta = store.latest()
        if meta.get("fingerprint") != fprint:
            raise OutputError("the checkpoint was written for a different model or time grid", file=directory,
                              fix="resume with the config that wrote it, or run without --resume")
        if meta.get("engine") != engine.name:
            raise OutputError(f"the checkpoint was written by the {meta.get('engine')} engine", file=directory,
                              fix="resume with the same target_simulator")
        if len(meta.get("writers", [])) != len(writers):
            raise OutputError("the checkpoint's outputs do not match this run's (reports changed?)", file=directory,
                              fix="resume with the config that wrote it")
        t, block = float(meta["t"]), int(meta["block"])
        engine_meta = meta.get("engine_meta", {})
        if engine_meta.get("replay"):
            self._replay(engine, probes, engine_meta, t, block, directory, log)
        else:
            engine.restore_state(directory / "engine", engine_meta)
        for w, state in zip(writers, meta["writers"]):
            w.truncate(state)
        log.info("resumed from the checkpoint at t = %.6g ms (written by %d rank(s), now %d)", t, meta["ranks"],
                 self.comm.size)
        return t, block

    def _engine_saver(self, engine):
        """Native state save when the engine has one; else a replay record (see `_replay`)."""
        if engine.supports_checkpoints:
            return None
        settings = self.settings()
        return lambda directory: {"replay": True, "threads": settings.threads, "seed": settings.seed,
                                  "ranks": self.comm.size}

    def _replay(self, engine, probes: list, meta: dict[str, Any], t: float, block: int, directory: Path,
                log: logging.Logger) -> None:
        """Resume an engine that cannot save its state (NEST) by simulating again up to `t`.

        The simulation is deterministic for the same seed, thread and rank count, and the
        replay advances through the same block ends, so the state at `t` is the state the
        interrupted run had; nothing is written while replaying. Anything that would make
        the replay differ is refused rather than allowed to diverge silently.
        """
        settings = self.settings()
        now = {"threads": settings.threads, "seed": settings.seed, "ranks": self.comm.size}
        for key, value in now.items():
            if meta.get(key) != value:
                raise OutputError(f"the checkpoint was written with {key} = {meta.get(key)}, this run has {value}; "
                                  f"the {engine.name} engine resumes by replaying, which is exact only for the "
                                  f"same {key}", file=directory, fix=f"resume with the same {key}")
        log.info("the %s engine cannot save its state: replaying 0..%.6g ms (deterministic: same seed, threads "
                 "and ranks) before resuming; outputs are not rewritten", engine.name, t)
        for k in range(block):
            engine.advance(min(settings.tstart + (k + 1) * settings.block_ms, settings.tstop))
            engine.drain_spikes()
            for probe in probes:
                probe.drain()

    def _report_writers(self, probes) -> list[dict[str, Any]]:
        if not probes:
            return []
        from sonatarun.io.report_writer import CompartmentReportWriter

        out = []
        for rcfg, spec, probe in probes:
            own = reports.writers_for(spec.kind)
            if own is not None:  # a report with its own file layout (extracellular)
                out.append(own(spec, probe, self.comm))
                continue
            writers = {}
            for var in spec.variables:
                base = rcfg.get("file_name") or f"{spec.name}.h5"
                if len(spec.variables) > 1:
                    base = f"{Path(base).stem}_{var}.h5"
                path = Path(base) if Path(base).is_absolute() else self.output_dir / base
                start = spec.start_time if spec.start_time is not None else self.config.run.tstart
                stop = spec.end_time if spec.end_time is not None else self.config.run.tstop
                writers[var] = CompartmentReportWriter(
                    path, self.comm, spec.population, probe.node_ids, probe.counts, probe.element_ids,
                    probe.element_pos, start, stop, probe.dt, var, probe.units)
            out.append(writers)
        return out
