"""Reading spike-train files given as inputs: SONATA h5 and BMTK's space-separated CSV."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from sonatarun.errors import InputError

SpikeTable = dict[str, tuple[np.ndarray, np.ndarray]]  # population -> (node_ids, timestamps)


def read_spike_file(path: Path, module: str, *, key: str = "input_file") -> SpikeTable:
    path = Path(path)
    if not path.exists():
        raise InputError("spike file not found", file=path, key=key, fix="correct input_file")
    if module in ("sonata", "h5", "hdf5"):
        return _read_h5(path, key)
    if module == "csv":
        return _read_csv(path, key)
    raise InputError(f"unknown spike file module '{module}'", key=key, fix="use sonata, h5 or csv")


def _read_h5(path: Path, key: str) -> SpikeTable:
    out: SpikeTable = {}
    try:
        with h5py.File(path, "r") as f:
            if "spikes" not in f:
                raise InputError("no /spikes group: not a SONATA spikes file", file=path, key=key)
            g = f["spikes"]
            if "timestamps" in g and isinstance(g["timestamps"], h5py.Dataset):  # old single-population layout
                ids = g["node_ids"][()] if "node_ids" in g else g["gids"][()]
                pop = g.attrs.get("population", "")
                out[pop.decode() if isinstance(pop, bytes) else str(pop)] = (ids.astype(np.int64),
                                                                             g["timestamps"][()].astype(np.float64))
            for name, grp in g.items():
                if isinstance(grp, h5py.Group) and "timestamps" in grp:
                    ids = grp["node_ids"][()] if "node_ids" in grp else grp["gids"][()]
                    out[name] = (ids.astype(np.int64), grp["timestamps"][()].astype(np.float64))
    except OSError as exc:
        raise InputError(f"cannot open as HDF5: {exc}", file=path, key=key) from exc
    return out


def _read_csv(path: Path, key: str) -> SpikeTable:
    import pandas as pd  # only for CSV spike inputs

    try:
        table = pd.read_csv(path, sep=r"\s+", engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot parse spikes CSV: {exc}", file=path, key=key,
                         fix="use BMTK's format: space separated, header 'timestamps population node_ids'") from exc
    id_col = "node_ids" if "node_ids" in table.columns else ("gids" if "gids" in table.columns else None)
    if "timestamps" not in table.columns or id_col is None:
        raise InputError("spikes CSV needs columns 'timestamps' and 'node_ids'", file=path, key=key,
                         fix="use BMTK's format: header 'timestamps population node_ids'")
    if "population" not in table.columns:
        table["population"] = ""
    out: SpikeTable = {}
    for pop, grp in table.groupby("population", sort=False):
        out[str(pop)] = (grp[id_col].to_numpy(np.int64), grp["timestamps"].to_numpy(np.float64))
    return out
