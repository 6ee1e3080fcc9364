"""Arguments shared by `plan`, `launch` and `submit`, and the ``-- extra run args`` split.

argparse cannot mix optional arguments after a positional with a trailing ``--`` list, so
everything after CONFIG is taken as a remainder and split here: what comes before ``--``
is parsed again as this command's own options, what comes after goes to `sonatarun run`.
"""
from __future__ import annotations

import argparse

from sonatarun.errors import InputError


def add_common(p: argparse.ArgumentParser) -> None:
    """CONFIG, --np, --threads, --container and the run-args remainder."""
    p.add_argument("config", help="simulation config (JSON)")
    p.add_argument("--np", type=int, default=None, metavar="N", help="total MPI ranks (default: from the plan)")
    p.add_argument("--threads", type=int, default=None, metavar="T", help="threads per rank (default: from the plan)")
    p.add_argument("--container", default=None, metavar="IMAGE",
                   help="run inside IMAGE: a .sif file, docker://, docker-daemon: (Apptainer) or a Docker tag")
    p.add_argument("run_args", nargs=argparse.REMAINDER,
                   help="after --: arguments passed on to `sonatarun run` (e.g. -- --output-dir out)")
    p.set_defaults(_parser=p)


def split_run_args(args: argparse.Namespace) -> list[str]:
    """Parse options given after CONFIG into ``args``; return the args after ``--``."""
    rest = list(args.run_args or [])
    if "--" in rest:
        i = rest.index("--")
        own, run = rest[:i], rest[i + 1:]
    else:
        own, run = rest, []
    if own:
        parser: argparse.ArgumentParser = args._parser
        ns = parser.parse_args(own + [args.config])
        if ns.run_args:
            raise InputError(f"unexpected arguments {' '.join(own)!r}",
                             fix="put arguments for `sonatarun run` after --, e.g. -- --output-dir out")
        for key, value in vars(ns).items():
            if key in ("config", "run_args", "_parser"):
                continue
            if value != parser.get_default(key):
                setattr(args, key, value)
    args.run_args = run
    return run
