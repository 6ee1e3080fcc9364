"""The ranks that share memory with this one: shared segments, a barrier, a turn to pass.

Report columns are spread over ranks (each rank records its own cells) but the file wants
whole rows in node-id order. Ranks on one node need not send each other messages: they
assemble rows in memory all of them map (an MPI-3 shared window), each copying its own
columns, and take turns writing them. Only ranks on *other* nodes exchange messages. The
group is ``MPI_COMM_TYPE_SHARED`` (one node); ``group_size`` splits it further, which the
tests use to run the several-node code on one machine.

The window lives in ``/dev/shm``: the writer keeps it within half of what is free there
(Docker's default is 64 MB), so a small ``/dev/shm`` means smaller chunks, not a crash.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from sonatarun.mpi import Comm

SHM_DIR = "/dev/shm"
_TURN = 0x7E11  # turn-passing messages inside a group


def _byte():
    from mpi4py import MPI

    return MPI.BYTE


def shm_free_bytes() -> int | None:
    """Free bytes in ``/dev/shm`` (None when there is no such mount: the MPI may not use it)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


@dataclass
class NodeGroup:
    """This rank's shared-memory group: its world ranks (ascending), shared segments, sync."""

    comm: Comm
    group_size: int | None = None
    members: list[int] = field(init=False)  # world ranks of the group, ascending
    groups: list[list[int]] = field(init=False)  # every group, ordered by its lowest world rank

    def __post_init__(self) -> None:
        self._local = None  # mpi4py intra-group communicator (None: a group of one)
        self._win = None
        self._segs: list[np.ndarray] | None = None
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
        self.index = members.index(self.comm.rank)  # = rank in the group communicator (key = world rank)
        leaders = self.comm.allgather(members[0])
        self.groups = [[r for r in range(self.comm.size) if leaders[r] == lead] for lead in sorted(set(leaders))]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def shared(self) -> bool:
        return self._local is not None and self.size > 1

    def max_bytes(self) -> int | None:
        """The most this group may put in its shared segments (None: no limit), same on all members."""
        if not self.shared:
            return None
        free = shm_free_bytes() if self._local.Get_rank() == 0 else None
        free = self._local.bcast(free, root=0)
        return None if free is None else free // 2

    def barrier(self) -> None:
        """Wait until every member is done with the segments (a no-op in a group of one)."""
        if self.shared:
            self._local.Barrier()

    def ibarrier(self):
        """A non-blocking barrier of the group (an MPI request)."""
        return self._local.Ibarrier()

    def wait_turn(self) -> None:
        """Block until the previous member passes the turn (a 0-byte message)."""
        self._local.Recv([bytearray(0), 0, _byte()], source=(self.index - 1) % self.size, tag=_TURN)

    def pass_turn(self) -> None:
        """Hand the turn to the next member (in world-rank order, wrapping around)."""
        self._local.Send([bytearray(0), 0, _byte()], dest=(self.index + 1) % self.size, tag=_TURN)

    def segments(self, n_values: int, dtype: np.dtype) -> list[np.ndarray]:
        """Every member's segment of a shared window (1-D, ``dtype``), by member position; this
        rank asks for ``n_values`` of its own (collective in the group; kept while big enough
        everywhere). In a group of one: a private array."""
        dtype = np.dtype(dtype)
        sizes = self._local.allgather(int(n_values)) if self.shared else [int(n_values)]
        if self._segs is None or any(have.size < need for have, need in zip(self._segs, sizes)):
            self.free()
            if self.shared:
                from mpi4py import MPI

                grow = [max(need, 1) for need in sizes]  # MPI needs no zero-size special case, numpy does
                self._win = MPI.Win.Allocate_shared(grow[self._local.Get_rank()] * dtype.itemsize,
                                                    dtype.itemsize, comm=self._local)
                self._segs = []
                for i, n in enumerate(grow):
                    mem, _ = self._win.Shared_query(i)
                    self._segs.append(np.ndarray((n,), dtype=dtype, buffer=mem))
            else:
                self._segs = [np.empty(max(sizes[0], 1), dtype=dtype)]
        return self._segs

    def free(self) -> None:
        """Release the segments (collective in the group when shared)."""
        self._segs = None
        if self._win is not None:
            self._win.Free()
            self._win = None

    def close(self) -> None:
        self.free()
        if self._local is not None:
            self._local.Free()
            self._local = None
