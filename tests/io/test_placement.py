"""Column placement: the compiled run copy and numpy's paths give the same bytes, and a machine
without a C compiler falls back to numpy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sonatarun.io import placement as pl
from sonatarun.io import run_copy
from sonatarun.util.native import c_compiler

# (global columns, this rank's cells' column counts, ranks dealt round-robin): the benchmark's
# 50-column cells, uneven cells, single columns, long runs (numpy's slices), 3-column items
PATTERNS = {
    "bench": ([50] * 40, 2),
    "uneven": ([1 + (7 * i) % 13 for i in range(60)], 3),
    "single": ([1] * 200, 2),
    "long": ([700, 300, 900, 1200], 2),
    "items3": ([3, 6, 9, 3] * 10, 2),
}


def _cols(counts: list[int], ranks: int, rank: int) -> tuple[np.ndarray, int]:
    starts = np.concatenate(([0], np.cumsum(counts)))
    mine = [np.arange(starts[i], starts[i + 1]) for i in range(len(counts)) if i % ranks == rank]
    return np.concatenate(mine).astype(np.int64), int(starts[-1])


def _place_all(method: str, counts: list[int], ranks: int, rows: int) -> np.ndarray:
    """Every rank's columns placed into one chunk of rows, as the ranks of a node do."""
    ring = np.full((rows, sum(counts)), np.nan, np.float32)
    for rank in range(ranks):
        cols, n_el = _cols(counts, ranks, rank)
        p = pl.Placement(cols, n_el)
        assert p.method == method, (p.method, method)
        src = np.random.default_rng(rank).standard_normal((rows, len(cols))).astype(np.float32)
        p.scatter(src, ring)
    return ring


def _force_numpy(monkeypatch, method: str) -> None:
    monkeypatch.setenv("SONATARUN_PLACEMENT", "numpy")
    if method == "slices":
        monkeypatch.setattr(pl, "MAX_SLICE_RUNS", 1 << 62)
        monkeypatch.setattr(pl, "SLICE_MIN_COLS", 0)
    else:
        monkeypatch.setattr(pl, "MAX_SLICE_RUNS", 0)


def test_this_machine_builds_the_compiled_copy() -> None:
    """The test environment (and CI) has a C compiler: the fast path is the one tested here."""
    assert c_compiler() is not None, "no C compiler (cc/gcc): install gcc"
    assert run_copy.load() is not None


@pytest.mark.parametrize("name", list(PATTERNS))
def test_compiled_and_numpy_placements_give_identical_bytes(name: str, monkeypatch) -> None:
    counts, ranks = PATTERNS[name]
    compiled = _place_all("compiled", counts, ranks, rows=7)
    assert not np.isnan(compiled).any()  # every column placed by exactly one rank
    for method in ("units", "slices"):
        with monkeypatch.context() as m:
            _force_numpy(m, method)
            other = _place_all(method, counts, ranks, rows=7)
        assert other.tobytes() == compiled.tobytes(), method


def test_compiled_copy_refuses_buffers_that_do_not_fit() -> None:
    cols, n_el = _cols([50] * 10, 2, 0)
    p = pl.Placement(cols, n_el)
    assert p.method == "compiled"
    src = np.zeros((4, len(cols)), np.float32)
    for bad_src, bad_out in [(src, np.zeros((4, n_el - 1), np.float32)),  # too narrow
                             (src, np.zeros((3, n_el), np.float32)),  # fewer rows
                             (src[:, ::2], np.zeros((4, n_el), np.float32)),  # not the right columns
                             (src.astype(np.float64), np.zeros((4, n_el), np.float32))]:
        with pytest.raises(ValueError):
            p.scatter(bad_src, bad_out)


_CHILD = """
import json, sys
import numpy as np
from sonatarun.io import placement as pl
cols = np.concatenate([np.arange(i * 50, i * 50 + 50) for i in range(0, 40, 2)])
p = pl.Placement(cols, 2000)
src = np.arange(5 * len(cols), dtype=np.float32).reshape(5, -1)
out = np.zeros((5, 2000), np.float32)
p.scatter(src, out)
sys.stdout.buffer.write(json.dumps({"method": p.method}).encode() + b"\\n" + out.tobytes())
"""


def _child(env: dict) -> tuple[str, bytes]:
    proc = subprocess.run([sys.executable, "-c", _CHILD], env={**os.environ, **env}, capture_output=True,
                          check=True)
    head, _, body = proc.stdout.partition(b"\n")
    return json.loads(head)["method"], body


def test_without_a_compiler_placement_falls_back_to_numpy_with_the_same_bytes(tmp_path: Path) -> None:
    """A fresh cache and no compiler (CC names none): numpy's items; with cc: compiled and cached."""
    method, no_cc = _child({"SONATARUN_CACHE": str(tmp_path / "a"), "CC": str(tmp_path / "no-such-cc")})
    assert method == "units"
    assert not list((tmp_path / "a").rglob("*.so"))
    method, with_cc = _child({"SONATARUN_CACHE": str(tmp_path / "b"), "CC": c_compiler()})
    assert method == "compiled"
    assert len(list((tmp_path / "b" / "native").rglob("libsonatarun_runs.so"))) == 1
    assert with_cc == no_cc
    method, again = _child({"SONATARUN_CACHE": str(tmp_path / "b"), "CC": str(tmp_path / "no-such-cc")})
    assert method == "compiled" and again == no_cc  # the cached library needs no compiler
