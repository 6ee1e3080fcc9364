"""Node populations: the h5 node file joined with its node-types CSV, read with array calls."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from sonatarun.circuit.ids import small_unique
from sonatarun.circuit.types_table import TypesTable, read_types_table
from sonatarun.errors import CircuitError

if TYPE_CHECKING:
    import pandas as pd

_RESERVED = {"node_type_id", "node_group_id", "node_group_index", "node_id"}


def decode_strings(values: np.ndarray) -> np.ndarray:
    """h5py gives bytes for string datasets; the tables hold str."""
    if values.dtype.kind in ("S", "O"):
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return values


@dataclass
class NodePopulation:
    name: str
    h5_path: Path
    types_path: Path
    types: TypesTable = field(repr=False)
    h5_columns: set[str] = field(default_factory=set, repr=False)  # filled by `columns`

    @classmethod
    def open_all(cls, h5_path: Path, types_path: Path) -> list["NodePopulation"]:
        """Every population in a nodes file (a file may hold several)."""
        types = read_types_table(types_path, "node_type_id")
        try:
            with h5py.File(h5_path, "r") as f:
                if "nodes" not in f:
                    raise CircuitError("no /nodes group: not a SONATA nodes file", file=h5_path)
                names = list(f["nodes"].keys())
        except OSError as exc:
            raise CircuitError(f"cannot open as HDF5: {exc}", file=h5_path) from exc
        return [cls(n, h5_path, types_path, types) for n in names]

    @cached_property
    def _core(self) -> dict[str, np.ndarray]:
        with h5py.File(self.h5_path, "r") as f:
            g = f["nodes"][self.name]
            for key in ("node_type_id", "node_group_id", "node_group_index"):
                if key not in g:
                    raise CircuitError(f"population '{self.name}' lacks dataset '{key}'", file=self.h5_path,
                                       key=f"/nodes/{self.name}/{key}")
            return {k: g[k][()] for k in ("node_type_id", "node_group_id", "node_group_index")}

    @property
    def size(self) -> int:
        return len(self._core["node_type_id"])

    @property
    def node_type_ids(self) -> np.ndarray:
        return self._core["node_type_id"]

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """All node attributes, one entry per node id: h5 group columns win over CSV columns.
        Plain arrays (strings as object arrays, None where missing): the plan needs no DataFrame."""
        core = self._core
        n = self.size
        type_ids = core["node_type_id"].astype(np.int64)
        missing = self.types.missing(type_ids)
        if missing:
            raise CircuitError(f"population '{self.name}' uses node_type_id {missing[0]} that the types "
                               f"table does not define", file=self.types_path, key="node_type_id",
                               fix="add the type to the CSV or correct the nodes file")
        out: dict[str, np.ndarray] = {"node_id": np.arange(n, dtype=np.int64), "node_type_id": type_ids}
        for c, v in self.types.take(type_ids).items():
            if c != "node_type_id":
                out[c] = v
        with h5py.File(self.h5_path, "r") as f:
            pop = f["nodes"][self.name]
            groups = core["node_group_id"]
            present = small_unique(groups).tolist()
            for gid in present:
                rows = None if len(present) == 1 else np.flatnonzero(groups == gid)
                idx = core["node_group_index"] if rows is None else core["node_group_index"][rows]
                grp = pop[str(gid)] if str(gid) in pop else None
                if grp is None:
                    raise CircuitError(f"node group '{gid}' of population '{self.name}' is missing",
                                       file=self.h5_path, key=f"/nodes/{self.name}/{gid}")
                for col, ds in grp.items():
                    if not isinstance(ds, h5py.Dataset) or col in _RESERVED:
                        continue
                    values = decode_strings(ds[()])
                    if values.ndim != 1:
                        continue
                    self.h5_columns.add(col)
                    if col not in out:
                        out[col] = np.full(n, None, dtype=object) if values.dtype == object else np.full(n, np.nan)
                    if not len(values):
                        continue
                    col_values = out[col].copy()
                    if col_values.dtype != values.dtype and values.dtype != object:
                        col_values = col_values.astype(np.result_type(col_values.dtype, values.dtype)
                                                       if col_values.dtype.kind in "fiu" else object)
                    elif values.dtype == object and col_values.dtype != object:
                        col_values = col_values.astype(object)
                    if rows is None:
                        col_values[:] = values[idx]
                    else:
                        col_values[rows] = values[idx]
                    out[col] = col_values
        return out

    @cached_property
    def table(self) -> "pd.DataFrame":
        """:attr:`columns` as a DataFrame indexed by node id (node sets, reports, weight functions)."""
        import pandas as pd  # only where a DataFrame is the product: a NEST build never imports it

        frame = pd.DataFrame(self.columns)
        return frame.set_index("node_id", drop=False)

    def node_dynamics(self, node_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Per-node parameters from `dynamics_params` subgroups of the h5 node groups."""
        core = self._core
        out: dict[str, np.ndarray] = {}
        with h5py.File(self.h5_path, "r") as f:
            pop = f["nodes"][self.name]
            for gid in small_unique(core["node_group_id"][node_ids]).tolist():
                grp = pop.get(str(gid))
                if grp is None or "dynamics_params" not in grp:
                    continue
                sel = node_ids[core["node_group_id"][node_ids] == gid]
                pos = np.searchsorted(node_ids, sel)
                for col, ds in grp["dynamics_params"].items():
                    values = ds[()][core["node_group_index"][sel]]
                    arr = out.setdefault(col, np.full(len(node_ids), np.nan, dtype=np.float64))
                    arr[pos] = values
        return out
