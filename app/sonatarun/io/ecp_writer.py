"""Extracellular potential (ECP) reports in BMTK BioNet's file layout, rank-aware and block-flushed.

Layout (what BMTK's ``EcpMod`` writes and ``bmtk.analyzer.ecp`` reads)::

    /  attrs magic = 0x0A7A, version = [0, 1]
    /ecp/data        float64 [n_times x n_channels], attrs units = "mV"
    /ecp/time        [tstart, tstop, dt], attrs units = "ms"
    /ecp/channel_id  0 .. n_channels-1 (BMTK numbers the electrode file's rows)

Each rank holds the potentials of its own cells; at every block the partial sums are
reduced onto rank 0 (``MPI_Reduce``, float64) and rank 0 writes the rows. The data are
n_channels wide, so moving them is cheap whatever the network size. As with the compartment
writer, the file is allocated at creation and closed at every :meth:`flush`, so it is a
complete HDF5 file between blocks, and :meth:`state` / :meth:`truncate` let a resumed run
rewrite from a checkpoint's row on.

:class:`EcpContributionsWriter` writes BMTK's ``contributions_dir``: one file per cell,
``<gid>.h5`` with ``/ecp/data`` [n_times x n_channels] (the cell's own potentials), each
written by the rank that owns the cell.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from sonatarun.errors import OutputError
from sonatarun.io.durable import fsync_path
from sonatarun.io.slab import create_fixed
from sonatarun.mpi import Comm

DATA_DTYPE = np.dtype(np.float64)
STATE_KIND = "ecp_report"
CONTRIB_STATE_KIND = "ecp_contributions"
MAGIC = np.uint32(0x0A7A)
VERSION = np.array([0, 1], dtype=np.uint32)


def n_times_of(tstart: float, tstop: float, dt: float) -> int:
    """Rows of a report over [tstart, tstop) at dt: BMTK's int(round(tstop / dt)) when tstart is 0."""
    return int(round((tstop - tstart) / dt))


