"""SONATA spikes output (h5 + BMTK's CSV twin), rank-aware and block-flushed.

Per block (:meth:`flush`, collective) the spikes of every rank are appended to
``/spikes/<pop>/{timestamps,node_ids}``:

* parallel path: each rank writes its own hyperslab at its exclusive-prefix offset
  (one collective write); serial path: the same rows travel to rank 0, which writes them.
* ``by_time``: blocks arrive in time order, so the block alone is sorted: its spikes are
  split by time range across the writer ranks, each sorts its part by (time, node id),
  and the concatenation in rank order is the sorted block. The file is ``by_time`` at
  every block end; nothing is left to do at close. (If a block ever starts before the
  previous one ended, the writer notes it and sorts fully at close.)
* ``by_id`` (and that fallback): the file holds arrival order while running; at close a
  distributed sample sort (:mod:`sonatarun.io.spike_sort`) rewrites it: each rank reads a
  1/P slice, ranks swap records by key range, sort locally and write their slice of a new
  file, which atomically replaces the old one. No rank ever holds more than ~1/P of it.

The file is closed between blocks, so a kill between blocks leaves a valid file; the
checkpoint state holds each population's count, and :meth:`truncate` cuts the file back.
Appending changes HDF5 metadata (the datasets grow), so a kill inside HDF5's close could
leave a broken file: each block is therefore appended to the file and then to a hidden
shadow copy (``.<name>.shadow``); :meth:`truncate` repairs either from the other, and
:meth:`close` deletes the shadow. Spikes are small next to reports: the second write is cheap.

``sorting`` is written twice on purpose: libsonata only reads an HDF5 enum (uint8,
none=0/by_id=1/by_time=2) on the population group and fails on a string there, while
BMTK's reader maps only strings and looks at ``node_ids``'s own ``sorting`` attribute
first. So the group gets the enum and ``node_ids`` the string: both readers get the order.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from sonatarun.errors import ConfigError, OutputError
from sonatarun.io import exchange
from sonatarun.io.durable import fsync_path
from sonatarun.io.h5path import PARALLEL, choose_io_path, open_h5
from sonatarun.io.slab import create_growable, write_rows
from sonatarun.mpi import Comm

RECORD = np.dtype([("node_id", "<u8"), ("t", "<f8")])
SORTING_ENUM = h5py.enum_dtype({"none": 0, "by_id": 1, "by_time": 2}, basetype=np.uint8)
SORTING_CODE = {"none": 0, "by_id": 1, "by_time": 2}
STATE_KIND = "spikes"

_SORT_ALIASES = {"none": "none", "by_id": "by_id", "by_time": "by_time", "time": "by_time", "id": "by_id",
                 "gid": "by_id", "node_id": "by_id", "node_ids": "by_id", "": "none"}


def normalize_sort_order(value: str | None) -> str:
    """Map BMTK's spellings (``time``, ``id``, ``gid``, ``node_id``, …) to none/by_id/by_time."""
    key = str(value if value is not None else "none").strip().lower()
    if key not in _SORT_ALIASES:
        raise ConfigError(f"unknown spike sort order '{value}'", key="output.spikes_sort_order",
                          fix="use one of none, by_id, by_time (or BMTK's time, id, gid, node_id)")
    return _SORT_ALIASES[key]


def set_sorting_attrs(grp: h5py.Group, sort_order: str, n_spikes: int) -> None:
    """Write ``sorting`` so libsonata (group enum) and BMTK (node_ids string) both read it.

    BMTK's reader indexes ``node_ids[0]`` for a by_id population, so an empty population's
    BMTK-facing attribute says ``none`` (vacuously true) instead of crashing BMTK.
    """
    grp.attrs.create("sorting", SORTING_CODE[sort_order], dtype=SORTING_ENUM)
    bmtk_value = sort_order if (n_spikes > 0 or sort_order != "by_id") else "none"
    grp["node_ids"].attrs["sorting"] = bmtk_value


