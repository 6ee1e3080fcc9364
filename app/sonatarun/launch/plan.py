"""Decide how to run a config on what was detected: ranks, threads, launcher, command.

The rules, and why:
- NEURON parallelises by ranks (one cell set per rank, spike exchange by MPI): one rank
  per physical core; hardware threads share a core's FPU and add nothing.
- NEST runs one rank per node using every core of it as a thread: threads share the node's
  memory, while every rank reads every node table. Without MPI (the PyPI wheel) that is one
  rank in all, and ranks beyond one are refused; a NEST built with MPI spreads the network
  over the nodes of an allocation (one rank each) or over ``--np`` ranks.
- Inside an allocation the scheduler's slot counts win over our own core count: it
  knows the other nodes; we only see this one.
- ``srun`` inside Slurm (it binds, accounts and forwards signals), ``flux run`` inside Flux,
  ``mpiexec`` elsewhere,
  and no launcher at all for one rank outside a scheduler.

A plan is data (:class:`RunPlan`): `plan` prints it, `launch` runs it, `submit` renders it
into a batch script, and every decision carries its reason.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from sonatarun.errors import ConfigError, InputError
from sonatarun.launch.container import ContainerSpec, resolve_container, wrap
from sonatarun.launch.scheduler import Allocation, detect_scheduler
from sonatarun.launch.topology import Topology, detect_topology

ENGINES = ("NEURON", "NEST")
SRUN_MPI_DEFAULT = "pmi2"


@dataclass
class RunPlan:
    """Everything `launch` would do, as data."""

    config: str
    engine: str
    scheduler: str
    job_id: str | None
    nodes: int
    ranks_per_node: int
    threads_per_rank: int
    ranks: int
    launcher: str  # "srun", "flux", "mpiexec" or "none"
    container: dict | None
    env: dict[str, str]
    command: list[str]  # launcher_args + run_args, what `launch` executes
    launcher_args: list[str]  # the MPI launcher part (empty when the container wraps it, or one rank)
    run_args: list[str]  # the rest: container wrapper (if any) and `sonatarun run ...`
    output_dir: str | None
    workdir: str
    reasons: list[str] = field(default_factory=list)
    topology: dict = field(default_factory=dict)
    allocation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def shell_command(self) -> str:
        """The command as one line a user can paste (environment included)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(self.command)

    def describe(self) -> str:
        """The human-readable form `sonatarun plan` prints."""
        t = self.topology
        mem = f", {t['memory_bytes'] / 2**30:.1f} GiB memory" if t.get("memory_bytes") else ""
        a = self.allocation
        sched = self.scheduler
        if self.scheduler != "none":
            hosts = ",".join(a.get("hosts", [])[:8]) + ("..." if len(a.get("hosts", [])) > 8 else "")
            sched += f" (job {self.job_id}; {a.get('num_nodes')} node(s) {hosts}; from {a.get('source')})"
        lines = [
            f"config     {self.config}",
            f"engine     {self.engine}",
            f"scheduler  {sched}",
            f"this node  {t.get('physical_cores')} cores / {t.get('logical_cpus')} hardware threads, "
            f"{t.get('sockets')} socket(s), {t.get('numa_nodes')} NUMA node(s); usable {t.get('usable_cores')}"
            f"{mem}",
            f"ranks      {self.nodes} node(s) x {self.ranks_per_node} rank(s) per node x "
            f"{self.threads_per_rank} thread(s) per rank = {self.ranks} rank(s)",
            f"launcher   {self.launcher}",
            f"container  {self._container_text()}",
            f"output     {self.output_dir or '(from the config)'}",
            "why",
            *[f"  - {r}" for r in self.reasons],
            "environment",
            *([f"  {k}={v}" for k, v in self.env.items()] or ["  (none)"]),
            "command",
            f"  {shlex.join(self.command)}",
        ]
        return "\n".join(lines)

    def _container_text(self) -> str:
        if not self.container:
            return "none"
        c = self.container
        where = c["executable"] or "NOT FOUND on PATH"
        return f"{c['runtime']} ({where}) image {c['image']}"


