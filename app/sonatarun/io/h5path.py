"""Which HDF5 write path this process uses: parallel (MPI-IO) or serial (plain wheel).

Both paths produce files a reader cannot tell apart; they differ only in who touches
the file. ``parallel`` needs an h5py built against parallel HDF5 (``h5py.get_config().mpi``)
and an MPI communicator; every rank then writes its own hyperslab collectively.
``serial`` works with the PyPI wheel: rank 0 creates the file and every rank writes its
own rows of a report with ``os.pwrite`` at the raw offset of the contiguous ``data`` (the
spike writer funnels its rows through rank 0). ``SONATARUN_IO=serial|parallel`` forces a
path (tests use it);
forcing ``parallel`` where it cannot work is an error rather than a silent fallback.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py

from sonatarun.errors import OutputError
from sonatarun.mpi import Comm

PARALLEL = "parallel"
SERIAL = "serial"
ENV = "SONATARUN_IO"


def h5py_has_mpi() -> bool:
    """True when the imported h5py was built against parallel HDF5."""
    return bool(h5py.get_config().mpi)


def choose_io_path(comm: Comm) -> str:
    """Pick ``parallel`` when h5py has MPI and we have a communicator, else ``serial``.

    The choice must be the same on every rank (it decides which collectives run), and it
    is: it depends only on the installed h5py, the environment and the communicator.
    """
    forced = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if forced not in ("auto", SERIAL, PARALLEL):
        raise OutputError(f"unknown I/O path '{forced}'", key=ENV, fix="use serial, parallel or leave it unset")
    can_parallel = h5py_has_mpi() and comm.mpi is not None
    if forced == PARALLEL and not can_parallel:
        why = "h5py was built without MPI" if not h5py_has_mpi() else "MPI is not initialised"
        raise OutputError(f"parallel HDF5 I/O requested but {why}", key=ENV,
                          fix="build h5py with HDF5_MPI=ON (.ci/setup-parallel-h5py.sh) or set SONATARUN_IO=serial")
    if forced == SERIAL:
        return SERIAL
    return PARALLEL if can_parallel else SERIAL


def open_h5(path: Path | str, mode: str, comm: Comm, io_path: str,
            hints: dict[str, str] | None = None) -> h5py.File:
    """Open ``path`` on every rank (parallel, collective) or on the calling rank only (serial).

    The earliest file format is kept on purpose: it writes no consistency flags into the
    superblock, so a file whose writer was killed still opens without ``h5clear``.
    File locking is best-effort: cluster file systems without flock (some NFS/Lustre
    mounts) would otherwise refuse every open. ``hints`` are MPI-IO hints (parallel only).
    """
    if io_path == PARALLEL:
        kw = {}
        if hints:
            from mpi4py import MPI

            info = MPI.Info.Create()
            for k, v in hints.items():
                info.Set(k, v)
            kw["info"] = info
        return h5py.File(path, mode, driver="mpio", comm=comm.mpi, locking="best-effort", **kw)
    return h5py.File(path, mode, locking="best-effort")
