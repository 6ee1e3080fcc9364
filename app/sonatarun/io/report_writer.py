"""SONATA compartment (membrane / synapse) report writer, rank-aware and block-flushed.

Layout (``/report/<population>/``): ``data`` [n_times × n_elements] float32 (libsonata
reads only float32; BMTK reads either), ``mapping/{node_ids, element_ids, element_pos,
index_pointer, time}`` with ``index_pointers`` a hard link to ``index_pointer`` (BMTK and
libsonata spell it differently; a link costs no bytes).

Columns follow global node-id order, whichever rank owns a cell. A block is moved in time
slices: the rows of a slice are split among the *writer ranks* (every rank on the parallel
path, rank 0 on the serial path), each writer receives every rank's columns for its rows
straight into their global positions (point-to-point with one MPI datatype per source, so
MPI's copy is the placement), places its own columns with numpy and writes one contiguous
row range of the file. Per-writer memory is bounded by ``max_chunk_bytes`` whatever the block size,
and nothing ever holds more than one slice of the run.

The file is created at the first write and closed at every :meth:`flush`, so between
blocks it is a complete, closed HDF5 file; ``data`` is allocated at creation so block
writes never change metadata, and a kill in the middle of a block leaves it readable.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sonatarun.errors import OutputError
from sonatarun.io import exchange
from sonatarun.io.durable import fsync_path
from sonatarun.io.h5path import PARALLEL, choose_io_path, open_h5
from sonatarun.io.slab import create_fixed, write_rows
from sonatarun.mpi import Comm

DATA_DTYPE = np.dtype(np.float32)
STATE_KIND = "compartment_report"


def n_times_of(tstart: float, tstop: float, dt: float) -> int:
    """Rows in a report: time is right-open, so round((tstop - tstart) / dt)."""
    return int(round((tstop - tstart) / dt))


_TAG = 0x5A7A  # report block messages (point-to-point, matched in order per pair)
MAX_RUNS = 512  # beyond this many column runs, one numpy gather beats a loop of slice copies


@dataclass
class _Placement:
    """Where one source rank's columns go in the global row: runs of contiguous columns."""

    cols: np.ndarray  # global column of each of the source's columns
    n_elements: int

    def __post_init__(self) -> None:
        c = self.cols
        self.n_cols = len(c)
        breaks = np.flatnonzero(np.diff(c) != 1) + 1 if len(c) else np.zeros(0, np.int64)
        starts = np.concatenate(([0], breaks)).astype(np.int64) if len(c) else breaks
        lengths = np.diff(np.concatenate((starts, [len(c)]))) if len(c) else breaks
        self.identity = len(c) == self.n_elements and len(starts) == 1 and (len(c) == 0 or c[0] == 0)
        self.run_dst = c[starts].astype(np.int64) if len(c) else np.zeros(0, np.int64)
        self.run_lengths = np.asarray(lengths, dtype=np.int64)
        self.runs = [(int(a), int(c[a]), int(m)) for a, m in zip(starts, lengths)] \
            if len(starts) <= MAX_RUNS else None

    def scatter(self, block: np.ndarray, out: np.ndarray) -> None:
        if self.runs is not None:
            for a, d, m in self.runs:
                out[:, d:d + m] = block[:, a:a + m]
        else:
            out[:, self.cols] = block


@dataclass
class _Layout:
    """Where this rank's columns go, and (on writers) where every rank's columns go."""

    n_elements: int
    n_cells: int
    cols_by_rank: list[np.ndarray] | None  # global column of each local column, per source rank

    def __post_init__(self) -> None:
        self.placements = [_Placement(c, self.n_elements) for c in (self.cols_by_rank or [])]


