"""The NEST kernel: imported quietly, reset and configured once per run.

NEST is imported lazily (importing it prints a banner and costs ~0.5 s), and
only here, so every other module of the engine receives the module object.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sonatarun.engines.base import RunSettings
from sonatarun.errors import EngineError
from sonatarun.mpi import Comm


def import_nest(quiet: bool = True):
    """Import pynest without its banner and with warnings-only logging."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    # Launchers set OMP_NUM_THREADS for NEURON/BLAS; NEST ignores it (threads come from
    # local_num_threads) but says so at import, on every run: hide it from the import only.
    omp = os.environ.pop("OMP_NUM_THREADS", None)
    # pynest imports matplotlib (if installed) only for its spatial plotting helpers
    # (hl_api_spatial: `try: import matplotlib ... except ImportError: HAVE_MPL = False`),
    # and pandas only for `get(output="pandas")` (hl_api_types, the same pattern); sonatarun
    # calls neither: ~0.3 s each of every run's start (pandas is a quarter of a 10k-neuron
    # build). Hide them during the import only; they stay importable afterwards (`sonatarun
    # plot`, CSV outputs, notebooks), and a process that has already imported one keeps
    # NEST's use of it.
    hidden = [m for m in ("matplotlib", "pandas") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    try:
        import nest  # noqa: WPS433 - lazy on purpose
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise EngineError(f"NEST is not importable ({exc})", key="target_simulator",
                          fix="pip install nest-simulator, or run with the NEURON engine") from exc
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
        if omp is not None:
            os.environ["OMP_NUM_THREADS"] = omp
    level = nest.VerbosityLevel.ERROR if quiet else nest.VerbosityLevel.WARNING
    nest.verbosity = level
    return nest


def nest_has_mpi() -> bool:
    """True when the installed NEST links an MPI library, read from its files without importing it.

    Importing is what cannot be tried: a NEST built without MPI (the PyPI wheel) kills the
    process at import when it sees an MPI launcher with several ranks ("[FATAL] ... NEST was
    not compiled with MPI support", exit 127).
    """
    import importlib.util

    from sonatarun.util.elf import needed_libraries

    spec = importlib.util.find_spec("nest")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for lib in Path(folder).glob("*.so"):
            if any(n.startswith(("libmpi", "libmpich")) for n in needed_libraries(lib)):
                return True
    return False


def check_ranks(comm: Comm) -> None:
    """Several ranks need a NEST built with MPI: refuse them clearly otherwise, before NEST is imported.

    With an MPI build NEST places the neurons on the ranks itself and every rank connects
    only the edges onto its own; without one, several ranks would each build and simulate
    the whole network and write N copies (and the import itself ends the process).
    """
    if comm.size <= 1 or nest_has_mpi():
        return
    raise EngineError(f"the NEST engine was started on {comm.size} MPI ranks, but the installed NEST has no MPI "
                      "support (the nest-simulator wheel has none)", key="target_simulator",
                      fix="run one process with threads: `sonatarun run --threads N config.json` (on Slurm: one "
                          "task with N cpus), or use a NEST built with MPI (the container image built with "
                          "NEST_FROM_SOURCE=1, or containers/build-nest.sh)")


def configure(nest, settings: RunSettings, options: dict[str, Any]) -> None:
    """Reset the kernel and apply resolution, threads and seed the way BMTK's PointSimulator does.

    BMTK sets resolution, overwrite_files, print_time and local_num_threads and never
    touches rng_seed, so a seed of 0 ("not given") keeps NEST's default seed and a run
    is comparable to BMTK's; any positive seed is passed through as rng_seed.
    """
    nest.ResetKernel()
    threads = max(1, int(settings.threads or 1))
    status: dict[str, Any] = {"resolution": float(settings.dt), "local_num_threads": threads,
                              "print_time": False, "overwrite_files": True}
    seed = int(settings.seed or 0)
    if seed > 0:
        status["rng_seed"] = seed
    try:
        nest.SetKernelStatus(status)
    except Exception as exc:  # NEST raises its own error classes
        raise EngineError(f"NEST rejected the kernel settings {status}: {exc}", key="run.dt",
                          fix="dt must be a multiple of 0.001 ms; threads and seed must be positive integers") from exc
    modules = options.get("nest_modules") or []
    for module in [modules] if isinstance(modules, str) else modules:
        try:
            nest.Install(str(module))
        except Exception as exc:
            raise EngineError(f"cannot install NEST module '{module}': {exc}", key="components.nest_modules",
                              fix="build the extension module for this NEST version and put it on LD_LIBRARY_PATH") \
                from exc
