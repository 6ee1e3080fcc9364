"""SONATA compartment (membrane / synapse) report writer, rank-aware and block-flushed.

Layout (``/report/<population>/``): ``data`` [n_times × n_elements] float32 (libsonata
reads only float32; BMTK reads either), ``mapping/{node_ids, element_ids, element_pos,
index_pointer, time}`` with ``index_pointers`` a hard link to ``index_pointer`` (BMTK and
libsonata spell it differently; a link costs no bytes).

Columns follow global node-id order, whichever rank owns a cell. Every rank writes, on
both paths: a block is moved in time slices whose rows are split among all ranks, each
rank writing one contiguous row range. Ranks on one node assemble their rows in a buffer
they share (:mod:`sonatarun.io.node_buffer`): each copies its own columns straight into
their global positions (:mod:`sonatarun.io.placement`), so nothing travels between them;
ranks on other nodes send their columns point-to-point, received straight into place
through one MPI datatype per source. The parallel path then writes each rank's hyperslab
collectively through MPI-IO; the serial path (plain h5py wheel) writes each rank's rows
with ``os.pwrite`` at the raw offset of ``data`` — a contiguous dataset allocated at
creation, so its bytes sit at one fixed address and block writes never touch HDF5
metadata. Memory per rank is bounded by ``max_chunk_bytes`` whatever the block size.

The file is created at the first write and closed at every :meth:`flush`, so between
blocks it is a complete, closed HDF5 file, and a kill in the middle of a block leaves it
readable (only raw bytes of ``data`` were being written).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sonatarun.errors import OutputError
from sonatarun.io import exchange
from sonatarun.io.durable import fsync_path
from sonatarun.io.node_buffer import NodeGroup
from sonatarun.io.placement import DTYPE as DATA_DTYPE
from sonatarun.io.placement import Placement
from sonatarun.io.h5path import PARALLEL, choose_io_path, open_h5
from sonatarun.io.slab import create_fixed, pwrite_all, raw_offset, write_rows
from sonatarun.mpi import Comm

STATE_KIND = "compartment_report"
_TAG = 0x5A7A  # report slice messages (point-to-point, matched in order per pair)
# Each rank writes one contiguous, non-overlapping row range: ROMIO's collective buffering
# would funnel every rank's rows through one aggregator per node (an extra copy and a
# transfer), and data sieving only serves holes. The write stays a collective call.
MPIIO_HINTS = {"romio_cb_write": "disable", "romio_ds_write": "disable"}


def n_times_of(tstart: float, tstop: float, dt: float) -> int:
    """Rows in a report: time is right-open, so round((tstop - tstart) / dt)."""
    return int(round((tstop - tstart) / dt))


@dataclass
class _Layout:
    """Global column order: where each rank's local columns go."""

    n_elements: int
    n_cells: int
    start_of: np.ndarray  # first global column of each (rank, local cell), ranks concatenated
    counts_by_rank: list[np.ndarray]

    def cols_of(self, rank: int) -> np.ndarray:
        """Global column of each of ``rank``'s local columns (vectorised over its cells)."""
        c = self.counts_by_rank[rank]
        first = sum(len(x) for x in self.counts_by_rank[:rank])
        if len(c) == 0 or c.sum() == 0:
            return np.zeros(0, np.int64)
        starts = self.start_of[first:first + len(c)]
        rep = np.repeat(starts - np.concatenate(([0], np.cumsum(c)[:-1])), c)
        return rep + np.arange(int(c.sum()), dtype=np.int64)


