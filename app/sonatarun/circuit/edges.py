"""Edge populations, read only for the targets a rank owns.

With `indices/target_to_source` a rank reads the edge-id ranges of its own
targets; without it, the target column is scanned once with numpy. Columns are
then read as contiguous runs (or whole, when the selection is dense), never edge
by edge.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from sonatarun.circuit.ids import small_unique
from sonatarun.circuit.nodes import decode_strings
from sonatarun.circuit.types_table import TypesTable, read_types_table
from sonatarun.errors import CircuitError

if TYPE_CHECKING:
    import pandas as pd

_CORE = ("source_node_id", "target_node_id", "edge_type_id", "edge_group_id", "edge_group_index")
_DENSE = 0.25  # above this fraction of all edges, read whole columns and index in memory


def ranges_to_ids(ranges: np.ndarray) -> np.ndarray:
    """Expand [start, end) rows into one array of ids without a Python loop."""
    if len(ranges) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = ranges[:, 0].astype(np.int64)
    lengths = (ranges[:, 1] - ranges[:, 0]).astype(np.int64)
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(lengths.sum(), dtype=np.int64) + offsets


def read_rows(ds: h5py.Dataset, ids: np.ndarray) -> np.ndarray:
    """ds[ids] for sorted ids, as few hyperslab reads as the runs in `ids` allow."""
    n = ds.shape[0]
    if len(ids) == 0:
        return ds[0:0]
    run = _one_run(ids)
    if run is not None:
        return ds[run[0]:run[1]]  # one run (e.g. a whole edge group): one slice, no gather
    if len(ids) > _DENSE * n:
        return ds[()][ids]
    breaks = np.nonzero(np.diff(ids) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(ids)]])
    if len(starts) > 2000:  # many tiny runs: one pass over the covering span is cheaper
        lo, hi = int(ids[0]), int(ids[-1]) + 1
        return ds[lo:hi][ids - lo]
    return np.concatenate([ds[int(ids[s]):int(ids[e - 1]) + 1] for s, e in zip(starts, ends)])


def _one_run(ids: np.ndarray) -> tuple[int, int] | None:
    """(first, last + 1) when `ids` are consecutive ascending integers, else None: strictly
    ascending with last - first = n - 1 leaves no gap (one comparison pass)."""
    n = len(ids)
    if n == 0 or int(ids[-1]) - int(ids[0]) != n - 1:
        return None
    if n > 1 and not (ids[1:] > ids[:-1]).all():
        return None
    return int(ids[0]), int(ids[-1]) + 1


def _small_ids(values: np.ndarray) -> np.ndarray:
    """Edge type and group ids as read when they are integers of at most 32 bits (the plan only
    compares and counts them: no 8-byte copy of millions of edges), else as int64."""
    if values.dtype.kind in "iu" and values.dtype.itemsize <= 4:
        return values
    return _int64(values)


def _int64(values: np.ndarray) -> np.ndarray:
    """A freshly read id column as int64: SONATA's uint64 ids are reinterpreted in place (ids
    never reach 2**63; a corrupt one shows up negative), narrower types are converted."""
    if values.dtype == np.int64:
        return values
    if values.dtype == np.uint64:
        return values.view(np.int64)
    return values.astype(np.int64)


@dataclass
class EdgeColumns:
    """Selected edges of one population: core arrays plus group columns, all the same length."""

    edge_ids: np.ndarray
    source: np.ndarray
    target: np.ndarray
    edge_type: np.ndarray
    group_id: np.ndarray
    group_index: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.edge_ids)


@dataclass
class EdgePopulation:
    name: str
    h5_path: Path
    types_path: Path
    types: TypesTable = field(repr=False)
    source_population: str = ""
    target_population: str = ""
    size: int = 0

    @classmethod
    def open_all(cls, h5_path: Path, types_path: Path) -> list["EdgePopulation"]:
        types = read_types_table(types_path, "edge_type_id")
        out = []
        try:
            with h5py.File(h5_path, "r") as f:
                if "edges" not in f:
                    raise CircuitError("no /edges group: not a SONATA edges file", file=h5_path)
                for name, g in f["edges"].items():
                    for key in _CORE[:2]:
                        if key not in g:
                            raise CircuitError(f"edge population '{name}' lacks '{key}'", file=h5_path,
                                               key=f"/edges/{name}/{key}")
                    src = g["source_node_id"].attrs.get("node_population")
                    tgt = g["target_node_id"].attrs.get("node_population")
                    if src is None or tgt is None:
                        raise CircuitError(f"edge population '{name}' does not say which node populations it joins",
                                           file=h5_path, key=f"/edges/{name}/source_node_id@node_population")
                    dec = (lambda v: v.decode() if isinstance(v, bytes) else str(v))
                    out.append(cls(name, h5_path, types_path, types, dec(src), dec(tgt), g["target_node_id"].shape[0]))
        except OSError as exc:
            raise CircuitError(f"cannot open as HDF5: {exc}", file=h5_path) from exc
        return out

    def edge_ids_for_targets(self, targets: np.ndarray) -> np.ndarray:
        """Sorted ids of the edges whose target is in `targets` (node ids of the target population)."""
        targets = np.asarray(targets, dtype=np.int64)
        with h5py.File(self.h5_path, "r") as f:
            g = f["edges"][self.name]
            idx = g.get("indices/target_to_source")
            # the SONATA spec says node_id_to_ranges; bmtk.builder writes (and BMTK reads) node_id_to_range
            n2r_name = next((n for n in ("node_id_to_ranges", "node_id_to_range") if idx is not None and n in idx),
                            None)
            if n2r_name is not None and "range_to_edge_id" in idx:
                n2r = idx[n2r_name][()]
                valid = targets[targets < len(n2r)]
                rr = n2r[valid]
                range_rows = ranges_to_ids(rr)
                if len(range_rows) == 0:
                    return np.zeros(0, dtype=np.int64)
                r2e = idx["range_to_edge_id"]
                ranges = r2e[()][range_rows] if len(range_rows) > _DENSE * r2e.shape[0] else read_rows(r2e, range_rows)
                return np.sort(ranges_to_ids(ranges))
            tgt = g["target_node_id"][()]
        return np.nonzero(np.isin(tgt, targets))[0].astype(np.int64)

    def read_targets_and_types(self, edge_ids: np.ndarray, *, every_edge: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(target_node_id as int64, edge_type_id) of `edge_ids` (sorted): the two columns a plan
        needs before reading the rest, to cut the edges into chunks and check their types."""
        ids = np.asarray(edge_ids, dtype=np.int64)
        with h5py.File(self.h5_path, "r") as f:
            g = f["edges"][self.name]
            core = self._core_reader(g, ids, every_edge, None)
            return _int64(core("target_node_id")), _small_ids(self._edge_types(core))

    def _core_reader(self, g: h5py.Group, ids: np.ndarray, every_edge: bool, known: dict[str, np.ndarray] | None):
        """core(key): a core column for `ids` (None where the file has none), from `known` if there."""

        def core(key: str) -> np.ndarray | None:
            if known is not None and key in known:
                return known[key]
            if key not in g:
                return None
            return g[key][()] if every_edge else read_rows(g[key], ids)

        return core

    def _edge_types(self, core) -> np.ndarray:
        etype = core("edge_type_id")
        if etype is None:
            raise CircuitError(f"edge population '{self.name}' lacks 'edge_type_id'", file=self.h5_path,
                               key=f"/edges/{self.name}/edge_type_id")
        return etype

    def read_columns(self, edge_ids: np.ndarray, *, every_edge: bool = False,
                     known: dict[str, np.ndarray] | None = None) -> "EdgeColumns":
        """Core columns and each edge group's columns for `edge_ids` (sorted), as numpy arrays.

        Group columns are full length (one entry per selected edge); rows of other groups hold
        NaN (numbers) or None. With `every_edge` the ids are 0..size-1 and whole datasets are read.
        `known`: core columns already read for these ids (read_targets_and_types), not read again.
        """
        ids = np.asarray(edge_ids, dtype=np.int64)
        n = len(ids)
        with h5py.File(self.h5_path, "r") as f:
            g = f["edges"][self.name]
            core = self._core_reader(g, ids, every_edge, known)
            etype = self._edge_types(core)
            group_id = core("edge_group_id")
            group_id = np.zeros(n, np.int64) if group_id is None else _small_ids(group_id)
            group_index = core("edge_group_index")
            group_index = ids.copy() if group_index is None else _int64(group_index)
            columns: dict[str, np.ndarray] = {}
            groups = small_unique(group_id).tolist()
            for gid in groups:
                grp = g.get(str(gid))
                if grp is None:
                    continue
                rows = None if len(groups) == 1 else np.flatnonzero(group_id == gid)
                gidx = group_index if rows is None else group_index[rows]
                # group rows usually follow the edge order (always for files from bmtk.builder):
                # then no sort and, for a whole group, one slice per column (checked once per group)
                run = _one_run(gidx)
                in_order = run is not None or len(gidx) < 2 or not (gidx[1:] < gidx[:-1]).any()
                order = None if in_order else np.argsort(gidx, kind="stable")
                for col, ds in grp.items():
                    if not isinstance(ds, h5py.Dataset):
                        continue
                    if run is not None:
                        vals = decode_strings(ds[run[0]:run[1]])
                    elif order is None:
                        vals = decode_strings(read_rows(ds, gidx))
                    else:
                        vals = np.empty(len(gidx), dtype=object if ds.dtype.kind in "SO" else ds.dtype)
                        vals[order] = decode_strings(read_rows(ds, gidx[order]))
                    if len(gidx) == n:  # one group holds every selected edge: keep the file's dtype
                        columns[col] = vals
                        continue
                    if col not in columns:
                        columns[col] = np.full(n, np.nan) if vals.dtype.kind in "fiub" else np.full(n, None, object)
                    if columns[col].dtype.kind == "f" and vals.dtype.kind not in "fiub":
                        columns[col] = columns[col].astype(object)
                    columns[col][rows] = vals
            return EdgeColumns(edge_ids=ids, source=_int64(core("source_node_id")),
                               target=_int64(core("target_node_id")), edge_type=_small_ids(etype),
                               group_id=group_id, group_index=group_index, columns=columns)

    def read(self, edge_ids: np.ndarray) -> "pd.DataFrame":
        """The same as :meth:`read_columns`, one DataFrame row per edge (for inspection and tests)."""
        import pandas as pd  # a run reads columns; only this view needs pandas

        c = self.read_columns(edge_ids)
        return pd.DataFrame({"edge_id": c.edge_ids, "source_node_id": c.source, "target_node_id": c.target,
                             "edge_type_id": c.edge_type.astype(np.int64), "edge_group_id": c.group_id.astype(np.int64),
                             "edge_group_index": c.group_index, **c.columns})

    @cached_property
    def group_columns(self) -> dict[int, set[str]]:
        """Datasets of each edge group: BMTK decides synapse rules per group from these."""
        out: dict[int, set[str]] = {}
        with h5py.File(self.h5_path, "r") as f:
            for key, grp in f["edges"][self.name].items():
                if key.isdigit() and isinstance(grp, h5py.Group):
                    out[int(key)] = {k for k, v in grp.items() if isinstance(v, h5py.Dataset)}
                    if "dynamics_params" in grp:
                        out[int(key)].add("dynamics_params")
        return out