def write_root_attrs(f: h5py.File) -> None:
    """BMTK's SONATA markers: magic 0x0A7A and version [0, 1], both uint32."""
    f.attrs["magic"] = np.uint32(0x0A7A)
    f.attrs["version"] = np.array([0, 1], dtype=np.uint32)


class SpikeWriter:
    """Write the run's spikes; :meth:`append` is local, everything else is collective."""

    def __init__(self, h5_path: Path | str | None, comm: Comm, populations: list[str], sort_order: str = "none",
                 csv_path: Path | str | None = None) -> None:
        self.csv_path = Path(csv_path) if csv_path is not None else None
        # CSV only: the h5 is still the block store (bounded memory, resumable), removed at close
        self._h5_is_scratch = h5_path is None and self.csv_path is not None
        if h5_path is None:
            h5_path = (self.csv_path.with_name(self.csv_path.name + ".work.h5") if self.csv_path is not None
                       else None)
        self._disabled = h5_path is None
        self.h5_path = Path(h5_path) if h5_path is not None else Path(os.devnull)
        self._shadow = self.h5_path.with_name(f".{self.h5_path.name}.shadow")
        self.comm = comm
        self.populations = sorted(dict.fromkeys(populations))
        self.sort_order = normalize_sort_order(sort_order)
        self.io_path = choose_io_path(comm)
        self._writers = list(range(comm.size)) if self.io_path == PARALLEL else [0]
        self._pending: dict[str, list[np.ndarray]] = {p: [] for p in self.populations}
        self._count = {p: 0 for p in self.populations}
        self._last_t = {p: -np.inf for p in self.populations}
        self._needs_sort = {p: self.sort_order == "by_id" for p in self.populations}
        self._created = False
        self._closed = False

    # ---------------------------------------------------------------- blocks
    def append(self, population: str, node_ids: np.ndarray, timestamps: np.ndarray) -> None:
        """Queue this rank's spikes of one population (no communication, no I/O)."""
        if population not in self._pending:
            raise ValueError(f"spikes for unknown population '{population}' (known: {self.populations})")
        ids = np.asarray(node_ids).reshape(-1)
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if len(ids) != len(ts):
            raise ValueError(f"population {population}: {len(ids)} node ids but {len(ts)} timestamps")
        if len(ids):
            rec = np.empty(len(ids), dtype=RECORD)
            rec["node_id"] = ids
            rec["t"] = ts
            self._pending[population].append(rec)

    @property
    def path(self) -> Path:
        return self.h5_path

    def flush(self, sync: bool = False) -> None:
        """End of block: every rank's queued spikes reach the file, which is then closed."""
        if self._disabled:
            self._pending = {p: [] for p in self.populations}
            return
        local = {p: (np.concatenate(v) if v else np.zeros(0, RECORD)) for p, v in self._pending.items()}
        self._pending = {p: [] for p in self.populations}
        # one small collective: per population (count, min t, max t) of every rank
        stats = np.array([[len(local[p]), local[p]["t"].min() if len(local[p]) else np.inf,
                           local[p]["t"].max() if len(local[p]) else -np.inf] for p in self.populations],
                         dtype=np.float64).reshape(len(self.populations), 3)
        all_stats = np.stack(self.comm.allgather(stats))  # [ranks, pops, 3]
        if not self._created:
            self._create()
        if all_stats[:, :, 0].sum() == 0:
            return
        plan = []  # (population, rows of this rank, offset, total, tmin, tmax): routed once, written twice
        for i, p in enumerate(self.populations):
            total = int(all_stats[:, i, 0].sum())
            if total == 0:
                continue
            tmin, tmax = float(all_stats[:, i, 1].min()), float(all_stats[:, i, 2].max())
            rows = self._route_block(local[p], tmin, tmax)
            offset, total_check = exchange.offsets(self.comm, len(rows))
            assert total_check == total
            plan.append((p, rows, offset, total, tmin, tmax))
        # the visible file first, then its shadow: a kill while one is being written leaves
        # the other complete at the previous block end, and truncate() repairs from it
        for target in (self.h5_path, self._shadow):
            self._append_to(target, plan)
        for p, _, _, total, tmin, tmax in plan:
            if self.sort_order == "by_time" and tmin < self._last_t[p]:
                self._needs_sort[p] = True
            self._last_t[p] = max(self._last_t[p], tmax)
            self._count[p] += total
        if sync:
            self._fsync()

    def _append_to(self, target: Path, plan: list) -> None:
        collective = self.io_path == PARALLEL
        is_writer = self.comm.rank in self._writers
        if not (collective or is_writer):
            return
        with open_h5(target, "r+", self.comm, self.io_path) as f:
            for p, rows, offset, total, tmin, _ in plan:
                n0 = self._count[p]
                g = f[f"spikes/{p}"]
                g["timestamps"].resize((n0 + total,))
                g["node_ids"].resize((n0 + total,))
                write_rows(g["timestamps"], n0 + offset, rows["t"], collective)
                write_rows(g["node_ids"], n0 + offset, rows["node_id"], collective)
                if self.sort_order == "by_time" and tmin < self._last_t[p] and not self._needs_sort[p]:
                    set_sorting_attrs(g, "none", 1)  # honest while running; sorted fully at close

    def _route_block(self, rec: np.ndarray, tmin: float, tmax: float) -> np.ndarray:
        """This rank's rows of the block, in the order they go to the file (collective).

        ``by_time``: split by time range over the writers, sort each part by (t, node id).
        Otherwise: arrival order, rank by rank (serial path: all rows go to rank 0).
        """
        size = self.comm.size
        writers = self._writers
        if self.sort_order == "by_time":
            dest_w = np.zeros(len(rec), dtype=np.int64)
            if len(writers) > 1 and tmax > tmin:
                frac = (rec["t"] - tmin) / (tmax - tmin)
                dest_w = np.minimum((frac * len(writers)).astype(np.int64), len(writers) - 1)
            order = np.argsort(dest_w, kind="stable")
            bounds = np.searchsorted(dest_w[order], np.arange(len(writers) + 1))
            parts = [rec[:0]] * size
            for k, w in enumerate(writers):
                parts[w] = rec[order[bounds[k]:bounds[k + 1]]]
            got = exchange.alltoallv(self.comm, parts, RECORD)
            mine = np.concatenate(got) if got else rec[:0]
            return mine[np.lexsort((mine["node_id"], mine["t"]))]
        if len(writers) == size:
            return rec
        parts = [rec[:0]] * size
        parts[writers[0]] = rec
        got = exchange.alltoallv(self.comm, parts, RECORD)
        return np.concatenate(got) if self.comm.rank in writers else rec[:0]

    # ---------------------------------------------------------------- file
    def _create(self) -> None:
        """Create the file and its shadow with empty, growable datasets for every population."""
        if self.comm.rank == 0:
            self.h5_path.parent.mkdir(parents=True, exist_ok=True)
        self.comm.barrier()
        if self.io_path == PARALLEL or self.comm.rank == 0:
            for target in (self.h5_path, self._shadow):
                with open_h5(target, "w", self.comm, self.io_path) as f:
                    write_root_attrs(f)
                    f.require_group("spikes")
                    for p in self.populations:
                        g = f.create_group(f"spikes/{p}")
                        ts = create_growable(g, "timestamps", np.float64)
                        ts.attrs["units"] = "ms"
                        create_growable(g, "node_ids", np.uint64)
                        set_sorting_attrs(g, "by_time" if self.sort_order == "by_time" else "none", 0)
        self.comm.barrier()
        self._created = True

    def _fsync(self) -> None:
        if self.io_path == PARALLEL or self.comm.rank in self._writers:
            for target in (self.h5_path, self._shadow):
                fsync_path(target)

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        """Counts per population (after :meth:`flush`): what a checkpoint stores for this writer."""
        return {"kind": STATE_KIND, "path": str(self.h5_path), "sort_order": self.sort_order,
                "counts": dict(self._count), "last_t": {p: float(v) for p, v in self._last_t.items()},
                "needs_sort": dict(self._needs_sort)}

    def truncate(self, state: dict) -> None:
        """Resume after ``state``: cut each population back to its checkpointed count (collective)."""
        if state.get("kind") != STATE_KIND or sorted(state.get("counts", {})) != self.populations:
            raise OutputError("checkpoint does not match this spikes file (different populations)",
                              file=self.h5_path, fix="resume with the same config, or run without --resume")
        counts = {p: int(n) for p, n in state["counts"].items()}
        if self._disabled:
            return
        problem = None
        if self.comm.rank == 0:
            problem = _repair_pair(self.h5_path, self._shadow, counts)
        problem = self.comm.bcast(problem)
        if problem:
            raise OutputError(f"spikes file does not match the checkpoint: {problem}", file=self.h5_path,
                              fix="run without --resume")
        if self.io_path == PARALLEL or self.comm.rank == 0:
            for target in (self.h5_path, self._shadow):
                with open_h5(target, "r+", self.comm, self.io_path) as f:
                    for p in self.populations:
                        g = f[f"spikes/{p}"]
                        if len(g["node_ids"]) > counts[p]:
                            g["node_ids"].resize((counts[p],))
                            g["timestamps"].resize((counts[p],))
        self.comm.barrier()
        self._count = counts
        self._last_t = {p: float(v) for p, v in state.get("last_t", {}).items()} or self._last_t
        self._needs_sort = {p: bool(v) for p, v in state.get("needs_sort", {}).items()} or self._needs_sort
        self._pending = {p: [] for p in self.populations}
        self._created = True

    # ---------------------------------------------------------------- close
    def close(self) -> None:
        """Flush, sort where the order is not yet final, set the attributes, write the CSV twin."""
        if self._closed or self._disabled:
            self._closed = True
            return
        self.flush()
        from sonatarun.io import spike_sort

        if any(self._needs_sort.values()):
            spike_sort.rewrite_sorted(self.h5_path, self.comm, self.io_path, self._count, self.sort_order)
        else:
            if self.io_path == PARALLEL or self.comm.rank == 0:
                with open_h5(self.h5_path, "r+", self.comm, self.io_path) as f:
                    for p in self.populations:
                        set_sorting_attrs(f[f"spikes/{p}"], self.sort_order, self._count[p])
            self.comm.barrier()
        if self.comm.rank == 0:
            self._shadow.unlink(missing_ok=True)
        if self.csv_path is not None:
            from sonatarun.io.spike_csv import write_spikes_csv

            if self.comm.rank == 0:
                write_spikes_csv(self.h5_path, self.csv_path)
                if self._h5_is_scratch:
                    self.h5_path.unlink()
            self.comm.barrier()
        self._closed = True


def _holds(path: Path, counts: dict[str, int]) -> str | None:
    """None when ``path`` opens and holds at least ``counts`` spikes per population, else why not."""
    try:
        with h5py.File(path, "r") as f:
            for p, n in counts.items():
                g = f[f"spikes/{p}"]
                if len(g["node_ids"]) < n or len(g["timestamps"]) < n:
                    return f"population {p} of {path.name} has fewer spikes than the checkpoint"
    except (OSError, KeyError) as exc:
        return f"{path.name} cannot be read ({exc})"
    return None


def _repair_pair(main: Path, shadow: Path, counts: dict[str, int]) -> str | None:
    """Make both copies usable from whichever survived a kill; None on success, else the problem."""
    import shutil

    bad_main, bad_shadow = _holds(main, counts), _holds(shadow, counts)
    if bad_main and bad_shadow:
        return bad_main
    if bad_main:
        shutil.copyfile(shadow, main)
    elif bad_shadow:
        shutil.copyfile(main, shadow)
    return None
