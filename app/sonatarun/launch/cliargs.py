"""Arguments shared by `plan`, `launch` and `submit`, and the ``-- extra run args`` split.

argparse cannot mix optional arguments after a positional with a trailing ``--`` list, so
everything after CONFIG is taken as a remainder and split here: what comes before ``--``
is parsed again as this command's own options, what comes after goes to `sonatarun run`.
"""
from __future__ import annotations

import argparse

from sonatarun.errors import InputError


def add_common(p: argparse.ArgumentParser) -> None:
    """--np, --threads, --container, and CONFIG with everything after it (split by split_run_args)."""
    p.add_argument("--np", type=int, default=None, metavar="N", help="total MPI ranks (default: from the plan)")
    p.add_argument("--threads", type=int, default=None, metavar="T", help="threads per rank (default: from the plan)")
    p.add_argument("--container", default=None, metavar="IMAGE",
                   help="run inside IMAGE: a .sif file, docker://, docker-daemon: (Apptainer) or a Docker tag")
    # CONFIG is the first word of the remainder: argparse drops a `--` that starts a remainder, so a
    # remainder starting after CONFIG would lose the `--` of `CONFIG -- --output-dir out`.
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="CONFIG [options] [-- run args]",
                   help="simulation config (JSON), this command's options, then after --: arguments passed on to "
                        "`sonatarun run` (e.g. -- --output-dir out)")
    p.set_defaults(_parser=p)


def split_run_args(args: argparse.Namespace) -> list[str]:
    """Set ``args.config`` and the options given after it; return the args after ``--``."""
    rest = list(args.rest or [])
    if rest and rest[0] == "--":
        rest = rest[1:]
    if not rest or rest[0].startswith("-"):
        raise InputError("a simulation config is required", fix="sonatarun <command> CONFIG [options] [-- run args]")
    config, rest = rest[0], rest[1:]
    if "--" in rest:
        i = rest.index("--")
        own, run = rest[:i], rest[i + 1:]
    else:
        own, run = rest, []
    if own:
        parser: argparse.ArgumentParser = args._parser
        ns = parser.parse_args(own + [config])
        if ns.rest != [config]:
            raise InputError(f"unexpected arguments {' '.join(own)!r}",
                             fix="put arguments for `sonatarun run` after --, e.g. -- --output-dir out")
        for key, value in vars(ns).items():
            if key in ("rest", "_parser"):
                continue
            if value != parser.get_default(key):
                setattr(args, key, value)
    args.config = config
    args.run_args = run
    return run
