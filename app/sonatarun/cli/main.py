"""Entry point of the ``sonatarun`` command.

Each subcommand lives in ``cli/cmd_<name>.py`` and exposes ``add_parser(subparsers)``,
which registers its arguments and sets ``func`` to a callable ``(args) -> int``.
Adding a command is adding a module and its name to :data:`COMMANDS`.
"""
from __future__ import annotations

import sys

from sonatarun import __version__

TYPE_CHECKING = False  # not typing's: importing typing costs ~18 ms before the run command re-executes itself
if TYPE_CHECKING:
    import argparse

COMMANDS = ["validate", "run", "summary", "plot", "mechanisms", "plan", "launch", "submit", "doctor"]


def build_parser() -> argparse.ArgumentParser:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="sonatarun",
        description="Run SONATA brain-network models on NEURON and NEST, from a laptop to a cluster.",
    )
    parser.add_argument("--version", action="version", version=f"sonatarun {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"sonatarun.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sonatarun.cli.cmd_{name}":
                continue  # command not shipped in this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and next((a for a in sys.argv[1:] if not a.startswith("-")), None) == "run":
        from sonatarun.launch.hugepages import reexec_if_wanted

        reexec_if_wanted()  # SONATARUN_HUGEPAGES=1: huge pages for long simulations (launch/hugepages.py)
    from sonatarun.errors import Interrupted, SonataRunError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `--debug` is accepted anywhere on the line, as users type it after the subcommand.
    debug = "--debug" in argv
    if debug:
        argv = [a for a in argv if a != "--debug"]
    args = parser.parse_args(argv)
    args.debug = debug
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except Interrupted as exc:
        print(f"sonatarun: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except SonataRunError as exc:
        if debug:
            import traceback  # only here: ~10 ms of every start-up otherwise

            traceback.print_exc()
        print(f"sonatarun: error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sonatarun: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sonatarun plan --json | head`
        sys.stderr.close()
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
