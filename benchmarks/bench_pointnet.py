"""BMTK PointNet vs sonatarun (NEST engine) on generated networks of growing size, side by side.

For each size the network is generated once (benchmarks/generated/, git-ignored), then
BMTK PointNet and `sonatarun run` each run it in a fresh process under /usr/bin/time -v:

- build: process start until the simulation starts (interpreter, imports, reading the
  circuit, creating nodes/connections/inputs/recorders). BMTK: its "Simulation Started" log
  stamp; sonatarun: the time its run record is written (right after finalize) minus simulate
  and finalize. Neither includes the process exit, which is in the wall time only (before
  2026-12-01 sonatarun's build was wall - simulate - finalize, i.e. included its exit).
  sonatarun records spikes through its spike tap (a weight-0 self-connection per neuron
  seen by a weight_recorder, see docs/nest.md) where BMTK connects a spike_recorder to every
  neuron: that work is in both builds, cheaper in ours; what the tap costs during the run
  (delivering one more connection per spike, one extra min-delay slice after tstop) is in
  our simulate time;
- simulate: NEST integration (BMTK: log lines "Simulation Started" -> "Simulation finished";
  sonatarun: its run record, which includes the per-block draining and writing);
- finalize: writing outputs after the last block (BMTK: "finalizing results" -> "Done.";
  sonatarun: closing the writers);
- peak RSS of the process (ru_maxrss, /usr/bin/time -v).

Both tools run with cached bytecode, as after a pip install (sonatarun is byte-compiled
once before timing; BMTK's was compiled by pip), and without PYTHONDONTWRITEBYTECODE.

Both tools run NEST with the same number of threads (--threads: `run.n_thread` in BMTK's
config copy, `--threads` for sonatarun; default 1, which is also both tools' default).
NEST's results are identical for a fixed thread count, so the spikes are compared at every
thread count. BMTK is skipped for every size above the first one it does not finish within
--bmtk-timeout seconds. With --repeat N each tool runs N times per size and the run with the
shortest build is reported (the same rule for both tools). Both runs must produce the same
spikes (checked and printed).

With --ranks N sonatarun runs on N MPI ranks (mpiexec.mpich and the --mpi-venv interpreter, which
holds a NEST built with MPI: .ci/setup-nest-mpi.sh) with --threads each, and BMTK with N x
--threads threads: the same number of NEST virtual processes, hence the same spikes. Its peak
RSS is then the sum of the ranks' peaks (from its run record).

    python benchmarks/bench_pointnet.py --sizes 1k,10k,100k
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gen_point_network import GENERATOR, generate  # noqa: E402

SIZES = {
    "1k": (1_000, 100_000),
    "3k": (3_000, 300_000),
    "10k": (10_000, 1_000_000),
    "30k": (30_000, 3_000_000),
    "100k": (100_000, 10_000_000),
}
TIME_BIN = "/usr/bin/time"


@dataclass
class Result:
    tool: str
    size: str
    ok: bool
    wall: float = float("nan")
    build: float = float("nan")
    simulate: float = float("nan")
    finalize: float = float("nan")
    rss_mb: float = float("nan")
    spikes: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)


def _child_env() -> dict[str, str]:
    """The tools' environment: as a user's, i.e. Python may cache bytecode (see compile_sonatarun)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYNEST_QUIET="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_sonatarun() -> None:
    """Byte-compile sonatarun once, before any timing.

    BMTK, numpy, pandas and NEST were byte-compiled by pip when installed; sonatarun is an
    editable install (source in app/), and a session with PYTHONDONTWRITEBYTECODE=1 would make
    it alone recompile its ~40 modules (~0.1 s) in every run. A pip install compiles it too.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "app" / "sonatarun")], env=_child_env(),
                   check=False, stdout=subprocess.DEVNULL)


def _timed(cmd: list[str], cwd: Path, timeout: float, log: Path) -> tuple[int, float, float, str]:
    """Run under /usr/bin/time -v; return (exit code, wall s, peak RSS MB, stderr tail incl. CPU times)."""
    timing = log.with_suffix(".time")
    full = [TIME_BIN, "-v", "-o", str(timing), *cmd] if os.path.exists(TIME_BIN) else cmd
    env = _child_env()
    t0 = time.perf_counter()
    with open(log, "w") as out:
        try:
            proc = subprocess.run(full, cwd=cwd, stdout=out, stderr=subprocess.PIPE, text=True, timeout=timeout,
                                  env=env)
        except subprocess.TimeoutExpired:
            return -9, time.perf_counter() - t0, float("nan"), "timeout"
    wall = time.perf_counter() - t0
    log.with_suffix(".stderr").write_text(proc.stderr)
    stats = timing.read_text() if timing.exists() else ""
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats)
    rss = int(m.group(1)) / 1024.0 if m else float("nan")
    return proc.returncode, wall, rss, proc.stderr[-1500:] + "\n" + stats


def _cpu(stderr: str) -> float:
    """user + system CPU seconds reported by /usr/bin/time -v (robust to a busy machine)."""
    user = re.search(r"User time \(seconds\): ([\d.]+)", stderr)
    system = re.search(r"System time \(seconds\): ([\d.]+)", stderr)
    return float(user.group(1)) + float(system.group(1)) if user and system else float("nan")


def _bmtk_log_times(log_txt: Path) -> dict[str, float]:
    stamps = {}
    keys = {"Simulation Started": "start", "Simulation finished, finalizing results": "finished", "Done.": "done",
            "Building cells.": "cells", "Building recurrent connections": "recurrent", "Network created.": "network"}
    for line in log_txt.read_text().splitlines():
        for text, key in keys.items():
            if text in line:
                stamp = " ".join(line.split()[:2])
                stamps[key] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return stamps


def _spike_set(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    with h5py.File(path, "r") as f:
        for pop, g in f["spikes"].items():
            ids, ts = g["node_ids"][()].astype(np.int64), g["timestamps"][()]
            o = np.lexsort((ids, ts))
            out[pop] = (ids[o], ts[o])
    return out


def run_bmtk(size: str, config: Path, out: Path, timeout: float, threads: int) -> Result:
    cfg = json.loads(config.read_text())
    cfg["run"]["n_thread"] = threads  # BMTK PointNet's thread key
    bconf = config.with_name("config.bmtk.json")
    bconf.write_text(json.dumps(cfg, indent=2))
    started = time.time()
    code, wall, rss, err = _timed([sys.executable, str(ROOT / "examples/point_nest/run_bmtk.py"), str(bconf),
                                   "--output-dir", str(out)], config.parent, timeout, out.parent / "bmtk.stdout")
    if code != 0:
        return Result("bmtk", size, False, wall=wall, rss_mb=rss, note="timeout" if code == -9 else err[-300:])
    st = _bmtk_log_times(out / "log.txt")
    res = Result("bmtk", size, True, wall=wall, rss_mb=rss)
    res.extra = {"cpu": _cpu(err), "startup": st["cells"] - started, "cells": st["recurrent"] - st["cells"],
                 "recurrent_edges": st["network"] - st["recurrent"],
                 "inputs_and_recorders": st["start"] - st["network"]}
    res.simulate = st["finished"] - st["start"]
    res.finalize = st["done"] - st["finished"]
    res.build = st["start"] - started
    res.spikes = sum(len(v[0]) for v in _spike_set(out / "spikes.h5").values())
    return res


def mpi_command(ranks: int, mpi_venv: Path) -> list[str]:
    """``mpiexec.mpich -n N <venv python>`` for sonatarun on several ranks: the venv holds a NEST
    built with MPI (.ci/setup-nest-mpi.sh), the pip wheel has none."""
    py, launcher = mpi_venv / "bin" / "python", shutil.which("mpiexec.mpich")
    if not py.exists() or launcher is None:
        raise SystemExit(f"--ranks {ranks} needs {py} with an MPI NEST and mpiexec.mpich (.ci/setup-nest-mpi.sh)")
    return [launcher, "-n", str(ranks), str(py)]


def run_sonatarun(size: str, config: Path, out: Path, timeout: float, threads: int, ranks: int = 1,
                  mpi_venv: Path | None = None) -> Result:
    started = time.time()
    python = mpi_command(ranks, mpi_venv or ROOT / ".venv-mpi") if ranks > 1 else [sys.executable]
    code, wall, rss, err = _timed([*python, "-m", "sonatarun.cli.main", "run", str(config), "--output-dir",
                                   str(out), "--threads", str(threads)], config.parent, timeout,
                                  out.parent / "sonatarun.stdout")
    if code != 0:
        return Result("sonatarun", size, False, wall=wall, rss_mb=rss, note="timeout" if code == -9 else err[-300:])
    record = json.loads((out / "sonatarun.json").read_text())
    ph = record["phases"]
    res = Result("sonatarun", size, True, wall=wall, rss_mb=rss, simulate=ph["simulate"], finalize=ph["finalize"])
    # The run record is written right after finalize: the simulation started at its mtime minus
    # simulate and finalize. Like BMTK's log stamp, this leaves the process exit (Python and NEST
    # tearing down ~GBs of connections: 0.05 s at 10k cells, ~0.3 s at 100k) out of the build.
    recorded = (out / "sonatarun.json").stat().st_mtime - started
    res.build = recorded - res.simulate - res.finalize
    res.spikes = int(record["n_spikes"])
    res.extra = {"cpu": _cpu(err), "engine_build_and_inputs": ph.get("build"), "exit": wall - recorded,
                 "edges_in_cache_order": record.get("engine_stats", {}).get("edges_reordered")}
    by_rank = record.get("memory", {}).get("peak_rss_mb_by_rank")
    if ranks > 1 and by_rank:  # /usr/bin/time sees the largest process only: the ranks share the node
        res.rss_mb = float(sum(by_rank))
        res.extra["rss_mb_by_rank"] = by_rank
    return res


def best_of(n: int, run) -> Result:
    """The run with the shortest build out of n (all n must succeed; a failure is returned at once)."""
    best = None
    for _ in range(max(1, n)):
        res = run()
        if not res.ok:
            return res
        if best is None or res.build < best.build:
            best = res
    best.extra["runs"] = max(1, n)
    return best


def table(rows: list[tuple[str, dict, Result | None, Result]]) -> str:
    head = (f"{'size':>5} {'cells':>7} {'edges':>10} | {'BMTK build':>10} {'ours':>7} {'x':>6} | "
            f"{'BMTK sim':>8} {'ours':>7} | {'BMTK fin':>8} {'ours':>6} {'fin%':>5} | "
            f"{'BMTK RSS':>8} {'ours':>7} {'ratio':>5} | spikes")
    lines = [head, "-" * len(head)]
    for size, meta, b, s in rows:
        def f(v, w=7, p=1):
            return f"{v:>{w}.{p}f}" if v == v else f"{'-':>{w}}"

        bb = b if (b is not None and b.ok) else None
        speed = (bb.build / s.build) if bb and s.ok else float("nan")
        rss_ratio = (s.rss_mb / bb.rss_mb) if bb and s.ok else float("nan")
        fin_pct = 100.0 * s.finalize / s.wall if s.ok else float("nan")
        same = "-" if not bb else ("same" if meta.get("same_spikes") else "DIFFER")
        note = "" if bb else (f" (BMTK: {b.note})" if b is not None else " (BMTK skipped)")
        lines.append(
            f"{size:>5} {meta['cells']:>7} {meta['edges']:>10} | {f(bb.build if bb else float('nan'), 10)} "
            f"{f(s.build)} {f(speed, 6)} | {f(bb.simulate if bb else float('nan'), 8)} {f(s.simulate)} | "
            f"{f(bb.finalize if bb else float('nan'), 8, 2)} {f(s.finalize, 6, 2)} {f(fin_pct, 5)} | "
            f"{f(bb.rss_mb if bb else float('nan'), 8, 0)} {f(s.rss_mb, 7, 0)} {f(rss_ratio, 5, 2)} | "
            f"{s.spikes if s.ok else '-'} {same}{note}")
    lines.append("times in s, RSS in MB; x = BMTK build / sonatarun build; fin% = sonatarun output "
                 "writing after the last block as % of its whole run")
    lines.append("")
    lines.append("build breakdown (s) and process CPU time (user+sys, s):")
    for size, meta, b, s in rows:
        if b is not None and b.ok:
            e = b.extra
            lines.append(f"  {size:>5} BMTK: startup+read {e.get('startup', float('nan')):.1f}, cells "
                         f"{e.get('cells', float('nan')):.1f}, recurrent edges {e.get('recurrent_edges', float('nan')):.1f}, "
                         f"inputs+recorders {e.get('inputs_and_recorders', float('nan')):.1f}; cpu {e.get('cpu', float('nan')):.1f}")
        if s.ok:
            e = s.extra
            eng = e.get("engine_build_and_inputs") or float("nan")
            lines.append(f"  {size:>5} sonatarun: startup+read+plan {s.build - eng:.1f}, NEST build (cells, edges, "
                         f"spike tap, inputs) {eng:.1f}; cpu {e.get('cpu', float('nan')):.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1k,10k,100k", help=f"comma list of {', '.join(SIZES)}")
    ap.add_argument("--bmtk-timeout", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ranks", type=int, default=1,
                    help="run sonatarun on N MPI ranks x --threads each (needs --mpi-venv); BMTK then runs "
                         "N x --threads threads: the same virtual processes, so the same spikes")
    ap.add_argument("--mpi-venv", type=Path, default=ROOT / ".venv-mpi")
    ap.add_argument("--no-bmtk", action="store_true")
    ap.add_argument("--no-sonatarun", action="store_true", help="run BMTK only (its results are kept for --reuse-bmtk)")
    ap.add_argument("--reuse-bmtk", default="",
                    help="comma list of sizes whose BMTK numbers come from an earlier run's bmtk.json "
                         "instead of running BMTK again (the 10M-edge case is expensive)")
    ap.add_argument("--tstop", type=float, default=500.0)
    ap.add_argument("--multapses", action="store_true",
                    help="networks whose source-target pairs may repeat (NEST connects them in file order)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each tool N times per size and keep its run with the shortest build (a shared, "
                         "busy machine); the spike check uses the last run of each")
    ap.add_argument("--generated", type=Path, default=HERE / "generated")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "bench_pointnet.json")
    args = ap.parse_args()
    compile_sonatarun()

    rows = []
    bmtk_gave_up = args.no_bmtk
    bmtk_threads = args.threads * args.ranks
    ours = f"t{args.threads}" + (f"_r{args.ranks}" if args.ranks > 1 else "")
    for size in args.sizes.split(","):
        cells, edges = SIZES[size]
        gdir = args.generated / (f"point_{size}" + ("_multapses" if args.multapses else ""))
        config = gdir / "config.simulation.json"
        t0 = time.perf_counter()
        stamp = json.loads((gdir / "SIZE").read_text()) if (gdir / "SIZE").exists() else {}
        if not config.exists() or stamp.get("generator") != GENERATOR:
            shutil.rmtree(gdir, ignore_errors=True)
            generate(gdir, cells, edges, tstop=args.tstop, multapses=args.multapses)
        meta = json.loads((gdir / "SIZE").read_text())
        meta["generate_s"] = time.perf_counter() - t0
        print(f"[{size}] {meta['cells']} cells, {meta['edges']} edges (generated in {meta['generate_s']:.1f} s)",
              flush=True)
        b = None
        saved = gdir / f"bmtk_t{bmtk_threads}.json"  # BMTK's numbers depend on the thread count
        if size in args.reuse_bmtk.split(",") and saved.exists():
            b = Result(**json.loads(saved.read_text()))
            print(f"  bmtk (earlier run): {asdict(b)}", flush=True)
        elif not bmtk_gave_up:
            b = best_of(args.repeat, lambda: run_bmtk(size, config, gdir / f"out_bmtk_t{bmtk_threads}",
                                                      args.bmtk_timeout, bmtk_threads))
            saved.write_text(json.dumps(asdict(b)))
            print(f"  bmtk: {asdict(b)}", flush=True)
        if b is not None and not b.ok:
            bmtk_gave_up = True
        if args.no_sonatarun:
            continue
        s = best_of(args.repeat, lambda: run_sonatarun(size, config, gdir / f"out_sonatarun_{ours}",
                                                       max(args.bmtk_timeout, 3600), args.threads, args.ranks,
                                                       args.mpi_venv))
        print(f"  sonatarun: {asdict(s)}", flush=True)
        if b is not None and b.ok and s.ok:
            ref = _spike_set(gdir / f"out_bmtk_t{bmtk_threads}" / "spikes.h5")
            got = _spike_set(gdir / f"out_sonatarun_{ours}" / "spikes.h5")
            meta["same_spikes"] = set(ref) == set(got) and all(
                np.array_equal(ref[p][0], got[p][0]) and np.array_equal(ref[p][1], got[p][1]) for p in ref)
        rows.append((size, meta, b, s))
    text = table(rows)
    print(f"\nsonatarun: {args.ranks} rank(s) x {args.threads} NEST thread(s); BMTK: 1 process x {bmtk_threads} "
          f"thread(s) (the same virtual processes){'; RSS: the sum over ranks' if args.ranks > 1 else ''}")
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([{"size": r[0], "meta": r[1], "bmtk": asdict(r[2]) if r[2] else None,
                                      "sonatarun": asdict(r[3])} for r in rows], indent=2))


if __name__ == "__main__":
    main()
