"""`sonatarun doctor`: engines, MPI, HDF5, schedulers, containers and topology found here."""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check engines, MPI, HDF5, schedulers and containers; say how to fix gaps",
                       description="Probe NEURON, NEST, mpi4py and h5py (each in a child process), list schedulers "
                                   "and container runtimes on PATH and the topology. Exit code 1 when a required "
                                   "part is missing.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonatarun.launch.doctor import run_doctor

    report = run_doctor()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.describe())
    return 0 if report.ok else 1
