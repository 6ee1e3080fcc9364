"""Run BMTK's BioNet as the reference simulator and read spike files, for parity tests.

BMTK runs in a subprocess (this file is also its entry point), so NEURON state never leaks
into the test process and the same code runs serially or under ``mpiexec -n N``.
BioNet needs ``h.VecStim`` for virtual cells, which the NEURON wheel lacks: BMTK's own
``vecevent.mod`` is compiled once per checkout into ``.cache/bmtk-mechanisms/`` (gitignored)
and handed to BioNet instead of the config's ``mechanisms_dir``.
"""
from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bmtk-mechanisms"

Spikes = dict[str, tuple[np.ndarray, np.ndarray]]


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _vecevent_source() -> Path:
    import bmtk

    return Path(bmtk.__file__).parent / "utils" / "scripts" / "bionet" / "mechanisms" / "modfiles" / "vecevent.mod"


def bmtk_mechanisms() -> Path:
    """Directory holding a compiled VecStim (``<dir>/x86_64/libnrnmech.so``), built once and cached."""
    from importlib.metadata import version

    target = CACHE / f"nrn-{version('neuron')}"  # metadata only: keep NEURON out of the test process
    lib = target / platform.machine() / "libnrnmech.so"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions compile it once
        if not lib.exists():
            shutil.rmtree(target, ignore_errors=True)
            (target / "modfiles").mkdir(parents=True)
            shutil.copy(_vecevent_source(), target / "modfiles" / "vecevent.mod")
            nrnivmodl = _venv_bin() / "nrnivmodl"
            proc = subprocess.run([str(nrnivmodl) if nrnivmodl.exists() else "nrnivmodl", "modfiles"], cwd=target,
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not lib.exists():
                raise RuntimeError(f"nrnivmodl failed for BMTK's vecevent.mod:\n{proc.stdout}\n{proc.stderr}")
    return target


def read_spikes(h5_path: Path | str) -> Spikes:
    """SONATA spikes file -> {population: (node_ids, timestamps)}, sorted by node id then time."""
    import h5py

    out: Spikes = {}
    with h5py.File(h5_path, "r") as f:
        root = f.get("spikes")
        if root is None:
            return out
        for pop, grp in root.items():
            if not isinstance(grp, h5py.Group):
                continue
            ids = np.asarray(grp["node_ids"][()], dtype=np.int64)
            ts = np.asarray(grp["timestamps"][()], dtype=np.float64)
            order = np.lexsort((ts, ids))
            out[pop] = (ids[order], ts[order])
    return out


def spike_counts(spikes: Spikes) -> dict[str, int]:
    return {pop: int(len(ids)) for pop, (ids, _) in spikes.items()}


def compare_spikes(expected: Spikes, actual: Spikes, atol: float = 1e-9) -> list[str]:
    """Human-readable differences between two spike sets (empty when they agree)."""
    problems = []
    for pop in sorted(set(expected) | set(actual)):
        e_ids, e_ts = expected.get(pop, (np.empty(0, np.int64), np.empty(0)))
        a_ids, a_ts = actual.get(pop, (np.empty(0, np.int64), np.empty(0)))
        if len(e_ids) != len(a_ids) or not np.array_equal(e_ids, a_ids):
            e_cnt = np.bincount(e_ids) if len(e_ids) else np.zeros(0, int)
            a_cnt = np.bincount(a_ids) if len(a_ids) else np.zeros(0, int)
            n = max(len(e_cnt), len(a_cnt))
            e_cnt, a_cnt = np.pad(e_cnt, (0, n - len(e_cnt))), np.pad(a_cnt, (0, n - len(a_cnt)))
            diff = np.flatnonzero(e_cnt != a_cnt)[:5]
            first = _first_divergence(e_ids, e_ts, a_ids, a_ts)
            problems.append(f"{pop}: {len(e_ids)} spikes expected, {len(a_ids)} got; per-node counts differ at "
                            f"node ids {diff.tolist()} (expected {e_cnt[diff].tolist()}, got {a_cnt[diff].tolist()}); "
                            f"{first}")
            continue
        err = np.abs(e_ts - a_ts)
        if len(err) and err.max() > atol:
            i = int(np.argmax(err > atol))
            problems.append(f"{pop}: node {e_ids[i]} spike at {e_ts[i]!r} ms expected, {a_ts[i]!r} got "
                            f"(max |dt| {err.max():.3g} ms)")
    return problems


def _first_divergence(e_ids, e_ts, a_ids, a_ts) -> str:
    """The earliest spike present in one set and not the other: where the dynamics first part."""
    e = set(zip(e_ids.tolist(), np.round(e_ts, 6).tolist()))
    a = set(zip(a_ids.tolist(), np.round(a_ts, 6).tolist()))
    only_e = sorted(e - a, key=lambda x: x[1])[:1]
    only_a = sorted(a - e, key=lambda x: x[1])[:1]
    return f"first spike only in expected: {only_e}, first only in actual: {only_a}"


def run_bmtk(config_path: Path | str, workdir: Path | str, np: int | None = None, timeout: float = 600,
             verbatim_templates: tuple[str, ...] = ()) -> Spikes:
    """Run ``config_path`` with BMTK BioNet, serially or under ``mpiexec -n np``; return its spikes.

    BioNet deletes and recreates its output directory, so the run writes to
    ``workdir/bmtk_output`` (never to the config's ``output_dir``) and runs with cwd ``workdir``.
    ``verbatim_templates`` (e.g. ``("IntFire2", "IntFire4")``) registers, for ``nrn:<name>``, the
    loader a BMTK user has to write for artificial cells BioNet does not know: create the
    mechanism and set every dynamics_params key on it as given (the semantics sonatarun uses).
    """
    workdir = Path(workdir).resolve()
    out_dir = workdir / "bmtk_output"
    mech = bmtk_mechanisms()
    cmd = [sys.executable, str(Path(__file__).resolve()), str(Path(config_path).resolve()), str(out_dir), str(mech),
           ",".join(verbatim_templates)]
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui", PYTHONUNBUFFERED="1")
    if np:
        mpiexec = _venv_bin() / "mpiexec"
        libmpi = _venv_bin().parent / "lib" / "libmpi.so.12"
        if libmpi.exists():
            env.setdefault("MPI_LIB_NRN_PATH", str(libmpi))
        cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(np), *cmd]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"BMTK exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                             f"--- stderr\n{proc.stderr[-4000:]}")
    return read_spikes(out_dir / "spikes.h5")