def _create(path: Path, n_times: int, n_channels: int, tstart: float, tstop: float, dt: float,
            header: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", locking="best-effort") as f:
        if header:
            f.attrs["magic"] = MAGIC
            f.attrs["version"] = VERSION
        data = create_fixed(f.require_group("ecp"), "data", (n_times, n_channels), DATA_DTYPE)
        data.attrs["units"] = "mV"
        if header:
            t = f.create_dataset("ecp/time", data=np.array([tstart, tstop, dt], dtype=np.float64),
                                 track_times=False)
            t.attrs["units"] = "ms"
            f.create_dataset("ecp/channel_id", data=np.arange(n_channels, dtype=np.int64), track_times=False)


def _matches(path: Path, n_times: int, n_channels: int) -> bool:
    try:
        with h5py.File(path, "r", locking="best-effort") as f:
            return f["ecp/data"].shape == (n_times, n_channels)
    except (OSError, KeyError):
        return False


class EcpReportWriter:
    """One ECP report file; every method is collective over ``comm``."""

    def __init__(self, h5_path: Path | str, comm: Comm, n_channels: int, tstart: float, tstop: float,
                 dt: float) -> None:
        self.h5_path = Path(h5_path)
        self.comm = comm
        self.n_channels = int(n_channels)
        self.tstart, self.tstop, self.dt = float(tstart), float(tstop), float(dt)
        self.n_times = n_times_of(self.tstart, self.tstop, self.dt)
        self._rows = 0
        self._created = False
        self._file: h5py.File | None = None

    @property
    def path(self) -> Path:
        return self.h5_path

    def _open(self) -> None:
        if self.comm.rank != 0 or self._file is not None:
            return
        if not self._created:
            _create(self.h5_path, self.n_times, self.n_channels, self.tstart, self.tstop, self.dt, header=True)
        self._file = h5py.File(self.h5_path, "r+", locking="best-effort")

    def write_block(self, data: np.ndarray) -> None:
        """Add up every rank's ``data`` [n_t x n_channels] and write it as the next n_t rows."""
        data = np.ascontiguousarray(data, dtype=DATA_DTYPE)
        if data.ndim != 2 or data.shape[1] != self.n_channels:
            raise ValueError(f"ECP report {self.h5_path.name}: block has shape {data.shape}, expected "
                             f"(n_t, {self.n_channels})")
        n_t = data.shape[0]
        if self.comm.size > 1:
            all_n = self.comm.allgather(n_t)
            if len(set(all_n)) != 1:
                raise ValueError(f"ECP report {self.h5_path.name}: ranks passed blocks of {all_n} rows")
        if self._rows + n_t > self.n_times:
            raise ValueError(f"ECP report {self.h5_path.name}: {self._rows + n_t} rows exceed the "
                             f"{self.n_times} time steps of [{self.tstart}, {self.tstop}) at dt={self.dt}")
        total = data
        if self.comm.size > 1 and self.comm.mpi is not None:
            from mpi4py import MPI

            total = np.empty_like(data) if self.comm.rank == 0 else None
            self.comm.mpi.Reduce([data, MPI.DOUBLE], [total, MPI.DOUBLE] if total is not None else None,
                                 op=MPI.SUM, root=0)
        if self.comm.rank == 0:
            self._open()
            if n_t:
                self._file["ecp/data"][self._rows:self._rows + n_t] = total
        self._created = True
        self._rows += n_t

    def flush(self, sync: bool = False) -> None:
        """End of block: close the file so it is complete on disk; ``sync`` also fsyncs (checkpoints)."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if sync:
            fsync_path(self.h5_path)

    def state(self) -> dict:
        return {"kind": STATE_KIND, "path": str(self.h5_path), "rows": self._rows, "n_times": self.n_times,
                "n_channels": self.n_channels}

    def truncate(self, state: dict) -> None:
        """Resume after ``state``: keep the file, rewrite from row ``state['rows']`` on."""
        if state.get("kind") != STATE_KIND or state.get("n_times") != self.n_times \
                or state.get("n_channels") != self.n_channels:
            raise OutputError("checkpoint does not match this ECP report (different time range or electrodes)",
                              file=self.h5_path, fix="resume with the same config, or run without --resume")
        ok = _matches(self.h5_path, self.n_times, self.n_channels) if self.comm.rank == 0 else True
        if not self.comm.bcast(ok):
            raise OutputError("ECP report file is missing or does not match the checkpoint", file=self.h5_path,
                              fix="run without --resume")
        self.flush()
        self._rows = int(state["rows"])
        self._created = True

    def close(self) -> None:
        """Finish the file (created even when no row was ever written)."""
        if self.comm.rank == 0 and not self._created:
            self._open()
        self._created = True
        self.flush()


class EcpContributionsWriter:
    """Per-cell ECP files ``<directory>/<gid>.h5``, each written by the rank owning the cell."""

    def __init__(self, directory: Path | str, comm: Comm, gids: np.ndarray, n_channels: int, tstart: float,
                 tstop: float, dt: float) -> None:
        self.directory = Path(directory)
        self.comm = comm
        self.gids = np.asarray(gids, dtype=np.int64).reshape(-1)
        self.n_channels = int(n_channels)
        self.tstart, self.tstop, self.dt = float(tstart), float(tstop), float(dt)
        self.n_times = n_times_of(self.tstart, self.tstop, self.dt)
        self.n_cells = int(comm.allreduce_sum(len(self.gids)))
        self._rows = 0
        self._created = False

    @property
    def path(self) -> Path:
        return self.directory

    def _file_of(self, gid: int) -> Path:
        return self.directory / f"{int(gid)}.h5"

    def _create_all(self) -> None:
        if self.comm.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.comm.barrier()
        for gid in self.gids.tolist():
            _create(self._file_of(gid), self.n_times, self.n_channels, self.tstart, self.tstop, self.dt,
                    header=False)
        self._created = True

    def write_block(self, data: np.ndarray) -> None:
        """``data`` [n_t x (local cells * n_channels)]: this rank's cells, in ``gids`` order."""
        data = np.asarray(data, dtype=DATA_DTYPE)
        if data.ndim != 2 or data.shape[1] != len(self.gids) * self.n_channels:
            raise ValueError(f"ECP contributions: block has shape {data.shape}, expected "
                             f"(n_t, {len(self.gids) * self.n_channels})")
        n_t = data.shape[0]
        if self._rows + n_t > self.n_times:
            raise ValueError(f"ECP contributions: {self._rows + n_t} rows exceed the {self.n_times} time steps")
        if not self._created:
            self._create_all()
        if n_t:
            for j, gid in enumerate(self.gids.tolist()):
                with h5py.File(self._file_of(gid), "r+", locking="best-effort") as f:
                    f["ecp/data"][self._rows:self._rows + n_t] = data[:, j * self.n_channels:(j + 1) * self.n_channels]
        self._rows += n_t

    def flush(self, sync: bool = False) -> None:
        """Files are closed after every block already; ``sync`` fsyncs this rank's files (checkpoints)."""
        if sync and self._created:
            for gid in self.gids.tolist():
                fsync_path(self._file_of(gid))

    def state(self) -> dict:
        return {"kind": CONTRIB_STATE_KIND, "path": str(self.directory), "rows": self._rows,
                "n_times": self.n_times, "n_channels": self.n_channels, "n_cells": self.n_cells}

    def truncate(self, state: dict) -> None:
        """Resume after ``state``: every cell's file must be there (whichever rank wrote it)."""
        if state.get("kind") != CONTRIB_STATE_KIND or state.get("n_times") != self.n_times \
                or state.get("n_channels") != self.n_channels or state.get("n_cells") != self.n_cells:
            raise OutputError("checkpoint does not match this report's contributions (cells or electrodes changed)",
                              file=self.directory, fix="resume with the same config, or run without --resume")
        ok = all(_matches(self._file_of(g), self.n_times, self.n_channels) for g in self.gids.tolist())
        if not all(self.comm.allgather(ok)):
            raise OutputError("a per-cell ECP contribution file is missing or does not match the checkpoint",
                              file=self.directory, fix="run without --resume")
        self._rows = int(state["rows"])
        self._created = True

    def close(self) -> None:
        if not self._created:
            self._create_all()
