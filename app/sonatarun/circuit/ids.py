"""Distinct values of id columns (types, groups) without numpy's general unique: one
bincount pass, no sort of millions of entries (and numpy 2's unique imports numpy.ma,
~18 ms of every run's start-up)."""
from __future__ import annotations

import numpy as np


def small_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for arrays of small non-negative ids (edge types, group ids) without sorting them:
    one bincount pass instead of an O(n log n) sort of millions of edges."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(values.min()), int(values.max())
    if 0 <= lo and hi - lo < 8:  # a few ids (the usual file): one comparison pass per id between
        return np.array([v for v in range(lo, hi + 1) if v in (lo, hi) or (values == v).any()], dtype=np.int64)
    if lo < 0 or hi - lo > max(1 << 16, len(values)):
        return np.unique(values).astype(np.int64)
    shifted = (values - lo if lo else values).astype(np.intp, copy=False)
    return np.flatnonzero(np.bincount(shifted, minlength=hi - lo + 1)) + lo
