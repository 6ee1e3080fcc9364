"""`sonatarun validate CONFIG`: check everything `run` needs, without simulating."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sonatarun.errors import SonataRunError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a config and its circuit without simulating")
    p.add_argument("config", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonatarun.config import SimulationConfig
    from sonatarun.engines import registry
    from sonatarun.mpi import Comm
    from sonatarun.simulation import Simulation
    from sonatarun.simulation.simulation import RunOptions

    config = SimulationConfig.from_file(args.config)  # config errors are fatal: nothing else can be checked
    sim = Simulation(config, RunOptions(), comm=Comm(None))
    summary = sim.summary()
    problems: list[str] = []
    try:
        plan = sim.plan(stream=False)  # every edge read and checked now
        summary["local_plan"] = {"cells": sum(len(b) for b in plan["cells"]),
                                 "connections": sum(len(b) for b in plan["connections"]),
                                 "stimuli": len(plan["stimuli"]), "probes": len(plan["probes"])}
        check = getattr(registry.get(sim.engine_name), "check_plan", None)
        if check is not None:
            problems.extend(check(plan, config.components))
    except SonataRunError as exc:
        problems.append(exc.render())
    summary["problems"] = problems
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print(summary)
    return 2 if problems else 0


def _print(s: dict) -> None:
    print(f"config      {s['config']}")
    print(f"engine      {s['engine'].upper()}")
    r = s["run"]
    print(f"run         tstart {r['tstart']} ms, tstop {r['tstop']} ms, dt {r['dt']} ms, "
          f"{r['nsteps_block']} steps per block")
    print("populations")
    for p in s["populations"]:
        kinds = ", ".join(f"{k} x{v}" for k, v in p["model_types"].items())
        print(f"  {p['name']:<20} {p['nodes']:>9} nodes   {kinds}")
    print("edges")
    for e in s["edges"] or []:
        print(f"  {e['name']:<20} {e['edges']:>9} edges   {e['source']} -> {e['target']}")
    if not s["edges"]:
        print("  (none)")
    print("inputs      " + (", ".join(f"{k} ({v})" for k, v in s["inputs"].items()) or "(none)"))
    print("reports     " + (", ".join(f"{k} ({v})" for k, v in s["reports"].items()) or "(none)"))
    print(f"output_dir  {s['output_dir']}")
    for w in s["warnings"]:
        print(f"warning     {w}")
    if s["problems"]:
        print(f"problems    {len(s['problems'])}")
        for p in s["problems"]:
            print(f"  - {p}")
    else:
        print("problems    none: ready to run")
