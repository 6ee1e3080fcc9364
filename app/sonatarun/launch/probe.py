"""Facts about the engines and libraries, each found in a child Python process.

Importing NEURON or NEST can abort the process (a bad MPI library, a missing symbol),
and NEST prints a banner; probing in a subprocess keeps `doctor` and `plan` alive and
quiet whatever an engine does, and gives each probe a clean import order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field

_MARK = "SONATARUN-PROBE:"

_SCRIPTS = {
    "neuron": """
import json, os
info = {}
import neuron
info["version"] = neuron.__version__
from sonatarun.mpi import find_libmpi
lib = find_libmpi()
info["mpi_library"] = lib
info["mpi"] = bool(lib)
print(MARK + json.dumps(info))
""",
    "nest": """
import json, os
os.environ.setdefault("PYNEST_QUIET", "1")
import nest
b = dict(getattr(nest, "build_info", {}) or {})
info = {"version": b.get("version") or getattr(nest, "__version__", None),
        "mpi": bool(b.get("have_mpi")), "threads": bool(b.get("have_threads")),
        "threads_model": b.get("threads_model"), "hdf5": bool(b.get("have_hdf5"))}
print(MARK + json.dumps(info))
""",
    "mpi4py": """
import json
import mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
lines = MPI.Get_library_version().strip().splitlines()
print(MARK + json.dumps({"version": mpi4py.__version__, "library": " ".join(lines[0].split()) if lines else None,
                         "standard": "%d.%d" % MPI.Get_version()}))
""",
    "h5py": """
import json
import h5py
print(MARK + json.dumps({"version": h5py.__version__, "hdf5": h5py.version.hdf5_version,
                         "parallel": bool(h5py.get_config().mpi)}))
""",
}

FIXES = {
    "neuron": "pip install neuron",
    "nest": "pip install nest-simulator",
    "mpi4py": "pip install mpi4py mpich (or build mpi4py against your cluster's MPI: "
              "pip install --no-binary=mpi4py mpi4py)",
    "h5py": "pip install h5py (parallel HDF5: build h5py with HDF5_MPI=ON against an MPI-enabled HDF5)",
}


@dataclass
class Probe:
    """One library: found or not, its facts, and when missing the error and the fix."""

    name: str
    found: bool
    info: dict = field(default_factory=dict)
    error: str | None = None
    fix: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def probe(name: str, timeout: float = 120.0) -> Probe:
    """Import ``name`` in a child interpreter and return what it reports."""
    code = f"MARK = {_MARK!r}\n" + _SCRIPTS[name]
    env = dict(os.environ)
    env["PYNEST_QUIET"] = "1"
    # A probe must not join the parent's MPI job (Slurm/PMI variables would make it wait).
    for k in list(env):
        if k.startswith(("PMI_", "PMIX_", "HYDI_", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD")):
            env.pop(k)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Probe(name, False, error=f"import {name} did not finish in {timeout:g} s", fix=FIXES[name])
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return Probe(name, True, json.loads(line[len(_MARK):]))
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return Probe(name, False, error=tail, fix=FIXES[name])
