"""Turn a config and a resource request into a batch script on disk, and submit it.

The plan is made for the job as the scheduler will run it (an allocation of ``nodes``
nodes with ``ranks_per_node`` slots each), not for the login node we run on; the script is
written next to the output directory (not inside it: a run that overwrites its output
directory must not delete its own batch script and log).
"""
from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sonatarun.errors import InputError
from sonatarun.launch.plan import RunPlan, make_plan
from sonatarun.launch.scheduler import SUBMIT_COMMANDS, Allocation, schedulers_on_path
from sonatarun.launch.templates import (TEMPLATE_FILES, BatchRequest, default_signal_seconds, job_name_for,
                                        log_pattern, parse_walltime, render_batch, submit_command)
from sonatarun.launch.topology import detect_topology

SCRIPT_SUFFIX = {"slurm": "sbatch", "pbs": "pbs", "lsf": "bsub", "sge": "qsub"}


@dataclass
class Submission:
    scheduler: str
    plan: RunPlan
    script_path: Path
    script_text: str
    log_path: Path
    argv: list[str]
    stdin_script: bool

    def submit_shell(self) -> str:
        return shlex.join(self.argv) + (f" < {shlex.quote(str(self.script_path))}" if self.stdin_script else "")

    def submit(self) -> str:
        """Submit and return the job id the scheduler printed."""
        stdin = self.script_path.open() if self.stdin_script else subprocess.DEVNULL
        try:
            proc = subprocess.run(self.argv, stdin=stdin, capture_output=True, text=True,
                                  cwd=self.plan.workdir, timeout=120)
        finally:
            if self.stdin_script:
                stdin.close()  # type: ignore[union-attr]
        if proc.returncode != 0:
            msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise InputError(f"{self.argv[0]} refused the job: {msg[-1] if msg else proc.returncode}",
                             file=self.script_path, fix="check the partition, account and limits")
        out = proc.stdout.strip()
        if self.scheduler == "slurm":
            return out.split(";")[0]
        if self.scheduler == "lsf":  # "Job <123> is submitted to queue <normal>."
            return out.split("<", 1)[1].split(">", 1)[0] if "<" in out else out
        return out.split()[0] if out else "?"


def pick_scheduler(requested: str | None, dry_run: bool) -> str:
    if requested:
        return requested
    found = schedulers_on_path()
    for name in ("slurm", "pbs", "lsf", "sge"):
        if name in found:
            return name
    if dry_run:
        return "slurm"
    raise InputError("no batch scheduler found on PATH (sbatch, qsub, bsub)",
                     fix="run this on a cluster login node, or pass --scheduler with --dry-run to only write the script")


def prepare_submission(config: str | Path, *, extra: Sequence[str], nodes: int, time: str,
                       partition: str | None = None, account: str | None = None, scheduler: str | None = None,
                       np: int | None = None, threads: int | None = None, ranks_per_node: int | None = None,
                       container: str | None = None, signal_before: int | None = None, sge_pe: str = "mpi",
                       dry_run: bool = False) -> Submission:
    """Plan the job, render its script, write it next to the output, and return how to submit it."""
    sched = pick_scheduler(scheduler, dry_run)
    if sched not in TEMPLATE_FILES:
        raise InputError(f"unknown scheduler {sched!r}", key="--scheduler")
    if nodes < 1:
        raise InputError("--nodes must be at least 1", key="--nodes")
    walltime = parse_walltime(time)
    topo = detect_topology()
    slots = ranks_per_node or topo.usable_cores
    alloc = Allocation(sched, "<job>", tuple(f"node{i}" for i in range(nodes)), (slots,) * nodes,
                       source=f"the request: --nodes {nodes}, {slots} slot(s) per node"
                              + ("" if ranks_per_node else " (this machine's usable cores; pass --ranks-per-node "
                                                           "if compute nodes differ)"))
    plan = make_plan(config, np=np, threads=threads, container=container, extra=extra, topology=topo,
                     allocation=alloc)
    out_dir = Path(plan.output_dir or plan.workdir)
    base = out_dir.parent / f"{out_dir.name}-{sched}"
    script = Path(f"{base}.{SCRIPT_SUFFIX[sched]}")
    log = Path(f"{base}-{log_pattern(sched)}")
    req = BatchRequest(scheduler=sched, job_name=job_name_for(plan.config), nodes=plan.nodes,
                       ranks_per_node=plan.ranks_per_node, threads_per_rank=plan.threads_per_rank,
                       walltime=walltime,
                       signal_seconds=signal_before if signal_before is not None else default_signal_seconds(walltime),
                       workdir=plan.workdir, output_dir=str(out_dir), script_path=str(script),
                       launch=plan.launcher_args, run=plan.run_args, env=plan.env, partition=partition,
                       account=account, sge_pe=sge_pe)
    text = render_batch(req)
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    script.chmod(0o755)
    argv, stdin_script = submit_command(sched, str(script), str(log))
    return Submission(sched, plan, script, text, log, argv, stdin_script)


__all__ = ["Submission", "prepare_submission", "pick_scheduler", "SUBMIT_COMMANDS"]