def read_engine(config: str | Path) -> tuple[str, str | None]:
    """(engine, output_dir) from the config; the engine is ``target_simulator`` (default NEURON)."""
    from sonatarun.config.loader import load_config

    conf = load_config(config)
    engine = str(conf.get("target_simulator") or "NEURON").upper()
    if engine not in ENGINES:
        raise ConfigError(f"target_simulator {conf.get('target_simulator')!r} is not supported", file=config,
                          key="target_simulator", fix="use \"NEURON\" or \"NEST\"")
    out = conf.get("output") if isinstance(conf.get("output"), dict) else {}
    out_dir = out.get("output_dir") if out else None
    if isinstance(out_dir, str) and out_dir:
        out_dir = str((Path(config).absolute().parent / out_dir).resolve()) if not os.path.isabs(out_dir) else out_dir
    else:
        out_dir = None
    return engine, out_dir


def output_dir_from_args(extra: Sequence[str]) -> str | None:
    """The ``--output-dir`` among the extra run args, absolute (relative to the current dir)."""
    for i, arg in enumerate(extra):
        if arg == "--output-dir" and i + 1 < len(extra):
            return os.path.abspath(extra[i + 1])
        if arg.startswith("--output-dir="):
            return os.path.abspath(arg.split("=", 1)[1])
    return None


def run_executable(in_container: bool) -> list[str]:
    """How to call sonatarun: the venv's script (absolute, so compute nodes need no PATH), or
    ``sonatarun`` inside a container image, which has its own installation."""
    if in_container:
        return ["sonatarun"]
    script = Path(sys.executable).parent / "sonatarun"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sonatarun.cli.main"]


def find_mpiexec() -> str:
    exe = Path(sys.executable).parent / "mpiexec"
    return str(exe) if exe.exists() else (shutil.which("mpiexec") or "mpiexec")


def choose_srun_mpi(reasons: list[str]) -> str:
    """The PMI plugin srun should use: pmi2 for MPICH-ABI libraries (what the mpich wheel and
    Cray/Intel MPI speak), pmix for Open MPI (libmpi.so.40), among what this Slurm offers."""
    try:
        out = subprocess.run(["srun", "--mpi=list"], capture_output=True, text=True, timeout=20)
        text = out.stdout + out.stderr
        words = set(text.split())
        offered = {w for w in words if w in ("pmi2", "pmix", "cray_shasta")}
        offered |= {"pmix" for w in words if w.startswith("pmix_")}
    except (OSError, subprocess.TimeoutExpired):
        offered = set()
    from sonatarun.mpi import find_libmpi

    lib = find_libmpi() or ""
    want = "pmix" if ("openmpi" in lib.lower() or ".so.40" in lib) else SRUN_MPI_DEFAULT
    if offered and want not in offered:
        want = "pmix" if "pmix" in offered else ("pmi2" if "pmi2" in offered else want)
    reasons.append(f"srun --mpi={want} ({'offered by this Slurm: ' + ', '.join(sorted(offered)) if offered else 'srun --mpi=list gave nothing'}; "
                   "override with SONATARUN_SRUN_MPI)")
    return want


