"""`sonatarun submit CONFIG --nodes N --time HH:MM:SS`: write a batch script and submit it."""
from __future__ import annotations

import argparse
import subprocess
import sys

from sonatarun.errors import InputError
from sonatarun.launch.cliargs import add_common, split_run_args
from sonatarun.launch.templates import TEMPLATE_FILES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", usage="sonatarun submit CONFIG --nodes N --time HH:MM:SS [--partition P] [--account A] "
                                             "[--scheduler slurm|pbs|lsf|sge] [--container IMAGE] [--dry-run] [options] [-- run args]",  help="write a batch script for Slurm/PBS/LSF/SGE and submit it",
                       description="Render a batch script from launchers/templates/ (resources from the plan, "
                                   "a checkpoint signal before the walltime, requeue and resume), write it next "
                                   "to the output directory and submit it. Arguments after -- go to "
                                   "`sonatarun run` in the job.")
    # Required, but checked in run(): argparse sees options typed after CONFIG only later.
    p.add_argument("--nodes", type=int, default=None, metavar="N", help="nodes to request (required)")
    p.add_argument("--time", default=None, metavar="HH:MM:SS", help="walltime (required)")
    p.add_argument("--partition", default=None, metavar="P", help="partition (Slurm) or queue (PBS, LSF, SGE)")
    p.add_argument("--account", default=None, metavar="A", help="account/project to charge")
    p.add_argument("--scheduler", choices=sorted(TEMPLATE_FILES), default=None,
                   help="default: the one whose submit command is on PATH")
    p.add_argument("--ranks-per-node", type=int, default=None, metavar="R",
                   help="default: from the plan (this machine's cores, assuming compute nodes alike)")
    p.add_argument("--signal-before", type=int, default=None, metavar="SECONDS",
                   help="ask for a checkpoint this long before the walltime (default: 300 s, less on short jobs)")
    p.add_argument("--sge-pe", default="mpi", metavar="PE", help="Grid Engine parallel environment name")
    p.add_argument("--dry-run", action="store_true", help="write the script and print it, submit nothing")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonatarun.launch.submit import prepare_submission

    extra = split_run_args(args)
    missing = [f"--{k}" for k in ("nodes", "time") if getattr(args, k) is None]
    if missing:
        raise InputError(f"{' and '.join(missing)} required", fix="e.g. --nodes 1 --time 01:00:00")
    sub = prepare_submission(args.config, extra=extra, nodes=args.nodes, time=args.time, partition=args.partition,
                             account=args.account, scheduler=args.scheduler, np=args.np, threads=args.threads,
                             ranks_per_node=args.ranks_per_node, container=args.container,
                             signal_before=args.signal_before, sge_pe=args.sge_pe, dry_run=args.dry_run)
    if args.dry_run:
        sys.stdout.write(sub.script_text)
        print(f"# written to {sub.script_path}", file=sys.stderr)
        print(f"# submit with: {sub.submit_shell()}", file=sys.stderr)
        return 0
    job_id = sub.submit()
    print(f"submitted {sub.scheduler} job {job_id}: script {sub.script_path}, log {sub.log_path}")
    return 0
