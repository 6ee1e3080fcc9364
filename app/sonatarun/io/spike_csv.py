"""BMTK's CSV twin of a spikes file: space separated, header ``timestamps population node_ids``.

Written by rank 0 from the finished h5, streamed in chunks so memory stays bounded;
populations in name order, rows in the file's (already sorted) order. Floats are
printed the way pandas (hence BMTK) prints them: the shortest repr that round-trips.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import pandas as pd

CHUNK = 1 << 20


def write_spikes_csv(h5_path: Path, csv_path: Path) -> None:
    """Write ``csv_path`` atomically (temp file, rename) from the spikes h5."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with h5py.File(h5_path, "r") as f, open(tmp, "w", newline="") as out:
        out.write("timestamps population node_ids\n")
        root = f.get("spikes", {})
        for pop in sorted(root):
            ts_ds, id_ds = root[pop]["timestamps"], root[pop]["node_ids"]
            for a in range(0, len(ts_ds), CHUNK):
                b = min(len(ts_ds), a + CHUNK)
                frame = pd.DataFrame({"timestamps": ts_ds[a:b], "population": pop, "node_ids": id_ds[a:b]})
                frame.to_csv(out, sep=" ", header=False, index=False)
    os.replace(tmp, csv_path)
