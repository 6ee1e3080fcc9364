"""SONATA compartment (membrane / synapse) report writer, rank-aware and block-flushed.

Layout (``/report/<population>/``): ``data`` [n_times × n_elements] float32 (libsonata
reads only float32; BMTK reads either), ``mapping/{node_ids, element_ids, element_pos,
index_pointer, time}`` with ``index_pointers`` a hard link to ``index_pointer`` (BMTK and
libsonata spell it differently; a link costs no bytes).

Columns follow global node-id order, whichever rank owns a cell. Every rank writes, on
both paths: a block goes in time slices whose rows are split among all ranks, each rank
writing one contiguous row range, chunk by chunk (about 1 MB). Ranks of one node send each
other nothing: each copies its own columns straight to their global positions in a ring of
chunks the node's ranks share (:mod:`sonatarun.io.node_buffer`,
:mod:`sonatarun.io.placement`), and each chunk goes to the file while still in cache.
Ranks on other nodes send their columns as messages (contiguous rows, straight from the
caller's array), placed by the writer. The serial path (plain h5py wheel) writes with
``os.pwrite`` at the raw offset of ``data`` — a contiguous dataset allocated at creation,
so its bytes sit at one fixed address and block writes never touch HDF5 metadata — the
ranks of a node taking turns; the parallel path makes one collective ``H5Dwrite`` per
round of chunks through MPI-IO. Memory per rank is bounded by ``max_chunk_bytes``
whatever the block size. Files are byte-identical for any rank count.

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
# Each rank writes contiguous, non-overlapping rows: ROMIO's collective buffering would
# funnel every rank's rows through one aggregator per node (an extra copy and a transfer),
# and data sieving only serves holes. The writes stay collective calls.
MPIIO_HINTS = {"romio_cb_write": "disable", "romio_ds_write": "disable"}
# Rows are assembled and written this much at a time: small enough to stay in cache between
# the assembly and the write (serial path); each collective call of the parallel path costs
# more, so it takes bigger chunks (measured: 2 MB 415 ms, 16 MB 379 ms for the benchmark).
CHUNK_BYTES = 1 << 20
PARALLEL_CHUNK_BYTES = 16 << 20
RING = 4  # rounds of chunks in a group's shared ring (placement runs two rounds ahead)


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

    ``group_size`` caps how many ranks share memory (default: every rank of a node); tests
    set it to emulate several nodes on one machine.
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
        has_cols = [int(c.sum()) > 0 for c in self._layout.counts_by_rank]
        members = set(self._group.members)
        self._remote = [s for s in range(comm.size) if s not in members and has_cols[s]]
        self._placements = {s: Placement(self._layout.cols_of(s), self.n_elements) for s in self._remote}
        self._per_writer = self._rows_per_writer(int(max_chunk_bytes))
        self._chunk_rows = self._rows_per_chunk(PARALLEL_CHUNK_BYTES if self.io_path == PARALLEL else CHUNK_BYTES)
        self._chunk: np.ndarray | None = None  # assembly buffer, allocated at the first use
        self._recv: dict[int, np.ndarray] = {}
        self._rows = 0
        self._created = False
        self._file: h5py.File | None = None  # parallel path: the file, open during a block
        self._fd: int | None = None  # serial path: this rank's descriptor, open during a block
        self._offset: int | None = None  # serial path: file offset of data's raw bytes
        self._ring_busy = False  # peers may still be writing the last slice from the shared ring
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

    @property
    def _row_bytes(self) -> int:
        return self.n_elements * DATA_DTYPE.itemsize

    def _rows_per_writer(self, max_chunk_bytes: int) -> int:
        """Rows each rank writes per slice, the same on every rank: its receive buffers (its
        rows, other nodes' columns) stay within ``max_chunk_bytes``."""
        return -self.comm.allreduce_max(-max(1, max_chunk_bytes // max(1, self._row_bytes)))

    def _rows_per_chunk(self, chunk_bytes: int) -> int:
        """Rows assembled and written at a time, the same on every rank; a group's ring of
        chunks stays within half of the free /dev/shm."""
        rows = min(self._per_writer, chunk_bytes // max(1, self._row_bytes))
        cap = self._group.max_bytes()
        if cap is not None:
            rows = min(rows, cap // (RING * self._group.size * max(1, self._row_bytes)))
        return -self.comm.allreduce_max(-max(1, rows))

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
        """Write rows [r0, r1) of this block, each rank its own contiguous share (collective).

        Rows are split among the ranks in ``_order`` (a group's ranks are consecutive, so a
        group owns one row range). Other groups' writers get this rank's rows as messages,
        straight from the caller's array, and this rank receives their columns of its own
        rows. Within a group nothing is sent: see :meth:`_write_group_rows`.
        """
        n, size = r1 - r0, self.comm.size
        bounds = [r0 + (n * k) // size for k in range(size + 1)]
        k0, k1 = bounds[self._slot], bounds[self._slot + 1]
        g_first, g_end = self._group_slots
        mpi = self.comm.mpi if size > 1 else None
        reqs = []
        received: dict[int, np.ndarray] = {}
        if self._remote and k1 > k0:
            from mpi4py import MPI

            for s, buf in self._recv_buffers(k1 - k0).items():
                received[s] = buf
                reqs.append(mpi.Irecv([buf, MPI.FLOAT], source=s, tag=_TAG))
        if mpi is not None and self.n_local_cols:
            from mpi4py import MPI

            for slot, w in enumerate(self._order):
                if not g_first <= slot < g_end and bounds[slot + 1] > bounds[slot]:
                    reqs.append(mpi.Isend([data[bounds[slot]:bounds[slot + 1]], MPI.FLOAT], dest=w, tag=_TAG))
        if reqs:
            from mpi4py import MPI

            MPI.Request.Waitall(reqs)
        step = self._chunk_rows
        # the parallel path makes as many collective calls on every rank: one per round of chunks
        rounds = max(-(-(bounds[i + 1] - bounds[i]) // step) for i in range(size)) \
            if self.io_path == PARALLEL else None
        if self._group.shared:
            self._write_group_rows(data, bounds, received, rounds)
        else:
            self._write_alone(data, k0, k1, received, rounds)

    def _write_alone(self, data: np.ndarray, k0: int, k1: int, received: dict, rounds: int | None) -> None:
        """A rank without peers on its node: assemble its rows chunk by chunk from its own array
        and what it received, and write them (the caller's rows as they are when they already
        are whole rows in order)."""
        step = self._chunk_rows
        direct = not received and self._own.identity
        if direct and (rounds is None or self.comm.size == 1):
            step, rounds = max(1, k1 - k0), 1 if rounds is not None else None
        for i in range(rounds if rounds is not None else -(-(k1 - k0) // step)):
            a, z = k0 + i * step, min(k1, k0 + (i + 1) * step)
            if z <= a or direct:
                out = data[a:z] if z > a else data[:0]
            else:
                if self._chunk is None:
                    self._chunk = np.empty((self._chunk_rows, self.n_elements), DATA_DTYPE)
                out = self._chunk[:z - a]
                self._own.scatter(data[a:z], out)
                for s, buf in received.items():
                    self._placements[s].scatter(buf[a - k0:z - k0], out)
            self._write_rows(self._rows + a, out)

    def _write_group_rows(self, data: np.ndarray, bounds: list[int], received: dict,
                          rounds: int | None) -> None:
        """Ranks sharing a node: assemble in a shared ring of chunks, write in turns.

        Every member's row range is cut in chunks of ``_chunk_rows`` (about 1 MB); round
        ``r`` is chunk ``r`` of every member. Each member copies its own columns of a whole
        round straight into a slot of a ring shared by the group (RING rounds), two rounds
        ahead, then joins a non-blocking barrier for that round; a member writes its chunk
        of round ``r`` once that barrier completed (every member placed its columns), after
        adding the columns it received from other nodes. Nothing is copied twice: a
        member's columns go from its array into the chunk, and the chunk, still in cache,
        into the file. On the serial path the members write in turns (a 0-byte message
        passes the turn): buffered writes into one file are serialised by the kernel anyway
        (the inode lock), contending for it only burns CPU, and a member copies its columns
        of later rounds while the others write. On the parallel path each round is one
        collective call. Slot ``r % RING`` is refilled at round ``r + RING`` (placed after
        the member's own write of round ``r + RING - 2``): every member has finished
        writing round ``r`` by then, since it placed round ``r + 2`` after that write.
        """
        group = self._group
        step, n_cols = self._chunk_rows, self.n_elements
        g_first = self._group_slots[0]
        ranges = [(bounds[g_first + j], bounds[g_first + j + 1]) for j in range(group.size)]
        k0, k1 = ranges[group.index]
        if rounds is None:
            rounds = max(-(-(m1 - m0) // step) for m0, m1 in ranges)
        if self._ring_busy:  # a member may still be writing the previous slice from the ring
            group.barrier()
        need = RING * group.size * step * n_cols
        ring = group.segments(need if group.index == 0 else 0, DATA_DTYPE)[0][:need]
        ring = ring.reshape(RING, group.size, step, n_cols)
        self._ring_busy = True
        placed = {}

        def place(r: int) -> None:
            if r >= rounds:
                return
            if self.n_local_cols:
                # members start at different chunks: two ranks filling the same rows at the same
                # time would share the cache lines where their columns meet
                for j in [(group.index + i) % group.size for i in range(group.size)]:
                    m0, m1 = ranges[j]
                    a, z = m0 + r * step, min(m1, m0 + (r + 1) * step)
                    if z > a:
                        self._own.scatter(data[a:z], ring[r % RING, j, :z - a])
            placed[r] = group.ibarrier()

        place(0)
        place(1)
        last = group.index == group.size - 1
        for r in range(rounds):
            placed.pop(r).Wait()
            a, z = k0 + r * step, min(k1, k0 + (r + 1) * step)
            out = ring[r % RING, group.index, :max(0, z - a)]
            if z > a:
                for s, buf in received.items():
                    self._placements[s].scatter(buf[a - k0:z - k0], out)
            if self.io_path == PARALLEL:
                self._write_rows(self._rows + a, out)
            else:
                if r or group.index:
                    group.wait_turn()
                self._write_rows(self._rows + a, out)
                if r < rounds - 1 or not last:
                    group.pass_turn()
            place(r + 2)

    def _recv_buffers(self, rows: int) -> dict[int, np.ndarray]:
        """One contiguous [rows × its columns] buffer per remote source, reused across slices."""
        out = {}
        for s in self._remote:
            n = int(self._layout.counts_by_rank[s].sum())
            have = self._recv.get(s)
            if have is None or have.size < rows * n:
                have = self._recv[s] = np.empty(rows * n, DATA_DTYPE)
            out[s] = have[:rows * n].reshape(rows, n)
        return out

    def _write_rows(self, row: int, rows: np.ndarray) -> None:
        """Write this rank's assembled rows at file row ``row`` (collective on the parallel path)."""
        if self._file is not None:
            write_rows(self._file[f"report/{self.population}/data"], row, rows, collective=True)
        elif len(rows) and self.n_elements:
            pwrite_all(self._fd, rows, self._offset + row * self.n_elements * DATA_DTYPE.itemsize)
        self.bytes_written += rows.nbytes

    def flush(self, sync: bool = False) -> None:
        """End of block: close the file so it is complete on disk; ``sync`` also fsyncs (checkpoints).

        It ends with a barrier: when it returns, every rank's rows are in the file (a reader
        may open it) and no rank reads the shared ring any more.
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
        self._ring_busy = False

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
        self._chunk = None
        self._recv = {}
