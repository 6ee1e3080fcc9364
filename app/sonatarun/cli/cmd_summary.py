"""`sonatarun summary OUTPUT_DIR`: what a finished run produced, in a few lines."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sonatarun.errors import OutputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="summarise the outputs of a finished run")
    p.add_argument("output_dir", type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import h5py
    import numpy as np

    from sonatarun.simulation.output import RUN_RECORD

    record_path = args.output_dir / RUN_RECORD
    if not record_path.exists():
        raise OutputError(f"no {RUN_RECORD}: not the output of a finished sonatarun run", file=args.output_dir,
                          fix="give the output_dir of a run that completed")
    rec = json.loads(record_path.read_text())
    span_s = (rec["tstop"] - rec["tstart"]) / 1000.0
    phases = rec.get("phases", {})
    print(f"run         {rec['config']}")
    print(f"engine      {rec['engine'].upper()} on {rec['ranks']} rank(s) x {rec.get('threads', 1)} thread(s)")
    print(f"simulated   {rec['tstop'] - rec['tstart']:.6g} ms of {rec['n_cells']} cells in {rec['wall_seconds']:.2f} s "
          f"(build {phases.get('build', 0):.2f} s, simulate {phases.get('simulate', 0):.2f} s, "
          f"write {phases.get('finalize', 0):.2f} s)")
    spikes = rec.get("spikes_file")
    if spikes and Path(spikes).exists():
        with h5py.File(spikes, "r") as f:
            print("spikes      population        spikes   active cells   mean rate of active (Hz)")
            for pop, g in f["spikes"].items():
                ids = g["node_ids"][()]
                n_active = len(np.unique(ids))
                rate = len(ids) / n_active / span_s if n_active and span_s > 0 else 0.0
                print(f"            {pop:<16} {len(ids):>7}   {n_active:>12}   {rate:>10.2f}")
    for rep in rec.get("reports", []):
        print(f"report      {rep}")
    print(f"outputs     {args.output_dir}")
    return 0