class CompartmentReportWriter:
    """Write one population of one report; every method is collective over ``comm``.

    ``group_size`` caps how many ranks share one assembly buffer (default: every rank of a
    node); tests set it to emulate several nodes on one machine.
    """

    def __init__(self, h5_path: Path | str, comm: Comm, population: str, node_ids: np.ndarray,
                 counts: np.ndarray, element_ids: np.ndarray, element_pos: np.ndarray, tstart: float,
                 tstop: float, dt: float, variable: str, units: str, *,
                 max_chunk_bytes: int = 64 << 20, group_size: int | None = None) -> None:
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
        self._layout = self._plan_layout()
        self._group = NodeGroup(comm, group_size)
        # writers in row order: group by group, so a group's rows are one contiguous range
        self._order = [r for g in self._group.groups for r in g]
        self._slot = self._order.index(comm.rank)
        self._group_slots = (self._order.index(self._group.members[0]),
                             self._order.index(self._group.members[0]) + self._group.size)
        self._own = Placement(self._layout.cols_of(comm.rank), self.n_elements)
        members = set(self._group.members)
        self._remote = {s: Placement(self._layout.cols_of(s), self.n_elements) for s in range(comm.size)
                        if s not in members and self._layout.counts_by_rank[s].sum() > 0}
        self._per_writer = self._rows_per_writer(int(max_chunk_bytes))
        self._rows = 0
        self._created = False
        self._file: h5py.File | None = None  # parallel path: the file, open during a block
        self._fd: int | None = None  # serial path: this rank's descriptor, open during a block
        self._offset: int | None = None  # serial path: file offset of data's raw bytes
        self._recv_types: dict = {}
        self._buffer_busy = False  # the shared buffer may still be read by a member's write
        self.bytes_written = 0  # bytes of ``data`` this rank wrote itself (every rank writes its share)

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
        self._pointer_global = pointer
        self._ids_global = ids[order]
        start_of = np.empty(len(ids), dtype=np.int64)  # (rank, local cell) in global order -> first column
        start_of[order] = pointer[:-1]
        return _Layout(n_elements=int(pointer[-1]), n_cells=len(ids), start_of=start_of,
                       counts_by_rank=[np.asarray(c, np.int64) for c in all_counts])

    def _rows_per_writer(self, max_chunk_bytes: int) -> int:
        """Rows each rank writes per slice: its share of the buffer stays <= max_chunk_bytes
        (and the group's shared buffer within /dev/shm); the same on every rank."""
        row_bytes = max(1, self.n_elements) * DATA_DTYPE.itemsize
        rows = max(1, max_chunk_bytes // row_bytes)
        cap = self._group.max_bytes()
        if cap is not None:
            rows = min(rows, max(1, cap // (row_bytes * self._group.size)))
        return -self.comm.allreduce_max(-rows)

    @property
    def path(self) -> Path:
        return self.h5_path

    @property
    def n_elements(self) -> int:
        return self._layout.n_elements

    # ---------------------------------------------------------------- file
    def _open(self) -> None:
        if self._file is not None or self._fd is not None:
            return
        if not self._created:
            self._create()
            self._created = True
        if self.io_path == PARALLEL:
            self._file = open_h5(self.h5_path, "r+", self.comm, self.io_path, hints=MPIIO_HINTS)
        else:
            self._fd = os.open(self.h5_path, os.O_WRONLY)

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
            self._offset = self.comm.bcast(None)  # sent once rank 0 has closed the new file
            return
        with open_h5(self.h5_path, "w", self.comm, self.io_path) as f:
            grp = f.create_group(f"report/{self.population}")
            data = create_fixed(grp, "data", (self.n_times, self.n_elements), DATA_DTYPE)
            data.attrs["units"] = self.units
            data.attrs["variable"] = self.variable
            offset = raw_offset(data)
            if self.io_path != PARALLEL and offset is None and data.size:
                raise OutputError("report data has no fixed file offset", file=self.h5_path)
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
                eid = np.empty(self.n_elements, np.uint32)
                pos = np.empty(self.n_elements, np.float64)
                for s in range(len(e_ids)):
                    cols = self._layout.cols_of(s)
                    eid[cols] = e_ids[s]
                    pos[cols] = e_pos[s]
            empty = np.zeros(0)
            write_rows(ds_ids, 0, self._ids_global if mine else empty, collective)
            write_rows(ds_eid, 0, eid if mine else empty, collective)
            write_rows(ds_pos, 0, pos if mine else empty, collective)
            write_rows(ds_ptr, 0, self._pointer_global if mine else empty, collective)
        if self.io_path != PARALLEL:
            self._offset = self.comm.bcast(offset)

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
        step = self._per_writer * self.comm.size  # every rank writes <= _per_writer rows per slice
        for r0 in range(0, n_t, step):
            self._write_slice(data, r0, min(n_t, r0 + step))
        self._rows += n_t

    def _write_slice(self, data: np.ndarray, r0: int, r1: int) -> None:
        """Assemble rows [r0, r1) of this block in global column order and write them (collective).

        Rows are split among the ranks in ``_order``; this rank's group owns one contiguous
        range of them. Each rank copies its own columns for the group's rows into the
        group's shared buffer, sends other groups' writers their rows straight from the
        caller's array, and receives other groups' columns for its own rows straight into
        place (an MPI datatype per source). After the group's barrier every rank writes its
        own rows. The buffer is refilled only after a second barrier (at the next slice, or
        the one ending :meth:`flush`). A lone rank whose row is already the global row writes
        the caller's array as is.
        """
        n, size = r1 - r0, self.comm.size
        bounds = [r0 + (n * k) // size for k in range(size + 1)]
        k0, k1 = bounds[self._slot], bounds[self._slot + 1]
        g0, g1 = bounds[self._group_slots[0]], bounds[self._group_slots[1]]
        mpi = self.comm.mpi if size > 1 else None
        reqs = []
        direct = self._group.size == 1 and not self._remote and self._own.identity
        if direct:
            out = data[k0:k1]
        else:
            if self._buffer_busy:  # another member may still be writing the previous slice from it
                self._group.barrier()
            buf = self._group.buffer(g1 - g0, self.n_elements, DATA_DTYPE)
            out = buf[k0 - g0:k1 - g0]
            if k1 > k0:
                for src in self._remote:
                    reqs.append(mpi.Irecv([out, k1 - k0, self._recv_type(src)], source=src, tag=_TAG))
        if mpi is not None and self.n_local_cols:
            from mpi4py import MPI

            members = self._group.members
            for slot, w in enumerate(self._order):
                if w not in members and bounds[slot + 1] > bounds[slot]:
                    rows = data[bounds[slot]:bounds[slot + 1]]
                    reqs.append(mpi.Isend([rows, MPI.FLOAT], dest=w, tag=_TAG))
        if not direct:
            self._own.scatter(data[g0:g1], buf)
        if reqs:
            from mpi4py import MPI

            MPI.Request.Waitall(reqs)
        self._group.barrier()
        self._write_rows(self._rows + k0, out)
        self._buffer_busy = not direct

    def _write_rows(self, row: int, rows: np.ndarray) -> None:
        """Write this rank's assembled rows at file row ``row`` (collective on the parallel path)."""
        if self._file is not None:
            write_rows(self._file[f"report/{self.population}/data"], row, rows, collective=True)
        elif len(rows) and self.n_elements:
            pwrite_all(self._fd, rows, self._offset + row * self.n_elements * DATA_DTYPE.itemsize)
        self.bytes_written += rows.nbytes

    def _recv_type(self, src: int):
        """MPI datatype that lays one row of ``src``'s columns at their global positions (cached)."""
        t = self._recv_types.get(src)
        if t is None:
            from mpi4py import MPI

            place = self._remote[src]
            base = MPI.FLOAT.Create_indexed(place.run_lengths.tolist(), place.run_dst.tolist())
            t = base.Create_resized(0, self.n_elements * DATA_DTYPE.itemsize)
            t.Commit()
            base.Free()
            self._recv_types[src] = t
        return t

    def flush(self, sync: bool = False) -> None:
        """End of block: close the file so it is complete on disk; ``sync`` also fsyncs (checkpoints).

        It ends with a barrier: when it returns, every rank's rows are in the file (a reader
        may open it) and no rank reads the shared buffer any more.
        """
        if self._file is not None:
            self._file.close()
            self._file = None
            if sync:
                fsync_path(self.h5_path)
        elif self._fd is not None:
            try:
                if sync:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
        else:
            return
        self.comm.barrier()
        self._buffer_busy = False

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
        ok, offset = True, None
        if self.comm.rank == 0:
            try:
                with h5py.File(self.h5_path, "r") as f:
                    ds = f[f"report/{self.population}/data"]
                    offset = raw_offset(ds)
                    ok = ds.shape == (self.n_times, self.n_elements) and ds.dtype == DATA_DTYPE \
                        and (offset is not None or ds.size == 0)
            except (OSError, KeyError):
                ok = False
        ok, offset = self.comm.bcast((ok, offset))
        if not ok:
            raise OutputError("report file is missing or does not match the checkpoint", file=self.h5_path,
                              fix="run without --resume")
        self.flush()
        self._offset = offset
        self._rows = int(state["rows"])
        self._created = True

    def close(self) -> None:
        """Finish the file (created even when no row was ever written)."""
        if not self._created:
            self._open()
        self.flush(sync=False)
        self._group.close()
        for t in self._recv_types.values():
            t.Free()
        self._recv_types = {}
