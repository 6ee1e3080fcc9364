"""Placing one rank's report columns at their global (node-id order) positions in a row block.

A rank's columns land in the global row as *runs* of consecutive columns (one run per
cell, or longer when cells follow each other). Copying them is the report writer's
only per-value work besides the write itself, so the copy is picked for the pattern:

- ``identity``: the rank's row is the global row (one rank, or all cells its own in order);
  nothing to copy.
- ``compiled``: any other pattern, when the C run copy (:mod:`sonatarun.io.run_copy`)
  is available: one ``memcpy`` per run, every row of a chunk in one call.

Without a C compiler (or with ``SONATARUN_PLACEMENT=numpy``) numpy does it, with the
same bytes as the result:

- ``slices``: a few long runs: one numpy slice copy per run.
- ``units``: many runs: every run length is a multiple of ``g`` columns (their gcd), so
  the source row is an array of ``g``-column items and one fancy-index assignment moves
  them all. Copying 50-column items this way runs at ~2x the speed of per-run slice
  copies (numpy's per-row overhead dominates 200-byte slices); with ``g == 1`` it is the
  plain element gather.

Measured on the benchmark pattern (200-byte runs from 2 ranks, 200 MB in 1 MB chunks, one
process, quiet): slices 1.3 GB/s, units 2.6-3 GB/s, compiled 4-6.5 GB/s, a contiguous copy
of the same bytes 9 GB/s. With two ranks copying (and writing) at once on two cores the copy
is memory-bound and the compiled one saves ~20%, not 60% (docs/io.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from math import gcd

import numpy as np

from sonatarun.io import run_copy

DTYPE = np.dtype("<f4")  # report data: float32 little-endian (libsonata reads only float32)
SLICE_MIN_COLS = 256  # runs at least this long (1 KB) are copied as slices, if few
MAX_SLICE_RUNS = 64  # beyond this many runs, one fancy assignment beats a Python loop of slices


def compiled_copy():
    """The C run copy, unless ``SONATARUN_PLACEMENT=numpy`` asks for numpy (None: numpy)."""
    if os.environ.get("SONATARUN_PLACEMENT", "").strip().lower() == "numpy":
        return None
    return run_copy.load()


@dataclass
class Placement:
    """Where one source rank's columns go in the global row (``cols[j]`` = global column of local j)."""

    cols: np.ndarray
    n_elements: int
    method: str = field(init=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.cols, dtype=np.int64)
        self.cols = c
        self.n_cols = len(c)
        if len(c):
            breaks = np.flatnonzero(np.diff(c) != 1) + 1
            starts = np.concatenate(([0], breaks)).astype(np.int64)
            lengths = np.diff(np.concatenate((starts, [len(c)]))).astype(np.int64)
        else:
            starts = lengths = np.zeros(0, np.int64)
        self.run_src = starts
        self.run_dst = c[starts] if len(c) else np.zeros(0, np.int64)
        self.run_lengths = lengths
        if len(c) == 0:
            self.method = "empty"
        elif len(c) == self.n_elements and len(starts) == 1 and c[0] == 0:
            self.method = "identity"
        elif (fn := compiled_copy()) is not None:
            self.method = "compiled"
            self._copy = fn
            self._runs = run_copy.RunTable(starts, self.run_dst, lengths, DTYPE.itemsize)
        elif len(starts) <= MAX_SLICE_RUNS and lengths.mean() >= SLICE_MIN_COLS:
            self.method = "slices"
        else:
            self.method = "units"
            g = 0
            for m in np.unique(lengths):
                g = gcd(g, int(m))
            self.unit = g
            # destination column of each g-column item of the source row, in source order
            per_run = lengths // g
            first = np.repeat(self.run_dst, per_run)
            within = np.arange(int(per_run.sum()), dtype=np.int64) - np.repeat(np.cumsum(per_run) - per_run, per_run)
            self.unit_dst = first + within * g

    @property
    def identity(self) -> bool:
        return self.method == "identity"

    def scatter(self, src: np.ndarray, out: np.ndarray) -> None:
        """Copy ``src`` [rows × n_cols] into the columns of ``out`` [rows × n_elements] it owns.

        ``src`` must be C-contiguous float32, ``out`` whole contiguous rows (a chunk of the ring).
        """
        if self.method in ("empty",) or src.shape[0] == 0:
            return
        if self.method == "identity":
            out[...] = src
        elif self.method == "compiled":
            if src.dtype != DTYPE or out.dtype != DTYPE or src.shape[1] != self.n_cols \
                    or out.shape[1] != self.n_elements:
                raise ValueError(f"placement: source {src.dtype}{src.shape} / destination "
                                 f"{out.dtype}{out.shape} do not fit {self.n_cols} -> {self.n_elements} columns")
            self._runs.copy(self._copy, src, out)
        elif self.method == "slices":
            for a, d, m in zip(self.run_src.tolist(), self.run_dst.tolist(), self.run_lengths.tolist()):
                out[:, d:d + m] = src[:, a:a + m]
        elif self.unit == 1:
            out[:, self.cols] = src
        else:
            g = self.unit
            item = np.dtype(f"V{g * out.itemsize}")
            src_u = src.view(item)  # [rows × n_cols/g] items, in source order
            # every column start of ``out`` as an item (items overlap; only disjoint ones are written)
            dst_u = np.ndarray((out.shape[0], self.n_elements - g + 1), dtype=item, buffer=out,
                               strides=(out.strides[0], out.itemsize))
            dst_u[:, self.unit_dst] = src_u
