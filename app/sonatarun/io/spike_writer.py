"""SONATA spikes output (h5 + BMTK's CSV twin).

Minimal first version: every block, ranks send their spikes to rank 0, which
appends them to the h5 file; sorting happens at close. The rank-aware paths
replace these internals behind the same API.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from sonatarun.mpi import Comm

_SORT = {"none": "none", "by_id": "by_id", "by_time": "by_time", "time": "by_time", "id": "by_id",
         "gid": "by_id", "node_id": "by_id"}


class SpikeWriter:
    def __init__(self, h5_path: Path, comm: Comm, populations: list[str], sort_order: str = "none",
                 csv_path: Path | None = None) -> None:
        self.h5_path, self.csv_path, self.comm = Path(h5_path), csv_path, comm
        self.populations = list(populations)
        self.sort_order = _SORT.get(sort_order, "none")
        self._pending: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {p: [] for p in self.populations}
        self._count = {p: 0 for p in self.populations}
        if comm.is_root:
            with h5py.File(self.h5_path, "w") as f:
                f.attrs["magic"] = np.uint32(0x0A7A)
                f.attrs["version"] = np.array([0, 1], dtype=np.uint32)
                for p in self.populations:
                    g = f.create_group(f"spikes/{p}")
                    g.create_dataset("timestamps", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(65536,))
                    g.create_dataset("node_ids", shape=(0,), maxshape=(None,), dtype=np.uint64, chunks=(65536,))
                    g["timestamps"].attrs["units"] = "ms"

    def append(self, population: str, node_ids: np.ndarray, timestamps: np.ndarray) -> None:
        self._pending[population].append((np.asarray(node_ids, np.uint64), np.asarray(timestamps, np.float64)))

    def flush(self) -> None:
        local = {p: (np.concatenate([a for a, _ in v]) if v else np.zeros(0, np.uint64),
                     np.concatenate([b for _, b in v]) if v else np.zeros(0)) for p, v in self._pending.items()}
        self._pending = {p: [] for p in self.populations}
        parts = self.comm.gather(local)
        if not self.comm.is_root:
            return
        with h5py.File(self.h5_path, "a") as f:
            for p in self.populations:
                ids = np.concatenate([part[p][0] for part in parts])
                ts = np.concatenate([part[p][1] for part in parts])
                if not len(ids):
                    continue
                order = np.lexsort((ids, ts))
                n0 = self._count[p]
                for name, arr in (("node_ids", ids[order]), ("timestamps", ts[order])):
                    ds = f[f"spikes/{p}/{name}"]
                    ds.resize((n0 + len(arr),))
                    ds[n0:] = arr
                self._count[p] = n0 + len(ids)
            f.flush()

    def close(self) -> None:
        self.flush()
        if not self.comm.is_root:
            return
        rows = []
        with h5py.File(self.h5_path, "a") as f:
            for p in self.populations:
                g = f[f"spikes/{p}"]
                ids, ts = g["node_ids"][()], g["timestamps"][()]
                if self.sort_order == "by_id":
                    order = np.lexsort((ts, ids))
                elif self.sort_order == "by_time":
                    order = np.lexsort((ids, ts))
                else:
                    order = np.arange(len(ids))
                ids, ts = ids[order], ts[order]
                g["node_ids"][:] = ids
                g["timestamps"][:] = ts
                g.attrs["sorting"] = self.sort_order
                rows.append((p, ids, ts))
        if self.csv_path is not None:
            with open(self.csv_path, "w") as out:
                out.write("timestamps population node_ids\n")
                for p, ids, ts in rows:
                    for t, i in zip(ts.tolist(), ids.tolist()):
                        out.write(f"{t!r} {p} {i}\n")
