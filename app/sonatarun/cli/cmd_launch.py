"""`sonatarun launch CONFIG`: detect, plan, and start `sonatarun run` in parallel."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from sonatarun.launch.cliargs import add_common, split_run_args

# Signals passed on to the launcher, which passes them to every rank (srun and mpiexec do):
# USR1/TERM ask the run to checkpoint and stop (exit 75), INT stops it.
FORWARDED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch", usage="sonatarun launch CONFIG [--np N] [--threads T] [--container IMAGE] [--dry-run] [-- run args]",  help="run a config in parallel with the plan that fits this machine/allocation",
                       description="Detect, plan (see `sonatarun plan`), and start `sonatarun run` under srun or "
                                   "mpiexec, optionally in a container. Arguments after -- go to `sonatarun run`.")
    p.add_argument("--dry-run", action="store_true", help="print the command and environment, run nothing")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonatarun.launch.container import ContainerSpec, require_runtime
    from sonatarun.launch.plan import make_plan

    extra = split_run_args(args)
    plan = make_plan(args.config, np=args.np, threads=args.threads, container=args.container, extra=extra)
    if args.dry_run:
        print(plan.shell_command())
        return 0
    if plan.container:
        c = plan.container
        require_runtime(ContainerSpec(c["image"], c["runtime"], c["executable"], c["version"]))
        if plan.output_dir:
            Path(plan.output_dir).mkdir(parents=True, exist_ok=True)  # a bind mount must exist
    print(f"sonatarun launch: {plan.ranks} rank(s) x {plan.threads_per_rank} thread(s) via {plan.launcher}",
          file=sys.stderr, flush=True)
    env = dict(os.environ)
    env.update(plan.env)
    proc = subprocess.Popen(plan.command, env=env)

    def forward(signum, _frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                return proc.wait()
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
                continue
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
