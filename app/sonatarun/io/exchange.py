"""The few collectives the writers need, on numpy arrays, with a no-MPI fallback.

Arrays travel as raw bytes (``MPI.BYTE``) so one routine moves any dtype, including the
structured (node_id, time) records of spikes, without per-dtype MPI datatypes.
"""
from __future__ import annotations

import numpy as np

from sonatarun.mpi import Comm


def _multi_rank(comm: Comm) -> bool:
    return comm.mpi is not None and comm.size > 1


def offsets(comm: Comm, n_local: int) -> tuple[int, int]:
    """(exclusive prefix sum of ``n_local`` over ranks, total): where this rank's rows go."""
    if not _multi_rank(comm):
        return 0, int(n_local)
    counts = comm.allgather(int(n_local))
    return int(sum(counts[: comm.rank])), int(sum(counts))


def alltoallv(comm: Comm, parts: list[np.ndarray], dtype: np.dtype) -> list[np.ndarray]:
    """Send ``parts[d]`` (1-D, ``dtype``) to rank ``d``; return what each rank sent us, by source.

    A gather to one writer rank is the special case where only ``parts[root]`` is non-empty,
    so the serial and the parallel paths share this one exchange.
    """
    dtype = np.dtype(dtype)
    if not _multi_rank(comm):
        return [np.ascontiguousarray(parts[0], dtype=dtype)]
    from mpi4py import MPI

    mpi = comm.mpi
    size = comm.size
    assert len(parts) == size
    send = [np.ascontiguousarray(p, dtype=dtype).view(np.uint8).reshape(-1) for p in parts]
    scounts = np.array([s.size for s in send], dtype=np.int64)
    rcounts = np.empty(size, dtype=np.int64)
    mpi.Alltoall(scounts, rcounts)
    sdispl = np.concatenate(([0], np.cumsum(scounts)[:-1])).astype(np.int64)
    rdispl = np.concatenate(([0], np.cumsum(rcounts)[:-1])).astype(np.int64)
    sbuf = np.concatenate(send) if send else np.zeros(0, np.uint8)
    rbuf = np.empty(int(rcounts.sum()), dtype=np.uint8)
    mpi.Alltoallv([sbuf, (scounts, sdispl), MPI.BYTE], [rbuf, (rcounts, rdispl), MPI.BYTE])
    return [rbuf[rdispl[s]: rdispl[s] + rcounts[s]].view(dtype) for s in range(size)]


def allgather_array(comm: Comm, arr: np.ndarray) -> list[np.ndarray]:
    """Every rank's ``arr`` (1-D), by rank: used once at open for the small cell maps."""
    arr = np.ascontiguousarray(arr)
    if not _multi_rank(comm):
        return [arr]
    return comm.allgather(arr)


def barrier(comm: Comm) -> None:
    comm.barrier()
