"""`sonatarun mechanisms build DIR`: compile NEURON .mod files once, into the content-keyed cache.

`run` compiles a config's ``mechanisms_dir`` on first use anyway; building ahead of
time keeps that out of a cluster job (or bakes it into a container image), and
`mechanisms list DIR` shows what a directory provides and where its build lives.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mechanisms", help="compile NEURON .mod files into sonatarun's cache")
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    b = msub.add_parser("build", help="compile DIR/*.mod (or DIR/modfiles/*.mod) once per content")
    b.add_argument("directory", type=Path)
    b.add_argument("--coreneuron", action="store_true",
                   help="build for `run --coreneuron` (nrnivmodl -coreneuron, with the package's CoreNEURON mods)")
    b.set_defaults(func=build)
    ls = msub.add_parser("list", help="show the mechanisms DIR defines and whether they are compiled")
    ls.add_argument("directory", type=Path)
    ls.set_defaults(func=show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _names(files: list[Path]) -> list[str]:
    from sonatarun.engines.neuron.mechanisms import declared_names

    return declared_names(files)


def build(args: argparse.Namespace) -> int:
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
    from sonatarun.engines.neuron import mechanisms
    from sonatarun.errors import EngineError

    directory = args.directory
    if not directory.is_dir():
        raise EngineError("not a directory", file=directory, fix="give the folder holding the .mod files")
    files = mechanisms.mod_files(directory)
    log = logging.getLogger("sonatarun.mechanisms")
    if not log.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
    if args.coreneuron:
        return _build_coreneuron(directory, files, log)
    target = mechanisms.cache_root() / mechanisms.content_key(files) if files else None
    cached = target is not None and mechanisms._library(target) is not None
    lib = mechanisms.build(directory, log=log)
    state = "already compiled" if cached else "compiled"
    print(f"{len(files)} mechanism file(s) {state}: {', '.join(_names(files))}")
    print(f"library: {lib}")
    return 0


def _build_coreneuron(directory: Path, files: list[Path], log: logging.Logger) -> int:
    from sonatarun.engines.neuron import coreneuron

    was_cached = coreneuron.cached(directory) is not None
    found = coreneuron.build(directory, log=log)
    for name, mechs in found.excluded.items():
        print(f"warning: {name} does not compile for CoreNEURON: left out ({', '.join(mechs) or 'no mechanisms'} "
              f"unavailable with --coreneuron)")
    kept = [f for f in files if f.name not in found.excluded]
    state = "already compiled" if was_cached else "compiled"
    print(f"{len(kept)} mechanism file(s) {state} for CoreNEURON: {', '.join(_names(kept))}")
    print(f"library: {found.library}")
    return 0


def show(args: argparse.Namespace) -> int:
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
    from sonatarun.engines.neuron import mechanisms

    files = mechanisms.mod_files(args.directory)
    if not files:
        print(f"no .mod files in {args.directory}")
        return 1
    target = mechanisms.cache_root() / mechanisms.content_key(files)
    lib = mechanisms._library(target)
    for f, n in zip(files, [_names([f]) for f in files]):
        print(f"{f.name}: {', '.join(n)}")
    print(f"compiled: {lib}" if lib else f"not compiled yet (would go to {target})")
    return 0
