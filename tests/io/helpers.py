"""Running the writer driver on each I/O path and comparing what lands in the files."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from tests.conftest import ROOT, mpiexec, need

DRIVER = Path(__file__).with_name("drive_writers.py")
MPI_VENV = Path(os.environ.get("SONATARUN_MPI_VENV", ROOT / ".venv-mpi"))


def driver_cmd(path: str, ranks: int, out: Path, *extra: str) -> tuple[list[str], dict]:
    """The command running the driver on ``path`` (serial|parallel) with ``ranks`` ranks."""
    env = dict(os.environ, SONATARUN_IO=path, PYTHONUNBUFFERED="1")
    if path == "parallel":
        py = MPI_VENV / "bin" / "python"
        launcher = shutil.which("mpiexec.mpich")
        need(py.exists() and launcher is not None,
             f"parallel h5py venv {MPI_VENV} and Debian's mpiexec.mpich (.ci/setup-parallel-h5py.sh)")
        # the main venv's MPI (mpich wheel) must not shadow Debian's in the parallel venv
        env.pop("MPI_LIB_NRN_PATH", None)
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if Path(sys.executable).parent != Path(p))
        return [launcher, "-n", str(ranks), str(py), str(DRIVER), str(out), *extra], env
    base = [sys.executable, str(DRIVER), str(out), *extra]
    return ([mpiexec(), "-n", str(ranks), *base] if ranks > 1 else base), env


def run_driver(path: str, ranks: int, out: Path, *extra: str, timeout: float = 120) -> str:
    """Run the driver; return its stdout."""
    cmd, env = driver_cmd(path, ranks, out, *extra)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def report_bytes_by_rank(stdout: str) -> list[int]:
    """Bytes of report data each rank wrote itself (the driver's rank 0 prints them)."""
    found = re.findall(r"^report bytes written by rank: (\[.*\])$", stdout, flags=re.M)
    assert len(found) == 1, stdout
    return json.loads(found[0])


def h5_content(path: Path) -> dict[str, object]:
    """Every dataset's values and every attribute of a file, keyed by HDF5 path."""
    out: dict[str, object] = {}

    def attrs(name: str, obj) -> None:
        for k, v in obj.attrs.items():
            out[f"{name}@{k}"] = (str(v.dtype) if hasattr(v, "dtype") else type(v).__name__,
                                  np.asarray(v).tolist())

    with h5py.File(path, "r") as f:
        attrs("/", f)

        def visit(name: str, obj) -> None:
            attrs(name, obj)
            if isinstance(obj, h5py.Dataset):
                out[name] = (str(obj.dtype), obj.shape, obj[()].tobytes())

        f.visititems(visit)
        out["__links__"] = sorted(f.get("report", {}).keys())
    return out


def assert_same_content(a: Path, b: Path) -> None:
    ca, cb = h5_content(a), h5_content(b)
    assert ca.keys() == cb.keys(), f"{a} vs {b}: {sorted(set(ca) ^ set(cb))}"
    diff = [k for k in ca if ca[k] != cb[k]]
    assert not diff, f"{a} and {b} differ in {diff}"


def spikes_as_sorted_pairs(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        res = {}
        for p, g in f["spikes"].items():
            ids, ts = g["node_ids"][()], g["timestamps"][()]
            o = np.lexsort((ids, ts))
            res[p] = np.stack([ts[o], ids[o].astype(np.float64)])
        return res


def write_bluepysnap_configs(out: Path, pops: dict[str, int]) -> Path:
    """A SONATA circuit + simulation config so bluepysnap (libsonata underneath) opens the outputs."""
    with h5py.File(out / "nodes.h5", "w") as f:
        for pop, n in pops.items():
            g = f.create_group(f"nodes/{pop}")
            g["node_type_id"] = np.zeros(n, np.int64)
            g["node_group_id"] = np.zeros(n, np.int64)
            g["node_group_index"] = np.arange(n)
            g.create_group("0")["x"] = np.zeros(n)
    (out / "circuit_config.json").write_text(json.dumps({"networks": {"nodes": [{
        "nodes_file": "nodes.h5", "populations": {p: {"type": "point_neuron"} for p in pops}}], "edges": []}}))
    sim = out / "simulation_config.json"
    sim.write_text(json.dumps({
        "network": "circuit_config.json",
        "run": {"tstop": 100.0, "dt": 0.1, "random_seed": 1},
        "output": {"output_dir": ".", "spikes_file": "spikes.h5"},
        "reports": {"v_report": {"type": "compartment", "cells": "All", "variable_name": "v", "sections": "all",
                                 "dt": 0.1, "start_time": 0.0, "end_time": 100.0}}}))
    return sim
