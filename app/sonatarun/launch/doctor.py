"""`sonatarun doctor`: what this machine can run, and the fix for what it cannot.

Every engine is probed in its own child process (see :mod:`sonatarun.launch.probe`), so
an engine that crashes on import shows up as a finding instead of killing the report.
"""
from __future__ import annotations

import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import shutil
import sys
from dataclasses import asdict, dataclass, field

from sonatarun.launch.probe import Probe, probe
from sonatarun.launch.scheduler import detect_scheduler, schedulers_on_path
from sonatarun.launch.topology import detect_topology


@dataclass
class Finding:
    """One line of the report: what, whether it is fine, and the fix when it is not."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True  # a missing optional part (NEST MPI, a container runtime) is not an error


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    probes: dict = field(default_factory=dict)
    schedulers: dict = field(default_factory=dict)
    containers: dict = field(default_factory=dict)
    allocation: dict = field(default_factory=dict)
    topology: dict = field(default_factory=dict)
    python: str = ""

    @property
    def ok(self) -> bool:
        return all(f.ok or not f.required for f in self.findings)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def describe(self) -> str:
        lines = [f"python     {self.python}"]
        for f in self.findings:
            mark = "ok " if f.ok else ("-- " if not f.required else "!! ")
            lines.append(f"{mark} {f.name:<12} {f.detail}")
            if f.fix and not f.ok:
                lines.append(f"    {'':<12} fix: {f.fix}")
        return "\n".join(lines)


def _engine_findings(p: dict[str, Probe]) -> list[Finding]:
    out = []
    n = p["neuron"]
    if n.found:
        lib = n.info.get("mpi_library")
        out.append(Finding("NEURON", True, f"{n.info.get('version')}"))
        out.append(Finding("NEURON MPI", bool(lib),
                           f"MPI_LIB_NRN_PATH -> {lib}" if lib else "no libmpi found: NEURON runs one rank",
                           "pip install mpich (or load your MPI module, or set MPI_LIB_NRN_PATH)", required=False))
    else:
        out.append(Finding("NEURON", False, f"not importable: {n.error}", n.fix))
    s = p["nest"]
    if s.found:
        out.append(Finding("NEST", True, f"{s.info.get('version')}, threads: "
                           f"{'yes (' + str(s.info.get('threads_model')) + ')' if s.info.get('threads') else 'no'}"))
        out.append(Finding("NEST MPI", bool(s.info.get("mpi")),
                           "yes" if s.info.get("mpi") else "no: NEST runs one rank with threads",
                           "for NEST on several ranks: a NEST built with MPI (containers/build-nest.sh; the PyPI wheel has none)", required=False))
    else:
        out.append(Finding("NEST", False, f"not importable: {s.error}", s.fix, required=False))
    m = p["mpi4py"]
    out.append(Finding("mpi4py", m.found,
                       f"{m.info.get('version')} on {m.info.get('library')} (MPI {m.info.get('standard')})"
                       if m.found else f"not importable: {m.error}", m.fix))
    h = p["h5py"]
    if h.found:
        out.append(Finding("h5py", True, f"{h.info.get('version')} (HDF5 {h.info.get('hdf5')})"))
        out.append(Finding("h5py MPI", bool(h.info.get("parallel")),
                           "parallel HDF5" if h.info.get("parallel") else "serial HDF5: ranks write through the "
                           "bounded-memory serial path", "HDF5_MPI=ON CC=mpicc pip install --no-binary=h5py h5py",
                           required=False))
    else:
        out.append(Finding("h5py", False, f"not importable: {h.error}", h.fix))
    return out


def container_runtimes() -> dict[str, str]:
    return {name: path for name in ("apptainer", "singularity", "docker", "podman")
            if (path := shutil.which(name))}


def run_doctor() -> Report:
    names = ("neuron", "nest", "mpi4py", "h5py")
    with ThreadPoolExecutor(max_workers=len(names)) as pool:  # each probe is a child process
        probes = dict(zip(names, pool.map(probe, names)))
    topo = detect_topology()
    alloc = detect_scheduler()
    scheds = schedulers_on_path()
    runtimes = container_runtimes()
    findings = _engine_findings(probes)
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    findings.append(Finding("mpiexec", bool(mpiexec), mpiexec or "not found",
                            "pip install mpich (gives mpiexec), or load your MPI module", required=False))
    findings.append(Finding("schedulers", bool(scheds) or alloc.in_job,
                            ", ".join(f"{k} ({v})" for k, v in scheds.items()) or "none on PATH",
                            "not needed on a workstation; on a cluster load its module", required=False))
    if alloc.in_job:
        findings.append(Finding("this job", True, f"{alloc.scheduler} job {alloc.job_id}, {alloc.num_nodes} node(s), "
                                                  f"slots per node {list(alloc.slots_per_host)}"))
    findings.append(Finding("containers", bool(runtimes),
                            ", ".join(f"{k} ({v})" for k, v in runtimes.items()) or "none on PATH",
                            "install Apptainer (HPC) or Docker to use --container", required=False))
    mem = f", {topo.memory_bytes / 2**30:.1f} GiB" if topo.memory_bytes else ""
    findings.append(Finding("topology", True,
                            f"{topo.physical_cores} cores / {topo.logical_cpus} threads, {topo.sockets} socket(s), "
                            f"{topo.numa_nodes} NUMA node(s), usable {topo.usable_cores}{mem}"))
    return Report(findings, {k: v.to_dict() for k, v in probes.items()}, scheds, runtimes, alloc.to_dict(),
                  topo.to_dict(), f"{platform.python_version()} ({sys.executable})")
