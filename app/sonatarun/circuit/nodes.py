"""Node populations: the h5 node file joined with its node-types CSV, read with array calls."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from sonatarun.circuit.types_table import read_types_table
from sonatarun.errors import CircuitError

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
    types: pd.DataFrame = field(repr=False)

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
    def table(self) -> pd.DataFrame:
        """All node attributes, one row per node id: h5 group columns win over CSV columns."""
        core = self._core
        n = self.size
        frame = pd.DataFrame({"node_id": np.arange(n, dtype=np.int64),
                              "node_type_id": core["node_type_id"].astype(np.int64)})
        missing = set(np.unique(core["node_type_id"])) - set(self.types.index)
        if missing:
            raise CircuitError(f"population '{self.name}' uses node_type_id {sorted(missing)[0]} that the types "
                               f"table does not define", file=self.types_path, key="node_type_id",
                               fix="add the type to the CSV or correct the nodes file")
        csv_cols = [c for c in self.types.columns if c != "node_type_id"]
        joined = self.types.loc[frame["node_type_id"], csv_cols].reset_index(drop=True)
        for c in csv_cols:
            frame[c] = joined[c].to_numpy()
        with h5py.File(self.h5_path, "r") as f:
            pop = f["nodes"][self.name]
            for gid in np.unique(core["node_group_id"]):
                rows = np.nonzero(core["node_group_id"] == gid)[0]
                idx = core["node_group_index"][rows]
                grp = pop[str(gid)] if str(gid) in pop else None
                if grp is None:
                    raise CircuitError(f"node group '{gid}' of population '{self.name}' is missing",
                                       file=self.h5_path, key=f"/nodes/{self.name}/{gid}")
                for col, ds in grp.items():
                    if not isinstance(ds, h5py.Dataset) or col in _RESERVED:
                        continue
                    values = decode_strings(ds[()])
                    if col not in frame.columns:
                        frame[col] = pd.Series([None] * n, dtype=object) if values.dtype == object else np.nan
                    if values.ndim == 1 and len(values):
                        col_values = frame[col].to_numpy(copy=True)
                        if col_values.dtype != values.dtype and values.dtype != object:
                            col_values = col_values.astype(np.result_type(col_values.dtype, values.dtype)
                                                           if col_values.dtype.kind in "fiu" else object)
                        col_values[rows] = values[idx]
                        frame[col] = col_values
        return frame.set_index("node_id", drop=False)

    def node_dynamics(self, node_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Per-node parameters from `dynamics_params` subgroups of the h5 node groups."""
        core = self._core
        out: dict[str, np.ndarray] = {}
        with h5py.File(self.h5_path, "r") as f:
            pop = f["nodes"][self.name]
            for gid in np.unique(core["node_group_id"][node_ids]):
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