class CompartmentReportWriter:
    """Write one population of one report; every method is collective over ``comm``."""

    def __init__(self, h5_path: Path | str, comm: Comm, population: str, node_ids: np.ndarray,
                 counts: np.ndarray, element_ids: np.ndarray, element_pos: np.ndarray, tstart: float,
                 tstop: float, dt: float, variable: str, units: str, *,
                 max_chunk_bytes: int = 64 << 20) -> None:
        self.h5_path = Path(h5_path)
        self.comm = comm
        self.population = population
        self.variable, self.units = variable, units
        self.tstart, self.tstop, self.dt = float(tstart), float(tstop), float(dt)
        self.n_times = n_times_of(self.tstart, self.tstop, self.dt)
        self.io_path = choose_io_path(comm)
        self._node_ids = np.asarray(node_ids, dtype=np.uint64).reshape(-1)
        self._counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        self._element_ids = np.asarray(element_ids, dtype=np.uint32).reshape(-1)
        self._element_pos = np.asarray(element_pos, dtype=np.float64).reshape(-1)
        n_local = int(self._counts.sum())
        if len(self._node_ids) != len(self._counts) or n_local != len(self._element_ids) \
                or n_local != len(self._element_pos):
            raise ValueError(f"report {self.h5_path.name}: node_ids ({len(self._node_ids)}), counts "
                             f"(sum {n_local}), element_ids ({len(self._element_ids)}) and element_pos "
                             f"({len(self._element_pos)}) disagree")
        self.n_local_cols = n_local
        self._writers = list(range(comm.size)) if self.io_path == PARALLEL else [0]
        self._budget_values = max(1, int(max_chunk_bytes) // DATA_DTYPE.itemsize)  # per writer and slice
        self._layout = self._plan_layout()
        self._rows = 0
        self._created = False
        self._file: h5py.File | None = None
        self._out: np.ndarray | None = None
        self._recv_types: dict = {}

    # ---------------------------------------------------------------- layout
    def _plan_layout(self) -> _Layout:
        all_ids = exchange.allgather_array(self.comm, self._node_ids)
        all_counts = exchange.allgather_array(self.comm, self._counts)
        ids = np.concatenate(all_ids) if all_ids else np.zeros(0, np.uint64)
        counts = np.concatenate(all_counts) if all_counts else np.zeros(0, np.int64)
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"report {self.h5_path.name}: a node id is recorded on two ranks or twice")
        order = np.argsort(ids, kind="stable")
        pointer = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(counts[order], out=pointer[1:])
        n_elements = int(pointer[-1])
        self._pointer_global = pointer
        self._ids_global = ids[order]
        cols_by_rank = None
        if self.comm.rank in self._writers:
            # position of each (rank, local cell) in global order -> its first column
            start_of = np.empty(len(ids), dtype=np.int64)
            start_of[order] = pointer[:-1]
            cols_by_rank = []
            first = 0
            for c in all_counts:
                starts = start_of[first:first + len(c)]
                first += len(c)
                if len(c) == 0 or c.sum() == 0:
                    cols_by_rank.append(np.zeros(0, np.int64))
                    continue
                # columns of cell j: starts[j] + 0..c[j]-1, vectorised
                rep = np.repeat(starts - np.concatenate(([0], np.cumsum(c)[:-1])), c)
                cols_by_rank.append(rep + np.arange(int(c.sum()), dtype=np.int64))
        return _Layout(n_elements=n_elements, n_cells=len(ids), cols_by_rank=cols_by_rank)

    @property
    def path(self) -> Path:
        return self.h5_path

    @property
    def n_elements(self) -> int:
        return self._layout.n_elements

    # ---------------------------------------------------------------- file
    def _open(self) -> None:
        if self._file is not None:
            return
        is_writer = self.comm.rank in self._writers
        if not self._created:
            self._create()
            self._created = True
        if self.io_path == PARALLEL or is_writer:
            self._file = open_h5(self.h5_path, "r+", self.comm, self.io_path)

    def _create(self) -> None:
        """Create the file with its mapping; the mapping columns travel to rank 0 once."""
        size = self.comm.size
        to_root = lambda a: [a] + [a[:0]] * (size - 1) if size > 1 else [a]  # noqa: E731
        e_ids = exchange.alltoallv(self.comm, to_root(self._element_ids), np.uint32)
        e_pos = exchange.alltoallv(self.comm, to_root(self._element_pos), np.float64)
        if self.comm.rank == 0:
            self.h5_path.parent.mkdir(parents=True, exist_ok=True)
        self.comm.barrier()
        if self.io_path != PARALLEL and self.comm.rank != 0:
            self.comm.barrier()
            return
        with open_h5(self.h5_path, "w", self.comm, self.io_path) as f:
            grp = f.create_group(f"report/{self.population}")
            data = create_fixed(grp, "data", (self.n_times, self.n_elements), DATA_DTYPE)
            data.attrs["units"] = self.units
            data.attrs["variable"] = self.variable
            m = grp.create_group("mapping")
            ds_ids = create_fixed(m, "node_ids", (self._layout.n_cells,), np.uint64)
            ds_eid = create_fixed(m, "element_ids", (self.n_elements,), np.uint32)
            ds_pos = create_fixed(m, "element_pos", (self.n_elements,), np.float64)
            ds_ptr = create_fixed(m, "index_pointer", (self._layout.n_cells + 1,), np.uint64)
            m["index_pointers"] = ds_ptr  # hard link: libsonata's spelling
            t = m.create_dataset("time", data=np.array([self.tstart, self.tstop, self.dt]), track_times=False)
            t.attrs["units"] = "ms"
            collective = self.io_path == PARALLEL
            mine = self.comm.rank == 0
            if mine:
                cols = self._layout.cols_by_rank
                eid = np.empty(self.n_elements, np.uint32)
                pos = np.empty(self.n_elements, np.float64)
                for s in range(len(e_ids)):
                    eid[cols[s]] = e_ids[s]
                    pos[cols[s]] = e_pos[s]
            empty = np.zeros(0)
            write_rows(ds_ids, 0, self._ids_global if mine else empty, collective)
            write_rows(ds_eid, 0, eid if mine else empty, collective)
            write_rows(ds_pos, 0, pos if mine else empty, collective)
            write_rows(ds_ptr, 0, self._pointer_global if mine else empty, collective)
        if self.io_path != PARALLEL:
            self.comm.barrier()

    # ---------------------------------------------------------------- blocks
    def write_block(self, data: np.ndarray) -> None:
        """Write the next ``n_t`` rows: ``data`` is [n_t × this rank's columns], same n_t on all ranks."""
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.n_local_cols:
            raise ValueError(f"report {self.h5_path.name}: block has shape {data.shape}, expected "
                             f"(n_t, {self.n_local_cols})")
        n_t = data.shape[0]
        all_n = self.comm.allgather(n_t)
        if len(set(all_n)) != 1:
            raise ValueError(f"report {self.h5_path.name}: ranks passed blocks of {all_n} rows")
        if self._rows + n_t > self.n_times:
            raise ValueError(f"report {self.h5_path.name}: {self._rows + n_t} rows exceed the "
                             f"{self.n_times} time steps of [{self.tstart}, {self.tstop}) at dt={self.dt}")
        self._open()
        data = np.ascontiguousarray(data, dtype=DATA_DTYPE)
        n_w = len(self._writers)
        # rows per exchange round so that one writer holds <= max_chunk_bytes
        per_writer = max(1, self._budget_values // max(1, self.n_elements))
        step = per_writer * n_w
        for r0 in range(0, n_t, step):
            r1 = min(n_t, r0 + step)
            self._exchange_and_write(data, r0, r1)
        self._rows += n_t

    def _exchange_and_write(self, data: np.ndarray, r0: int, r1: int) -> None:
        """Move rows [r0, r1) of this block to the writers and write them (collective).

        Each rank sends each writer its share of the rows straight from the caller's array
        (no packing copy). The writer receives every other rank's columns straight into
        their global positions (an MPI datatype per source describes where its columns go,
        so MPI's own copy does the placement), places its own columns with numpy, and writes
        one contiguous row range. A writer whose rows are already in global order (one rank,
        or all cells its own and in node order) writes the caller's array as is.
        """
        rank = self.comm.rank
        n = r1 - r0
        n_w = len(self._writers)
        bounds = [r0 + (n * k) // n_w for k in range(n_w + 1)]
        mpi = self.comm.mpi if self.comm.size > 1 else None
        reqs = []
        out = None
        in_place = False
        is_writer = rank in self._writers
        if is_writer:
            k = self._writers.index(rank)
            rows = bounds[k + 1] - bounds[k]
            own = self._layout.placements[rank]
            remote = [s for s, p in enumerate(self._layout.placements) if s != rank and p.n_cols and rows]
            in_place = not remote and own.identity
            if in_place:
                out = data[bounds[k]:bounds[k + 1]]
            else:
                out = self._buffer(rows)
                for src in remote:
                    reqs.append(mpi.Irecv([out, rows, self._recv_type(src)], source=src, tag=_TAG))
        if mpi is not None and self.n_local_cols:
            from mpi4py import MPI

            for kk, w in enumerate(self._writers):
                if w != rank and bounds[kk + 1] > bounds[kk]:
                    reqs.append(mpi.Isend([data[bounds[kk]:bounds[kk + 1]], MPI.FLOAT], dest=w, tag=_TAG))
        if is_writer and not in_place and own.n_cols and rows:
            own.scatter(data[bounds[k]:bounds[k + 1]], out)
        if reqs:
            from mpi4py import MPI

            MPI.Request.Waitall(reqs)
        ds = self._file[f"report/{self.population}/data"] if self._file is not None else None
        collective = self.io_path == PARALLEL
        if is_writer:
            write_rows(ds, self._rows + bounds[k], out, collective)
        elif collective:
            write_rows(ds, 0, np.zeros((0, self.n_elements), DATA_DTYPE), collective)

    def _recv_type(self, src: int):
        """MPI datatype that lays one row of ``src``'s columns at their global positions (cached)."""
        t = self._recv_types.get(src)
        if t is None:
            from mpi4py import MPI

            place = self._layout.placements[src]
            base = MPI.FLOAT.Create_indexed(place.run_lengths.tolist(), place.run_dst.tolist())
            t = base.Create_resized(0, self.n_elements * DATA_DTYPE.itemsize)
            t.Commit()
            base.Free()
            self._recv_types[src] = t
        return t

    def _buffer(self, rows: int) -> np.ndarray:
        """A reused assembly buffer: no fresh pages to fault in at every block."""
        if self._out is None or self._out.shape[0] < rows:
            self._out = np.empty((rows, self.n_elements), dtype=DATA_DTYPE)
        return self._out[:rows]

    def flush(self, sync: bool = False) -> None:
        """End of block: close the file so it is complete on disk; ``sync`` also fsyncs (checkpoints)."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if sync and (self.io_path == PARALLEL or self.comm.rank in self._writers):
            fsync_path(self.h5_path)

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        """What a checkpoint needs to resume this writer: rows already in the file."""
        return {"kind": STATE_KIND, "path": str(self.h5_path), "population": self.population,
                "rows": self._rows, "n_times": self.n_times, "n_elements": self.n_elements}

    def truncate(self, state: dict) -> None:
        """Resume after ``state``: keep the file, rewrite from row ``state['rows']`` on.

        Rows written after the checkpoint by a killed run are overwritten by the resumed
        run, so the final file equals an uninterrupted one.
        """
        if state.get("kind") != STATE_KIND or state.get("n_times") != self.n_times \
                or state.get("n_elements") != self.n_elements:
            raise OutputError("checkpoint does not match this report (different time range or cells)",
                              file=self.h5_path, fix="resume with the same config, or run without --resume")
        ok = True
        if self.comm.rank == 0:
            try:
                with h5py.File(self.h5_path, "r") as f:
                    shape = f[f"report/{self.population}/data"].shape
                ok = shape == (self.n_times, self.n_elements)
            except (OSError, KeyError):
                ok = False
        if not self.comm.bcast(ok):
            raise OutputError("report file is missing or does not match the checkpoint", file=self.h5_path,
                              fix="run without --resume")
        self.flush()
        self._rows = int(state["rows"])
        self._created = True

    def close(self) -> None:
        """Finish the file (created even when no row was ever written)."""
        if not self._created:
            self._open()
        self.flush(sync=False)
        self._out = None
        for t in self._recv_types.values():
            t.Free()
        self._recv_types = {}
