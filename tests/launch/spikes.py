"""Read a SONATA spikes.h5 as a sorted list, for equality checks between runs."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def read_spikes(out_dir: Path) -> list[tuple[str, int, float]]:
    """(population, node id, time rounded to 1e-9 ms), sorted: the order inside a step may differ by rank."""
    rows = []
    with h5py.File(Path(out_dir) / "spikes.h5", "r") as f:
        for pop, g in f["spikes"].items():
            ts = np.round(g["timestamps"][:], 9)
            rows.extend(zip([pop] * len(ts), g["node_ids"][:].tolist(), ts.tolist()))
    return sorted(rows)
