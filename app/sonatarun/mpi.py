"""The one MPI communicator object sonatarun uses.

mpi4py must be imported before NEURON so NEURON joins the same MPI world, and
NEURON finds the MPI library only through ``MPI_LIB_NRN_PATH``; both are handled here
once, so no other module touches MPI initialisation.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


def find_libmpi() -> str | None:
    """Locate libmpi.so.12 (the MPICH ABI) the way a user's environment would provide it."""
    explicit = os.environ.get("MPI_LIB_NRN_PATH")
    if explicit and os.path.exists(explicit):
        return explicit
    candidates = [Path(sys.prefix) / "lib" / "libmpi.so.12", Path(sys.prefix) / "lib" / "libmpi.so"]
    for c in candidates:
        if c.exists():
            return str(c)
    try:
        import mpi4py

        cfg = mpi4py.get_config()  # type: ignore[attr-defined]
        for key in ("mpicc",):
            if cfg.get(key):
                libdir = Path(cfg[key]).resolve().parent.parent / "lib"
                hits = sorted(glob.glob(str(libdir / "libmpi.so*")))
                if hits:
                    return hits[0]
    except Exception:  # pragma: no cover - best effort only
        pass
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        hits = sorted(glob.glob(os.path.join(d, "libmpi.so.12*")) + glob.glob(os.path.join(d, "libmpich.so.12*")))
        if hits:
            return hits[0]
    return None


def loaded_libmpi() -> str | None:
    """Path of the MPI library this process has mapped (the one mpi4py chose).

    If several are mapped (a system MPI pulled in by another library), the one in this
    environment's prefix wins: that is where mpi4py looks first.
    """
    found: list[str] = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1] if line.strip() else ""
                if os.path.basename(path).startswith(("libmpi.so", "libmpich.so", "libmpi_abi.so")) \
                        and path not in found:
                    found.append(path)
    except OSError:
        return None
    own = [p for p in found if p.startswith(os.path.join(sys.prefix, ""))]
    return (own or found or [None])[0]


def _share_libmpi_with_neuron() -> None:
    """Make the MPI library mpi4py loaded visible to NEURON.

    NEURON first looks for an MPI already in the process (``MPI_Initialized`` in the
    global namespace) and otherwise dlopens ``libmpi.so`` from the system paths before
    ``MPI_LIB_NRN_PATH``. mpi4py loads its library privately, so on a host that also has
    a system MPI (Debian's MPICH for parallel HDF5, a cluster module) NEURON would bind
    to a second, different MPI in the same process and crash in the first collective.
    Promoting mpi4py's library to RTLD_GLOBAL makes NEURON reuse it.
    """
    import ctypes

    path = loaded_libmpi()
    if path:
        ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
        os.environ["MPI_LIB_NRN_PATH"] = path


def launched_under_mpi() -> bool:
    """True when a process manager started us as one of several ranks."""
    keys = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_PROCID",
            "HYDI_CONTROL_FD", "PMI_FD")
    return any(k in os.environ for k in keys)


@dataclass
class Comm:
    """Thin wrapper over mpi4py's COMM_WORLD that also works without MPI (one rank)."""

    _comm: object | None = None

    @cached_property
    def rank(self) -> int:
        return self._comm.Get_rank() if self._comm is not None else 0  # type: ignore[attr-defined]

    @cached_property
    def size(self) -> int:
        return self._comm.Get_size() if self._comm is not None else 1  # type: ignore[attr-defined]

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def mpi(self):
        """The mpi4py communicator, or None when running without MPI."""
        return self._comm

    def barrier(self) -> None:
        if self._comm is not None and self.size > 1:
            self._comm.Barrier()  # type: ignore[attr-defined]

    def bcast(self, obj, root: int = 0):
        if self._comm is None or self.size == 1:
            return obj
        return self._comm.bcast(obj, root=root)  # type: ignore[attr-defined]

    def gather(self, obj, root: int = 0):
        if self._comm is None or self.size == 1:
            return [obj]
        return self._comm.gather(obj, root=root)  # type: ignore[attr-defined]

    def allgather(self, obj):
        if self._comm is None or self.size == 1:
            return [obj]
        return self._comm.allgather(obj)  # type: ignore[attr-defined]

    def allreduce_max(self, value):
        if self._comm is None or self.size == 1:
            return value
        from mpi4py import MPI

        return self._comm.allreduce(value, op=MPI.MAX)  # type: ignore[attr-defined]

    def allreduce_sum(self, value):
        if self._comm is None or self.size == 1:
            return value
        from mpi4py import MPI

        return self._comm.allreduce(value, op=MPI.SUM)  # type: ignore[attr-defined]


_WORLD: Comm | None = None


def world() -> Comm:
    """Return the process-wide communicator, initialising MPI on first use.

    MPI is initialised only when a process manager launched us or mpi4py is
    already imported, so a plain ``sonatarun run`` on a laptop needs no MPI at all.
    """
    global _WORLD
    if _WORLD is None:
        comm = None
        if launched_under_mpi() or "mpi4py.MPI" in sys.modules:
            lib = find_libmpi()
            if lib and "MPI_LIB_NRN_PATH" not in os.environ:
                os.environ["MPI_LIB_NRN_PATH"] = lib
            from mpi4py import MPI

            _share_libmpi_with_neuron()
            comm = MPI.COMM_WORLD
        _WORLD = Comm(comm)
    return _WORLD
