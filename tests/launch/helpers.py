"""Helpers of the launch tests: spikes as comparable lists, a longer ring example."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from tests.conftest import EXAMPLES

RING_DIR = EXAMPLES / "ring_intfire"


def read_spikes(out_dir: Path) -> list[tuple[str, int, float]]:
    """(population, node id, time rounded to 1e-9 ms), sorted: the order inside a step may differ by rank."""
    rows = []
    with h5py.File(Path(out_dir) / "spikes.h5", "r") as f:
        for pop, g in f["spikes"].items():
            ts = np.round(g["timestamps"][:], 9)
            rows.extend(zip([pop] * len(ts), g["node_ids"][:].tolist(), ts.tolist()))
    return sorted(rows)


def long_ring(dst: Path, tstop: float) -> Path:
    """The ring example with inputs over `tstop` ms, so a signal lands mid-run (about 10 s of wall time
    on 2 ranks for 60 s here); the same 6 Hz Poisson inputs, drawn with a fixed seed."""
    shutil.copytree(RING_DIR, dst, ignore=shutil.ignore_patterns("output*"))
    cfg = dst / "config.simulation.json"
    conf = json.loads(cfg.read_text())
    conf["run"]["tstop"] = tstop
    cfg.write_text(json.dumps(conf, indent=1))
    rng = np.random.default_rng(7)
    times, ids = [], []
    for node in range(12):
        t = np.cumsum(rng.exponential(1000 / 6.0, size=int(tstop / 1000 * 6 * 1.5) + 20))
        t = t[t < tstop]
        times.append(t)
        ids.append(np.full(len(t), node, dtype=np.uint64))
    t, n = np.concatenate(times), np.concatenate(ids)
    order = np.argsort(t, kind="stable")
    with h5py.File(dst / "inputs" / "input_spikes.h5", "w") as f:
        g = f.create_group("spikes/input")
        g.attrs["sorting"] = "by_time"
        g.create_dataset("timestamps", data=t[order]).attrs["units"] = "ms"
        g.create_dataset("node_ids", data=n[order])
    return cfg
