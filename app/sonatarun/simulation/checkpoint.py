"""Checkpoints at block ends: engine state, writer offsets, written atomically.

Layout of ``output_dir/checkpoint/``::

    latest.json         -> {"name": "t0000500.000000", ...}   (replaced atomically, last)
    t0000500.000000/    one complete checkpoint
        meta.json       time, block, rank count, config fingerprint, each writer's state
        engine/         whatever the engine saves (NEURON: BBSaveState per-gid files)

A checkpoint is first written to ``<name>.tmp-<pid>/``, every file fsynced, the directory
renamed into place, and only then ``latest.json`` replaced: a run killed at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonatarun.errors import OutputError
from sonatarun.io.durable import fsync_path, replace_durably
from sonatarun.mpi import Comm

EXIT_CHECKPOINTED = 75  # EX_TEMPFAIL: "try again" — what a batch script requeues on
SCHEDULER_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "FLUX_JOB_ID")
DEFAULT_WALL_INTERVAL = 600.0  # under a batch scheduler with no interval given: every ~10 min of wall time


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    replace_durably(tmp, path)


def fingerprint(config_raw: dict[str, Any]) -> str:
    """What must not change between a checkpoint and its resume (the model and the time grid)."""
    keep = {k: config_raw.get(k) for k in ("networks", "components", "inputs", "reports", "conditions",
                                           "target_simulator", "node_sets")}
    run = dict(config_raw.get("run", {}) or {})
    keep["run"] = {k: run.get(k) for k in ("tstart", "dt", "dL", "spike_threshold", "nsteps_block", "block_size")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class CheckpointPolicy:
    """When to checkpoint: every `interval_ms` of simulated time and/or `wall_seconds` of wall time."""

    interval_ms: float | None = None
    wall_seconds: float | None = None
    _last_t: float = 0.0
    _last_wall: float = field(default_factory=time.monotonic)

    @classmethod
    def choose(cls, interval_ms: float | None, tstart: float) -> "CheckpointPolicy":
        if interval_ms is not None and interval_ms > 0:
            return cls(interval_ms=interval_ms, _last_t=tstart)
        if interval_ms is None and any(v in os.environ for v in SCHEDULER_VARS):
            return cls(wall_seconds=DEFAULT_WALL_INTERVAL, _last_t=tstart)
        return cls(_last_t=tstart)

    @property
    def enabled(self) -> bool:
        return bool(self.interval_ms) or bool(self.wall_seconds)

    def due(self, t: float) -> bool:
        if self.interval_ms and t - self._last_t >= self.interval_ms - 1e-9:
            return True
        return bool(self.wall_seconds) and time.monotonic() - self._last_wall >= self.wall_seconds  # type: ignore[operator]

    def done(self, t: float) -> None:
        self._last_t, self._last_wall = t, time.monotonic()


class StopRequest:
    """SIGUSR1/SIGTERM (a scheduler's warning before walltime or preemption) -> stop at the block end.

    The handler only sets a flag: the block in flight finishes natively, then all ranks
    agree (any rank signalled means all stop), checkpoint and exit 75.
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, prev in self._previous.items():
            signal.signal(s, prev)

    def agreed(self, comm: Comm) -> int:
        """The signal number if any rank was signalled (collective), else 0."""
        return int(comm.allreduce_max(self.signum or 0))


class CheckpointStore:
    def __init__(self, output_dir: Path, comm: Comm) -> None:
        self.root = output_dir / "checkpoint"
        self.comm = comm

    def clear(self) -> None:
        """A fresh run must not leave an older run's checkpoint for a later --resume to pick up."""
        if self.comm.is_root and self.root.exists():
            shutil.rmtree(self.root)
        self.comm.barrier()

    def save(self, t: float, block: int, engine, writers: list, fprint: str, save_engine=None) -> Path:
        """Write a checkpoint; `save_engine(directory) -> meta` defaults to the engine's own save_state."""
        name = f"t{t:016.6f}"
        final = self.root / name
        tmp = self.root / f"{name}.tmp-{os.getpid() if self.comm.is_root else 0}"
        tmp = Path(self.comm.bcast(str(tmp)))
        if self.comm.is_root:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "engine").mkdir(parents=True)
        self.comm.barrier()
        engine_meta = (save_engine or engine.save_state)(tmp / "engine")
        states = [w.state() for w in writers]  # writers were flushed at this block end
        self.comm.barrier()
        fsync_tree(tmp)  # each rank syncs what it wrote (and a little more: cheap)
        self.comm.barrier()
        if self.comm.is_root:
            write_json_atomic(tmp / "meta.json", {
                "t": t, "block": block, "ranks": self.comm.size, "fingerprint": fprint,
                "engine": engine.name, "engine_meta": engine_meta, "writers": states,
                "written_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            })
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            write_json_atomic(self.root / "latest.json", {"name": name, "t": t})
            for old in self.root.iterdir():  # keep only the newest complete checkpoint
                if old.is_dir() and old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
        self.comm.barrier()
        return final

    def latest(self) -> tuple[Path, dict[str, Any]]:
        pointer = self.root / "latest.json"
        if not pointer.exists():
            raise OutputError("no complete checkpoint to resume from", file=self.root.parent,
                              fix="run without --resume (checkpoints are written with --checkpoint-interval, "
                                  "under a batch scheduler, or on SIGUSR1/SIGTERM)")
        name = json.loads(pointer.read_text())["name"]
        directory = self.root / name
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise OutputError(f"checkpoint {name} is incomplete", file=directory, fix="run without --resume")
        return directory, json.loads(meta_path.read_text())
