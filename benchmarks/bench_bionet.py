"""BMTK BioNet vs sonatarun on the same detailed network, side by side.

    python benchmarks/bench_bionet.py [--cells-per-morph 10] [--tstop 3000] [--np N] [--coreneuron]

Builds the bio_network example at benchmark size (default 50 biophysical cells on five
real morphologies, 50 virtual inputs, 3 s) into ``benchmarks/generated/bionet`` with two
configs: reports on 10 cells (``v`` of every segment + the synapses' current ``i``) and no reports.
Runs BMTK and sonatarun on each, one after the other (never concurrently), each in its own
process so peak RSS is that run's alone, and prints phase times and ratios. Not a test.

Phases: *build* = cells + connections + inputs (+ report setup), *simulate* = the
integration loop (with report writing for both tools), *total* = wall time of the
whole process (interpreter start, imports and output included). Phases are timed in CPU
seconds by default (``--clock wall`` for wall time): on a shared machine other jobs inflate
wall time arbitrarily, CPU time much less.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLOCK = "cpu"
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

BMTK_CHILD = r'''
import json, os, sys, time, resource
cfg, out, mech = sys.argv[1:4]
if os.environ.get("BENCH_CLOCK") == "cpu":
    time.perf_counter = time.process_time
t0 = time.perf_counter()
from bmtk.simulator import bionet
conf = bionet.Config.from_json(cfg, validate=True)
conf.mechanisms_dir = mech
o = conf.output
o["output_dir"] = conf.output_dir = out
o["spikes_file"] = os.path.join(out, "spikes.h5")
o["log_file"] = conf.log_file = os.path.join(out, "log.txt")
o["log_to_console"] = False
conf.build_env()
t1 = time.perf_counter()
net = bionet.BioNetwork.from_config(conf)
sim = bionet.BioSimulator.from_config(conf, network=net)
t2 = time.perf_counter()
sim.run()
t3 = time.perf_counter()
print("PHASES " + json.dumps({"setup": t1 - t0, "build": t2 - t1, "simulate": t3 - t2}), flush=True)
bionet.nrn.quit_execution()
'''


def build_network(dest: Path, per_morph: int, n_lgn: int, tstop: float) -> None:
    spec = importlib.util.spec_from_file_location("bio_build", ROOT / "examples" / "bio_network" / "build_network.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    n_inh = max(1, round(per_morph * 0.6))
    mod.build(dest, n_exc_per_morph=per_morph, n_inh_per_morph=n_inh, n_lgn=n_lgn, tstop=tstop)
    cfg = json.loads((dest / "config.simulation.json").read_text())
    n_cells = 3 * per_morph + 2 * n_inh
    recorded = list(range(0, n_cells, max(1, n_cells // 10)))[:10]
    cfg["node_sets"]["recorded"] = {"population": "bio", "node_id": recorded}
    cfg["reports"] = {
        "v_all": {"module": "membrane_report", "cells": "recorded", "variable_name": "v", "sections": "all",
                  "file_name": "v_all.h5"},
        "syn_i": {"module": "netcon_report", "cells": "recorded", "variable_name": "i", "syn_type": "Exp2Syn",
                  "file_name": "syn_i.h5"},
    }
    (dest / "config.reports.json").write_text(json.dumps(cfg, indent=2))
    cfg["reports"] = {}
    (dest / "config.noreports.json").write_text(json.dumps(cfg, indent=2))
    mech = dest / "components" / "mechanisms"
    if not (mech / platform.machine() / "libnrnmech.so").exists():
        subprocess.run([str(Path(sys.executable).parent / "nrnivmodl"), "modfiles"], cwd=mech, check=True,
                       capture_output=True)
    print(f"network: {n_cells} biophysical cells, {n_lgn} virtual, tstop {tstop} ms -> {dest}")


def measured(cmd: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """Run `cmd`; return (process, wall s, peak RSS in MB of the largest process it started, CPU s of all).
    Each call runs in a fresh intermediate process so RUSAGE_CHILDREN covers this run only."""
    wrapper = ("import resource, subprocess, sys, time, json; t=time.perf_counter(); "
               "p=subprocess.run(sys.argv[1:]); w=time.perf_counter()-t; "
               "u=resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print('MEASURE '+json.dumps({'wall': w, 'rss_kb': u.ru_maxrss, 'cpu': u.ru_utime + u.ru_stime, "
               "'rc': p.returncode}), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MEASURE ")][-1]
    m = json.loads(line[len("MEASURE "):])
    if m["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc, m["wall"], m["rss_kb"] / 1024.0, m["cpu"]


def run_bmtk(cfg: Path, out: Path, np: int | None) -> dict:
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui")
    cmd = [sys.executable, "-c", BMTK_CHILD, str(cfg), str(out), str(cfg.parent / "components" / "mechanisms")]
    if np:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(np), *cmd]
    proc, wall, rss, cpu = measured(cmd, cfg.parent, env)
    phases = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("PHASES ")][0][7:])
    return {"build": phases["build"], "simulate": phases["simulate"], "total": cpu if CLOCK == "cpu" else wall,
            "wall": wall, "cpu": cpu, "rss_mb": rss}


SONATARUN_CHILD = r'''
import os, sys, time
if os.environ.get("BENCH_CLOCK") == "cpu":  # the run record's phases then hold CPU seconds
    time.perf_counter = time.process_time
from sonatarun.cli.main import main
sys.exit(main(sys.argv[1:]))
'''


def run_sonatarun(cfg: Path, out: Path, np: int | None, threads: int | None = None,
                  coreneuron: bool = False) -> dict:
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui")
    cmd = [sys.executable, "-c", SONATARUN_CHILD, "run", str(cfg), "--output-dir", str(out)]
    if threads:
        cmd += ["--threads", str(threads)]
    if coreneuron:
        cmd += ["--coreneuron"]
    if np:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(np), *cmd]
    _, wall, rss, cpu = measured(cmd, cfg.parent, env)
    record = json.loads((out / "sonatarun.json").read_text())
    return {"build": record["phases"]["build"], "simulate": record["phases"]["simulate"],
            "total": cpu if CLOCK == "cpu" else wall, "wall": wall, "cpu": cpu, "rss_mb": rss}


def spikes_agree(a: Path, b: Path) -> str:
    from tests.bmtk_support import read_spikes

    ea, eb = read_spikes(a / "spikes.h5"), read_spikes(b / "spikes.h5")
    ia, ta = ea.get("bio", ([], []))
    ib, tb = eb.get("bio", ([], []))
    if len(ia) == len(ib) and (ia == ib).all():
        return f"{len(ia)} spikes, identical ids, max |dt| {abs(ta - tb).max() if len(ta) else 0:.3g} ms"
    return f"spike counts differ: BMTK {len(ia)}, sonatarun {len(ib)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells-per-morph", type=int, default=12, help="exc cells per morphology (x3, +60%% inh x2)")
    ap.add_argument("--lgn", type=int, default=50)
    ap.add_argument("--tstop", type=float, default=3000.0)
    ap.add_argument("--np", type=int, default=None, help="run both under mpiexec -n NP")
    ap.add_argument("--out", type=Path, default=HERE / "generated" / "bionet")
    ap.add_argument("--threads", type=int, default=None,
                    help="NEURON threads per rank for sonatarun (BMTK has none); use with --clock wall")
    ap.add_argument("--coreneuron", action="store_true",
                    help="run sonatarun with --coreneuron (its mechanisms compiled for CoreNEURON before timing)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="time phases in CPU seconds (default; robust on a shared machine) or wall seconds")
    args = ap.parse_args()
    global CLOCK
    CLOCK = args.clock
    os.environ["BENCH_CLOCK"] = args.clock

    os.environ.setdefault("SONATARUN_CACHE", str(ROOT / ".cache" / "sonatarun"))
    args.out = args.out.resolve()
    build_network(args.out, args.cells_per_morph, args.lgn, args.tstop)
    # warm the mechanism cache so compiling is not timed
    subprocess.run([sys.executable, "-m", "sonatarun.cli.main", "mechanisms", "build",
                    str(args.out / "components" / "mechanisms"), *(["--coreneuron"] if args.coreneuron else [])],
                   check=True, capture_output=True)
    res: dict[str, dict] = {}
    for label, cfg in (("reports", "config.reports.json"), ("noreports", "config.noreports.json")):
        res[f"bmtk_{label}"] = run_bmtk(args.out / cfg, args.out / f"out_bmtk_{label}", args.np)
        res[f"sonatarun_{label}"] = run_sonatarun(args.out / cfg, args.out / f"out_sonatarun_{label}", args.np,
                                                  args.threads, args.coreneuron)

    b, s = res["bmtk_reports"], res["sonatarun_reports"]
    bn, sn = res["bmtk_noreports"], res["sonatarun_noreports"]
    rows = [
        ("build (s)", b["build"], s["build"], b["build"] / s["build"]),
        ("simulate (s)", b["simulate"], s["simulate"], b["simulate"] / s["simulate"]),
        (f"total ({CLOCK}, whole process) (s)", b["total"], s["total"], b["total"] / s["total"]),
        ("total wall (s)", b["wall"], s["wall"], b["wall"] / s["wall"]),
        ("peak RSS (MB)", b["rss_mb"], s["rss_mb"], b["rss_mb"] / s["rss_mb"]),
        ("simulate, no reports (s)", bn["simulate"], sn["simulate"], bn["simulate"] / sn["simulate"]),
        ("simulate with/without reports", b["simulate"] / bn["simulate"], s["simulate"] / sn["simulate"], None),
    ]
    agree = spikes_agree(args.out / "out_bmtk_reports", args.out / "out_sonatarun_reports")
    print(f"\nranks: {args.np or 1}, sonatarun threads: {args.threads or 1}"
          f"{', sonatarun on CoreNEURON' if args.coreneuron else ''}; spikes: {agree}")
    print(f"phase times in {CLOCK} seconds")
    print(f"{'phase':32s} {'BMTK':>10s} {'sonatarun':>10s} {'BMTK/sonatarun':>15s}")
    for name, x, y, r in rows:
        print(f"{name:32s} {x:10.3f} {y:10.3f} {('%.2fx' % r) if r else '':>15s}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    name = f"bench_bionet{'_t' + str(args.threads) if args.threads else ''}" \
           f"{'_coreneuron' if args.coreneuron else ''}.json"
    (results / name).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                            "runs": res}, indent=2))


if __name__ == "__main__":
    main()
