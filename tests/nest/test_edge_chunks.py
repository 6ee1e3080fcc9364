"""Streamed edge populations (EdgeChunk, simulation/network.py): what the NEST build reads while
it connects. Chunks must hold every edge once, in file order, with disjoint targets, and load
into exactly the batches a whole read makes; files that cannot be cut stay whole; a bad edge
that only a later chunk's read shows stops the run with the whole read's message, before any
output file is written. (Spikes of a streamed build against BMTK: test_parity_bmtk.py.)
"""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from sonatarun.config import SimulationConfig
from sonatarun.engines.base import ConnectionBatch, EdgeChunk
from sonatarun.mpi import Comm
from sonatarun.simulation import Simulation
from sonatarun.simulation.simulation import RunOptions

from tests.conftest import EXAMPLES, run_sonatarun

_FIELDS = ("source_gids", "target_gids", "source_node_ids", "target_node_ids", "weights", "delays", "nsyns",
           "edge_ids")


def _plan(config, monkeypatch, chunk: int | None):
    if chunk is None:
        monkeypatch.delenv("SONATARUN_EDGE_CHUNK", raising=False)
    else:
        monkeypatch.setenv("SONATARUN_EDGE_CHUNK", str(chunk))
    sim = Simulation(SimulationConfig.from_file(config), RunOptions(), comm=Comm(None))
    return sim.plan()["connections"]


def _by_type(batches: list[ConnectionBatch]) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    out: dict[tuple[str, int], dict[str, list]] = {}
    for b in batches:
        acc = out.setdefault((b.edge_population, b.edge_type_id), {f: [] for f in _FIELDS})
        for f in _FIELDS:
            acc[f].append(np.asarray(getattr(b, f)))
    return {k: {f: np.concatenate(v) for f, v in acc.items()} for k, acc in out.items()}


def test_chunks_cover_every_edge_once_with_disjoint_targets_and_load_as_the_whole_read(monkeypatch):
    config = EXAMPLES / "point_nest" / "config.simulation.json"
    whole = _plan(config, monkeypatch, None)
    assert not any(isinstance(c, EdgeChunk) for c in whole)  # the example is far below the default size
    streamed = _plan(config, monkeypatch, 64)
    chunks = [c for c in streamed if isinstance(c, EdgeChunk)]
    pops = {c.edge_population for c in chunks}
    assert len(pops) >= 2 and len(chunks) > 20
    loaded: list[ConnectionBatch] = []
    for pop in pops:
        mine = [c for c in chunks if c.edge_population == pop]
        sizes = [len(c) for c in mine]
        assert max(sizes) <= 64 + 16 and sizes[0] < sizes[2]  # cut where the target changes; growing
        batches = [b for c in mine for b in c.load()]
        assert sum(len(b) for b in batches) == sum(sizes)
        targets = [np.unique(np.concatenate([b.target_node_ids for b in c.load()])) for c in mine]
        for a, b in zip(targets, targets[1:]):
            assert a.max() < b.min()  # disjoint, ascending: no pair can be in two chunks
        assert {h.edge_type_id for h in mine[0].heads} == {b.edge_type_id for b in batches}
        loaded.extend(batches)
    # every chunk's batches, concatenated per edge type, are the whole read's batches
    rest = [b for b in streamed if isinstance(b, ConnectionBatch)]
    got, want = _by_type(loaded + rest), _by_type(whole)
    assert got.keys() == want.keys()
    for key in want:
        for f in _FIELDS:
            assert np.array_equal(got[key][f], want[key][f]), (key, f)


def test_a_population_whose_targets_are_not_sorted_stays_whole(monkeypatch, tmp_copy):
    ex = tmp_copy("point_nest")
    with h5py.File(ex / "network" / "lgn_cortex_edges.h5", "r+") as f:
        g = f["edges"]["lgn_to_cortex"]
        for key in ("source_node_id", "target_node_id", "edge_type_id", "edge_group_id", "edge_group_index"):
            values = g[key][()]
            values[[0, -1]] = values[[-1, 0]]  # the same edges, the last one first
            g[key][...] = values
        if "indices" in g:
            del g["indices"]
    conns = _plan(ex / "config.simulation.json", monkeypatch, 64)
    assert not any(isinstance(c, EdgeChunk) and c.edge_population == "lgn_to_cortex" for c in conns)
    assert any(isinstance(c, EdgeChunk) and c.edge_population == "cortex_to_cortex" for c in conns)


def test_a_bad_edge_in_a_later_chunk_stops_the_run_before_any_output(tmp_copy):
    ex = tmp_copy("point_nest")
    with h5py.File(ex / "network" / "cortex_cortex_edges.h5", "r+") as f:
        src = f["edges"]["cortex_to_cortex"]["source_node_id"]
        src[-1] = 10_000  # the population has 60 cells: only the last chunk's read sees it
    out = ex / "out"
    env = {"SONATARUN_EDGE_CHUNK": "64"}
    proc = run_sonatarun("run", str(ex / "config.simulation.json"), "--output-dir", str(out), cwd=ex, env=env,
                         check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cortex_to_cortex" in proc.stderr and "beyond the populations' sizes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "spikes.h5").exists() and not (out / "sonatarun.json").exists()
    # validate reads every edge before it answers
    proc = run_sonatarun("validate", str(ex / "config.simulation.json"), cwd=ex, env=env, check=False)
    assert proc.returncode == 2 and "beyond the populations' sizes" in proc.stdout + proc.stderr
    shutil.rmtree(out, ignore_errors=True)

