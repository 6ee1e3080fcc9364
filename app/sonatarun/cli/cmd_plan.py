"""`sonatarun plan CONFIG`: what `launch` would do, and why, without doing it."""
from __future__ import annotations

import argparse
import json

from sonatarun.launch.cliargs import add_common, split_run_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", usage="sonatarun plan CONFIG [--json] [--np N] [--threads T] [--container IMAGE] [-- run args]",  help="show how `launch` would run a config here (ranks, threads, command)",
                       description="Detect the scheduler, topology and container runtime, and show the run plan: "
                                   "ranks per node x threads per rank and why, the launcher, the environment and "
                                   "the exact command.")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonatarun.launch.plan import make_plan

    extra = split_run_args(args)
    plan = make_plan(args.config, np=args.np, threads=args.threads, container=args.container, extra=extra)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(plan.describe())
    return 0
