"""The ranks that share memory with this one, and a row buffer they assemble report rows in.

Report columns are spread over ranks (each rank records its own cells) but the file wants
whole rows in node-id order. Ranks on one node need not send each other anything: each
copies its own columns straight into a buffer all of them map (an MPI-3 shared window),
then each writes its own contiguous row range out of it. Only ranks on *other* nodes
exchange messages. The group is ``MPI_COMM_TYPE_SHARED`` (one node); ``group_size`` splits
it further, which the tests use to run the several-node code on one machine.

The window lives in ``/dev/shm``: its size is capped to half of what is free there
(Docker's default is 64 MB), so a small ``/dev/shm`` means more, smaller slices rather than
a crash.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from sonatarun.mpi import Comm

SHM_DIR = "/dev/shm"


def shm_free_bytes() -> int | None:
    """Free bytes in ``/dev/shm`` (None when there is no such mount: the MPI may not use it)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


@dataclass
class NodeGroup:
    """This rank's shared-memory group: its world ranks (ascending) and a shared row buffer."""

    comm: Comm
    group_size: int | None = None
    members: list[int] = field(init=False)  # world ranks of the group, ascending
    groups: list[list[int]] = field(init=False)  # every group, ordered by its lowest world rank

    def __post_init__(self) -> None:
        self._local = None  # mpi4py intra-group communicator (None: a group of one)
        self._win = None
        self._buf: np.ndarray | None = None
        mpi = self.comm.mpi
        if mpi is not None and self.comm.size > 1:
            from mpi4py import MPI

            node = mpi.Split_type(MPI.COMM_TYPE_SHARED, key=self.comm.rank)
            if self.group_size:
                sub = node.Split(node.Get_rank() // max(1, int(self.group_size)), key=self.comm.rank)
                node.Free()
                node = sub
            self._local = node
            members = sorted(node.allgather(self.comm.rank))
        else:
            members = [self.comm.rank]
        self.members = members
        leaders = self.comm.allgather(members[0])
        self.groups = [[r for r in range(self.comm.size) if leaders[r] == lead] for lead in sorted(set(leaders))]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def shared(self) -> bool:
        return self._local is not None and self.size > 1

    def max_bytes(self) -> int | None:
        """The most this group may put in one shared buffer (None: no limit), same on all members."""
        if not self.shared:
            return None
        free = shm_free_bytes() if self._local.Get_rank() == 0 else None
        free = self._local.bcast(free, root=0)
        return None if free is None else free // 2

    def barrier(self) -> None:
        """Wait until every member is done with the buffer (a no-op in a group of one)."""
        if self.shared:
            self._local.Barrier()

    def buffer(self, rows: int, n_cols: int, dtype: np.dtype) -> np.ndarray:
        """A [rows × n_cols] buffer every member sees (collective in the group; reused when big enough)."""
        need = rows * n_cols
        if self._buf is None or self._buf.size < need:
            self.free()
            if self.shared:
                from mpi4py import MPI

                item = np.dtype(dtype).itemsize
                mine = need * item if self._local.Get_rank() == 0 else 0
                self._win = MPI.Win.Allocate_shared(mine, item, comm=self._local)
                mem, _ = self._win.Shared_query(0)
                self._buf = np.ndarray((need,), dtype=dtype, buffer=mem)
            else:
                self._buf = np.empty(need, dtype=dtype)
        return self._buf[:need].reshape(rows, n_cols)

    def free(self) -> None:
        """Release the buffer (collective in the group when shared)."""
        self._buf = None
        if self._win is not None:
            self._win.Free()
            self._win = None

    def close(self) -> None:
        self.free()
        if self._local is not None:
            self._local.Free()
            self._local = None