def _promote_libmpi() -> None:
    """Put the libmpi mpi4py loaded into the global symbol namespace before NEURON loads MPI.

    NEURON's loader reuses an MPI already in the global namespace, otherwise it dlopens
    "libmpi.so" first and MPI_LIB_NRN_PATH only second. With Debian's libmpich-dev installed,
    "libmpi.so" is the system MPICH: two MPICH copies in one process, and the first mpi4py
    collective after `import neuron` aborts ("MPII_Comm_set_attr before initializing").
    """
    import ctypes

    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "/libmpi.so" in path or "/libmpich.so" in path:
            ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)
            return


def _register_verbatim(names: list[str]) -> None:
    from bmtk.simulator.bionet.pyfunction_cache import add_cell_model
    from neuron import h

    def load(cell, template_name, dynamics_params):
        hobj = getattr(h, template_name)()
        for key, value in (dynamics_params or {}).items():
            setattr(hobj, key, value)
        return hobj

    for name in names:
        for model_type in ("point_process", "point_neuron"):
            add_cell_model(load, f"nrn:{name}", model_type, overwrite=True)


def _child(config_path: str, out_dir: str, mechanisms_dir: str, verbatim: str = "") -> None:
    """Subprocess body: one BioNet run with outputs redirected to ``out_dir``."""
    if any(int(os.environ.get(k, "1")) > 1 for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        # mpi4py first, then NEURON joins the same MPI (BMTK gathers spikes through mpi4py)
        from mpi4py import MPI  # noqa: F401

        _promote_libmpi()
        from neuron import h

        h.nrnmpi_init()
    from bmtk.simulator import bionet

    if verbatim:
        _register_verbatim(verbatim.split(","))
    conf = bionet.Config.from_json(config_path, validate=True)
    conf.mechanisms_dir = mechanisms_dir
    out = conf.output
    out["output_dir"] = conf.output_dir = out_dir
    out["spikes_file"] = os.path.join(out_dir, "spikes.h5")
    for key in ("log_file", "spikes_file_csv", "spikes_file_nwb"):
        if out.get(key):
            out[key] = os.path.join(out_dir, os.path.basename(out[key]))
    out["log_file"] = conf.log_file = os.path.join(out_dir, "log.txt")
    out["log_to_console"] = False
    conf.build_env()
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


if __name__ == "__main__":
    _child(*sys.argv[1:5])
