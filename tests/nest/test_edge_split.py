"""The plan's fast edge paths (what a 10M-edge NEST build spends its planning time on) give
exactly what the straightforward code gives: the (edge type, edge group) split equals a stable
lexsort cut at key changes, and read_columns equals a naive read of every row, for files
whose edge groups interleave and whose group indices are out of order.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from sonatarun.circuit.edges import EdgePopulation, read_rows, small_unique
from sonatarun.simulation.network import split_by_type_and_group


def _reference_split(edge_type: np.ndarray, group_id: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    order = np.lexsort((group_id, edge_type))
    keys = np.stack([edge_type[order], group_id[order]])
    cuts = np.flatnonzero(np.any(np.diff(keys, axis=1) != 0, axis=0)) + 1
    return [(int(edge_type[p[0]]), int(group_id[p[0]]), p) for p in np.split(order, cuts)]


@pytest.mark.parametrize("n_types, type_base, n_groups", [
    (1, 100, 1), (2, 100, 1), (1, 7, 3), (5, 0, 2), (40, 1000, 1), (300, 5, 2), (3, 10**9, 2)])
def test_split_equals_stable_lexsort(n_types, type_base, n_groups):
    rng = np.random.default_rng(n_types * 7 + n_groups)
    n = 5000
    types = rng.choice(np.arange(n_types) * (1 if type_base < 10**9 else 10**6) + type_base, n)
    groups = rng.integers(0, n_groups, n)
    ref = _reference_split(types.astype(np.int64), groups.astype(np.int64))
    # ids as int64 and as the uint32 that files usually hold (the plan keeps those as read)
    for dtype in (np.int64, np.uint32):
        got = split_by_type_and_group(types.astype(dtype), groups.astype(dtype))
        assert [(t, g) for t, g, _ in got] == [(t, g) for t, g, _ in ref]
        for (_, _, p), (_, _, q) in zip(got, ref):
            assert np.array_equal(np.arange(n) if p is None else p, q)


def test_small_unique_and_read_rows(tmp_path: Path):
    values = np.array([5, 3, 3, 9, 5], dtype=np.uint32)
    assert small_unique(values).tolist() == [3, 5, 9]
    assert small_unique(np.array([2**40, 1], dtype=np.uint64)).tolist() == [1, 2**40]
    with h5py.File(tmp_path / "d.h5", "w") as f:
        ds = f.create_dataset("x", data=np.arange(100) * 10)
        for ids in ([4], [3, 4, 5, 6], [0, 2, 3, 9], [7, 7, 8], list(range(100)), [1, 1, 2]):
            assert read_rows(ds, np.array(ids)).tolist() == (np.array(ids) * 10).tolist(), ids


def test_read_columns_with_interleaved_groups_equals_a_naive_read(tmp_path: Path):
    rng = np.random.default_rng(5)
    n = 400
    group_id = rng.integers(0, 2, n).astype(np.uint32)
    group_index = np.zeros(n, dtype=np.uint64)
    sizes = {}
    for g in (0, 1):
        rows = np.flatnonzero(group_id == g)
        # group 1's rows out of edge order; group 0's in order (read as one slice per column)
        group_index[rows] = rng.permutation(len(rows)) if g == 1 else np.arange(len(rows))
        sizes[g] = len(rows)
    cols = {0: {"syn_weight": rng.uniform(0, 1, sizes[0]), "nsyns": rng.integers(1, 4, sizes[0]).astype(np.uint16)},
            1: {"syn_weight": rng.uniform(0, 1, sizes[1]), "delay": rng.uniform(1, 2, sizes[1])}}
    path = tmp_path / "edges.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("edges/e")
        g.create_dataset("source_node_id", data=rng.integers(0, 50, n).astype(np.uint64)).attrs["node_population"] = "a"
        g.create_dataset("target_node_id", data=np.sort(rng.integers(0, 50, n)).astype(np.uint64)).attrs[
            "node_population"] = "a"
        g.create_dataset("edge_type_id", data=rng.integers(100, 103, n).astype(np.uint32))
        g.create_dataset("edge_group_id", data=group_id)
        g.create_dataset("edge_group_index", data=group_index)
        for gid, c in cols.items():
            for name, values in c.items():
                g.create_dataset(f"{gid}/{name}", data=values)
    types = tmp_path / "types.csv"
    types.write_text("edge_type_id delay\n100 1.0\n101 1.0\n102 1.0\n")
    pop = EdgePopulation.open_all(path, types)[0]
    for selection in (np.arange(n), np.sort(rng.choice(n, 150, replace=False)), np.arange(40, 90)):
        got = pop.read_columns(selection, every_edge=len(selection) == n)
        for col in ("syn_weight", "delay", "nsyns"):
            want = np.full(len(selection), np.nan)
            for k, e in enumerate(selection):
                g = int(group_id[e])
                if col in cols[g]:
                    want[k] = cols[g][col][int(group_index[e])]
            assert np.array_equal(np.asarray(got.columns[col], dtype=float), want, equal_nan=True), col
        assert got.source.dtype == np.int64 and got.group_index.dtype == np.int64
        assert np.array_equal(got.group_index, group_index[selection].astype(np.int64))
