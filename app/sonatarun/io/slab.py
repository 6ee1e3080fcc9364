"""Dataset creation and hyperslab writes shared by the spike and report writers.

Writes go through h5py's low-level API so that, on the parallel path, every rank takes
part in every collective write even when its own selection is empty (h5py's high-level
``ds[a:b] = x`` skips empty selections, which would hang the other ranks).
"""
from __future__ import annotations

import os

import numpy as np
import h5py
from h5py import h5d, h5p, h5s


def create_fixed(group: h5py.Group, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
    """A contiguous dataset whose space is allocated now and never filled.

    Early allocation means later block writes touch only raw data, never file metadata,
    so a process killed in the middle of a block write leaves a file that still opens.
    Skipping the fill keeps creation O(1) even for a large report.
    """
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
    return group.create_dataset(name, shape=shape, dtype=dtype, dcpl=dcpl, track_times=False)


def create_growable(group: h5py.Group, name: str, dtype, chunk: int = 1 << 13) -> h5py.Dataset:
    """A 1-D chunked dataset that grows block by block (spikes, whose count is unknown)."""
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,),
                                track_times=False)


def write_rows(ds: h5py.Dataset, start: int, arr: np.ndarray, collective: bool) -> None:
    """Write ``arr`` (n rows × the dataset's other dims) at row ``start``.

    With ``collective`` every rank must call this, each with its own rows (possibly none).
    """
    if ds.size == 0:  # same on every rank; an empty contiguous dataset has no address to write at
        return
    arr = np.ascontiguousarray(arr, dtype=ds.dtype)
    fspace = ds.id.get_space()
    n = arr.shape[0] if arr.ndim else 0
    if n == 0:
        if not collective:
            return
        fspace.select_none()
        mspace = h5s.create_simple((1,))
        mspace.select_none()
        arr = np.zeros(1, dtype=ds.dtype)
    else:
        tail = ds.shape[1:]
        fspace.select_hyperslab((start,) + (0,) * len(tail), (n,) + tuple(tail))
        mspace = h5s.create_simple(arr.shape)
    dxpl = None
    if collective:
        from h5py import h5fd

        dxpl = h5p.create(h5p.DATASET_XFER)
        dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
    ds.id.write(mspace, fspace, arr, dxpl=dxpl)


def raw_offset(ds: h5py.Dataset) -> int | None:
    """File offset of a contiguous, allocated, unfiltered dataset's raw bytes (None if it has none).

    Such a dataset's elements are plain row-major bytes at one address, so a writer may put
    rows there with ``os.pwrite`` (no HDF5 library needed, no metadata touched). Anything else
    (chunked, compact, not allocated) returns None.
    """
    if ds.chunks is not None or ds.compression is not None:
        return None
    if ds.id.get_create_plist().get_layout() != h5d.CONTIGUOUS:
        return None
    off = ds.id.get_offset()
    return None if off is None else int(off)


def pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    """Write all of C-contiguous ``arr`` at ``offset`` (``os.pwrite`` may write less than asked)."""
    view = memoryview(np.ascontiguousarray(arr)).cast("B")
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(f"pwrite wrote nothing at offset {offset + done}")
        done += n
