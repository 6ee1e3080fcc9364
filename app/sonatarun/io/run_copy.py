"""Copying runs of bytes between rows in C: the report writer's column placement at memory speed.

A rank's report columns land in the global row as runs (one per cell, typically 50-500
bytes). numpy copies such runs at 2.3-3.4 GB/s, its per-piece overhead dominating; a plain
``memcpy`` per run, every row of a chunk in one call, runs near a contiguous copy's speed.
The routine is compiled once with the system C compiler (:mod:`sonatarun.util.native`)
and loaded with ctypes; :func:`load` returns None where that is impossible (no compiler,
no writable cache), and the caller keeps numpy's path, which gives the same bytes.
"""
from __future__ import annotations

import ctypes

import numpy as np

from sonatarun.util.native import load_function

SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* For each of `rows` rows: copy run i (len[i] bytes at src_off[i] of the source row) to
   dst_off[i] of the destination row. Rows are src_stride / dst_stride bytes apart. */
void copy_runs(const char *src, int64_t src_stride, char *dst, int64_t dst_stride, int64_t rows,
               const int64_t *src_off, const int64_t *dst_off, const int64_t *len, int64_t n_runs)
{
    for (int64_t r = 0; r < rows; r++) {
        const char *s = src + r * src_stride;
        char *d = dst + r * dst_stride;
        for (int64_t i = 0; i < n_runs; i++)
            memcpy(d + dst_off[i], s + src_off[i], (size_t)len[i]);
    }
}
"""

def load():
    """The compiled ``copy_runs`` (a ctypes function), or None where it cannot be built (logged once)."""
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return load_function("sonatarun_runs", SOURCE, "copy_runs", [ptr, i64, ptr, i64, i64, ptr, ptr, ptr, i64], None,
                         what="report column placement")


class RunTable:
    """Byte runs of one placement (source offset, destination offset, length), kept alive for C."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, lengths: np.ndarray, itemsize: int) -> None:
        self.src = np.ascontiguousarray(src, dtype=np.int64) * itemsize
        self.dst = np.ascontiguousarray(dst, dtype=np.int64) * itemsize
        self.len = np.ascontiguousarray(lengths, dtype=np.int64) * itemsize
        if not (len(self.src) == len(self.dst) == len(self.len)) or (self.src < 0).any() \
                or (self.dst < 0).any() or (self.len < 0).any():
            raise ValueError("run copy: runs need non-negative offsets and lengths, as many of each")
        self.src_end = int((self.src + self.len).max()) if len(self.len) else 0
        self.dst_end = int((self.dst + self.len).max()) if len(self.len) else 0

    def copy(self, fn, src: np.ndarray, out: np.ndarray) -> None:
        """Copy every run of every row of ``src`` into ``out`` (same row count; rows of either
        may be any stride apart, but each row must be contiguous and long enough)."""
        rows = src.shape[0]
        if out.shape[0] != rows or src.ndim != 2 or out.ndim != 2:
            raise ValueError(f"run copy: source {src.shape} and destination {out.shape} disagree")
        if src.strides[1] != src.itemsize or out.strides[1] != out.itemsize \
                or src.shape[1] * src.itemsize < self.src_end or out.shape[1] * out.itemsize < self.dst_end:
            raise ValueError("run copy: rows must be contiguous and hold every run")
        if not out.flags.writeable:
            raise ValueError("run copy: destination is read-only")
        if rows == 0 or not len(self.len):
            return
        fn(src.ctypes.data, src.strides[0], out.ctypes.data, out.strides[0], rows,
           self.src.ctypes.data, self.dst.ctypes.data, self.len.ctypes.data, len(self.len))
