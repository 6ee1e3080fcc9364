"""Huge pages for a run's large allocations, through glibc's malloc (opt-in).

A network's connections live in the simulator's heap: NEST's connection vectors grow to
GBs at 100k neurons and 10M edges. With the kernel's transparent huge pages in "madvise"
mode (Debian's and Ubuntu's default) heap memory gets 4 KiB pages unless someone asks, and
every pass of the simulation over the connections then misses the TLB. glibc (>= 2.35)
asks for the process when it starts with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``; the
tunable is read only at process start, so with ``SONATARUN_HUGEPAGES=1`` the ``sonatarun
run`` command re-executes itself once with it set, before any import of consequence.

Measured on the point-neuron benchmark (1 thread, 2026-12-02, alternating runs): simulation
6-12% faster (100k cells: 24.2-24.3 s against 25.4-26.3 s), build slower (100k: +0.3-0.4 s;
10k: +0.1-0.15 s, a quarter of its build), because each 2 MiB page is zeroed, and compacted
for when the kernel has none free, at the first touch. Hence off by default (build speed is
what most runs feel) and worth turning on for long simulations.

Nothing changes where it cannot help or the user chose: other systems, an older glibc,
THP "always" (already huge) or "never", a tunable already set.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing/collections.abc cost ~10 ms, paid before the re-exec
if TYPE_CHECKING:
    from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb=1"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_at_least(major: int, minor: int) -> bool:
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
        got = tuple(int(p) for p in version.split(".")[:2])
    except (ValueError, OSError, AttributeError):
        return False
    return name == "glibc" and got >= (major, minor)


def wanted(environ: Mapping[str, str] = os.environ, thp_mode_file: str = _THP_MODE) -> bool:
    """True when a re-exec with the tunable would give the process huge pages it lacks."""
    if not sys.platform.startswith("linux") or environ.get("SONATARUN_HUGEPAGES", "0") != "1":
        return False
    if "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        with open(thp_mode_file, encoding="ascii") as fh:
            if "[madvise]" not in fh.read():
                return False
    except OSError:
        return False
    return _glibc_at_least(2, 35)


def environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`environ` with the tunable added (other tunables kept)."""
    env = dict(environ)
    env["GLIBC_TUNABLES"] = ":".join(t for t in (env.get("GLIBC_TUNABLES", ""), TUNABLE) if t)
    return env


def reexec_if_wanted() -> None:
    """Replace this process by the same command line with huge pages, where that helps.

    Same pid, arguments, interpreter options and open files (MPI launchers' and Slurm's
    process managers keep working); returns only when nothing is to be done or exec fails.
    """
    if not wanted():
        return
    argv = list(getattr(sys, "orig_argv", []))
    if not argv or not sys.executable:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *argv[1:]], environment())
    except OSError:
        return  # run as is: huge pages are a speed-up, never a requirement
