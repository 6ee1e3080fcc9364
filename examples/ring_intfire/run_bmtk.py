"""Run this example with BMTK's BioNet, the reference sonatarun must match.

    python run_bmtk.py [config.simulation.json] [--mechanisms-dir DIR]
    MPI_LIB_NRN_PATH=.../libmpi.so.12 mpiexec -n 2 python run_bmtk.py

BioNet plays virtual spike trains through ``h.VecStim``, which the NEURON wheel does not
ship. Without ``--mechanisms-dir`` this script compiles ``components/mechanisms/modfiles``
in place (``nrnivmodl``, once), which is where the config's ``mechanisms_dir`` points.
With it, the given directory (holding an already compiled ``x86_64/``) is used instead.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def compile_mechanisms(mech_dir: Path) -> None:
    """nrnivmodl ``mech_dir/modfiles`` into ``mech_dir/x86_64`` unless already built."""
    import platform

    if (mech_dir / platform.machine() / "libnrnmech.so").exists():
        return
    nrnivmodl = Path(sys.executable).parent / "nrnivmodl"
    subprocess.run([str(nrnivmodl) if nrnivmodl.exists() else "nrnivmodl", "modfiles"], cwd=mech_dir,
                   check=True, stdout=subprocess.DEVNULL)


def launched_by_mpiexec() -> bool:
    return any(int(os.environ.get(k, "1")) > 1 for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))


def init_mpi() -> None:
    """Start MPI the way both NEURON and BMTK's spike writer see it.

    BioNet never calls nrnmpi_init, and BMTK gathers spikes through mpi4py: importing mpi4py
    first and then nrnmpi_init makes both share one MPI_Init (NEURON_INIT_MPI=1 alone would
    leave mpi4py unable to initialise, every rank then writes the spike files as rank 0).
    """
    import ctypes

    from mpi4py import MPI  # noqa: F401  (initialises MPI)

    # NEURON reuses an MPI found in the global namespace, else dlopens "libmpi.so" before
    # MPI_LIB_NRN_PATH: with a system MPICH installed that is a second MPI in the process.
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "/libmpi.so" in path or "/libmpich.so" in path:
            ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)
            break
    from neuron import h

    h.nrnmpi_init()


def run(config_file: str, mechanisms_dir: str | None = None, quiet: bool = False) -> None:
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
    parallel = launched_by_mpiexec()
    if parallel:
        init_mpi()
    from bmtk.simulator import bionet

    conf = bionet.Config.from_json(config_file, validate=True)
    if mechanisms_dir is not None:
        conf.mechanisms_dir = mechanisms_dir
    elif conf.mechanisms_dir and not parallel:
        compile_mechanisms(Path(conf.mechanisms_dir))
    if quiet:
        conf.output["log_to_console"] = False
    conf.build_env()
    if quiet:
        import logging

        # BMTK attaches its console handler when the logger is first used (at import), so
        # log_to_console alone cannot silence it: drop the console handler, keep the log file.
        for handler in list(conf.io.logger.handlers):
            if type(handler) is logging.StreamHandler:
                conf.io.logger.removeHandler(handler)
    net = bionet.BioNetwork.from_config(conf)
    sim = bionet.BioSimulator.from_config(conf, network=net)
    sim.run()
    bionet.nrn.quit_execution()


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description="Run a SONATA config with BMTK BioNet.")
    parser.add_argument("config", nargs="?", default=str(here / "config.simulation.json"))
    parser.add_argument("--mechanisms-dir", default=None, help="directory with a compiled x86_64/ (VecStim)")
    parser.add_argument("--quiet", action="store_true", help="log to the log file only")
    args = parser.parse_args()
    run(args.config, args.mechanisms_dir, args.quiet)


if __name__ == "__main__":
    main()