def _decide(engine: str, topo: Topology, alloc: Allocation, *, np: int | None, threads: int | None,
            nest_mpi: bool, reasons: list[str]) -> tuple[int, int, int]:
    """(nodes, ranks_per_node, threads_per_rank)."""
    nodes = alloc.num_nodes if alloc.in_job else 1
    if alloc.in_job and alloc.slots_per_host:
        slots = min(alloc.slots_per_host)
        cpt = alloc.cpus_per_task or 1
        cores_node = slots * cpt
        reasons.append(f"{alloc.scheduler} allocated {nodes} node(s) with {slots} task slot(s)"
                       + (f" x {cpt} CPUs per task" if cpt > 1 else "") + " per node")
        if nodes == 1 and cores_node > topo.usable_cores:
            reasons.append(f"the allocation has more slots ({cores_node}) than usable cores here "
                           f"({topo.usable_cores}): keeping the scheduler's count")
    else:
        cores_node = topo.usable_cores
        if not alloc.in_job:
            reasons.append("no scheduler: using this machine's cores")

    if engine == "NEURON":
        if alloc.in_job and alloc.slots_per_host:
            rpn, tpr = min(alloc.slots_per_host), 1
            if (alloc.cpus_per_task or 1) > 1:
                reasons.append(f"NEURON: one rank per task slot; {alloc.cpus_per_task} CPUs per task are left to "
                               "--threads (request more tasks, not CPUs per task, for NEURON)")
        else:
            rpn, tpr = cores_node, 1
        reasons.append(f"NEURON: one rank per physical core ({rpn} per node), no hardware threads")
    else:
        rpn, tpr = 1, cores_node
        if nest_mpi:
            reasons.append(f"NEST with MPI: one rank per node with {tpr} thread(s) (threads share a node's "
                           "memory; every rank reads every node table)")
        else:
            reasons.append(f"NEST without MPI (the PyPI wheel): one rank with {tpr} thread(s)")
            if nodes > 1:
                reasons.append(f"NEST without MPI runs on one node: using the first of {nodes}")
                nodes = 1
    if threads is not None:
        if threads < 1:
            raise InputError("--threads must be at least 1", key="--threads")
        if engine == "NEST" and np is None and not nest_mpi:
            rpn = 1
        elif threads != tpr and np is None:
            rpn = max(1, cores_node // threads)
        tpr = threads
        reasons.append(f"--threads {threads} asked: {rpn} rank(s) per node x {tpr} thread(s)")
    if np is not None:
        if np < 1:
            raise InputError("--np must be at least 1", key="--np")
        if engine == "NEST" and np > 1 and not nest_mpi:
            raise InputError(f"NEST here was built without MPI, so it cannot run {np} ranks", key="--np",
                             fix="use --threads for NEST, or a NEST built with MPI (containers/build-nest.sh)")
        nodes = min(nodes, np)
        rpn = -(-np // nodes)
        reasons.append(f"--np {np} asked: {rpn} rank(s) per node on {nodes} node(s)")
        if not alloc.in_job and np * tpr > topo.usable_cores:
            reasons.append(f"{np} ranks x {tpr} threads oversubscribe the {topo.usable_cores} usable cores")
    return nodes, rpn, tpr


def make_plan(config: str | Path, *, np: int | None = None, threads: int | None = None,
              container: str | None = None, extra: Sequence[str] = (), topology: Topology | None = None,
              allocation: Allocation | None = None, nest_mpi: bool | None = None,
              environ: Mapping[str, str] | None = None, srun_mpi: str | None = None) -> RunPlan:
    """Build the plan for ``config``; every fact can be passed in, so tests need no real machine."""
    config = str(Path(config).absolute())
    environ = os.environ if environ is None else environ
    engine, cfg_out = read_engine(config)
    topo = topology or detect_topology()
    alloc = allocation or detect_scheduler(environ)
    if engine == "NEST" and nest_mpi is None:
        from sonatarun.engines.nest.kernel import nest_has_mpi  # read from NEST's library, not imported

        nest_mpi = nest_has_mpi()
    reasons: list[str] = list(topo.reasons)
    reasons.extend(alloc.notes)
    nodes, rpn, tpr = _decide(engine, topo, alloc, np=np, threads=threads, nest_mpi=bool(nest_mpi),
                              reasons=reasons)
    ranks = np if np is not None else nodes * rpn

    spec: ContainerSpec | None = resolve_container(container) if container else None
    in_image = spec is not None

    env: dict[str, str] = {"OMP_NUM_THREADS": str(tpr)}
    if alloc.scheduler == "slurm":
        launcher = "srun"
        env["SRUN_CPUS_PER_TASK"] = str(tpr)
        reasons.append("inside Slurm: srun starts the ranks (SRUN_CPUS_PER_TASK set, since srun no longer "
                       "inherits --cpus-per-task from sbatch)")
    elif alloc.scheduler == "flux":
        launcher = "flux"
        reasons.append("inside Flux: `flux run` starts the ranks (it provides PMI)")
    elif ranks > 1:
        launcher = "mpiexec"
        reasons.append(f"{ranks} ranks outside Slurm: mpiexec starts them")
    else:
        launcher = "none"
        reasons.append("one rank: no MPI launcher")
    if engine == "NEURON" and ranks > 1 and not in_image:
        from sonatarun.mpi import find_libmpi

        lib = find_libmpi()
        if lib:
            env["MPI_LIB_NRN_PATH"] = lib
            reasons.append(f"NEURON finds MPI through MPI_LIB_NRN_PATH={lib}")
        else:
            reasons.append("no libmpi found for NEURON's MPI_LIB_NRN_PATH: install mpich (pip install mpich) "
                           "or load your MPI module")

    run_cmd = [*run_executable(in_image), "run", config]
    if (engine == "NEST" or tpr > 1 or threads is not None) and not any(
            a == "--threads" or a.startswith("--threads=") for a in extra):
        run_cmd += ["--threads", str(tpr)]
    run_cmd += list(extra)

    if launcher == "srun":
        srun_mpi = srun_mpi or environ.get("SONATARUN_SRUN_MPI") or choose_srun_mpi(reasons)
    if launcher == "srun":
        launch_cmd = ["srun", f"--mpi={srun_mpi}", f"--ntasks={ranks}", f"--nodes={nodes}",
                      f"--cpus-per-task={tpr}", "--kill-on-bad-exit=1"]
    elif launcher == "flux":
        launch_cmd = ["flux", "run", f"--ntasks={ranks}", f"--nodes={nodes}", f"--cores-per-task={tpr}"]
    elif launcher == "mpiexec":
        launch_cmd = ["mpiexec" if spec is not None and not spec.per_rank else find_mpiexec(), "-n", str(ranks)]
        if nodes > 1:
            launch_cmd += ["-ppn", str(rpn)]
    else:
        launch_cmd = []

    workdir = os.getcwd()
    out_dir = output_dir_from_args(extra) or cfg_out
    if spec is None:
        prefix, rest = launch_cmd, run_cmd
    else:
        # `launch` creates the output dir before starting, so every bind exists.
        binds = [workdir, str(Path(config).parent)] + ([out_dir] if out_dir else [])
        if spec.per_rank:
            prefix, rest = launch_cmd, wrap(spec, run_cmd, binds=binds, env_names=list(env), workdir=workdir)
            reasons.append(f"{spec.runtime}: the launcher starts one container per rank (host MPI/PMI passes in)")
        else:
            if launcher in ("srun", "flux"):
                raise InputError(f"Docker images cannot be started per rank by {launcher}", key="--container",
                                 fix="convert the image for Apptainer (apptainer build x.sif docker-daemon:TAG) "
                                     "and pass the .sif")
            inner = (launch_cmd + run_cmd) if launch_cmd else run_cmd
            prefix, rest = [], wrap(spec, inner, binds=binds, env_names=list(env), workdir=workdir)
            reasons.append("docker: one container runs the MPI launcher inside the image")

    return RunPlan(config=config, engine=engine, scheduler=alloc.scheduler, job_id=alloc.job_id, nodes=nodes,
                   ranks_per_node=rpn, threads_per_rank=tpr, ranks=ranks, launcher=launcher,
                   container=spec.to_dict() if spec else None, env=env, command=prefix + rest,
                   launcher_args=prefix, run_args=rest, output_dir=out_dir,
                   workdir=workdir, reasons=reasons, topology=topo.to_dict(), allocation=alloc.to_dict())
