"""Checkpoint cost on the examples: write time, size on disk, restore time, and the run's own time.

Runs each example three ways in one go: plain, with a checkpoint at every block, and a
`--resume` from the last checkpoint; prints a table. Not part of the test suite.

    python benchmarks/bench_checkpoint.py [--np 2] [--examples ring_intfire bio_network point_nest]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - t0, proc.stdout


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--examples", nargs="+", default=["ring_intfire", "bio_network", "point_nest"])
    args = ap.parse_args()
    base = [sys.executable, "-m", "sonatarun.cli.main", "run"]
    if args.np > 1:
        base = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(args.np), *base]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.examples:
            d = Path(tmp) / name
            shutil.copytree(ROOT / "examples" / name, d, ignore=shutil.ignore_patterns("output*", "x86_64"))
            cfg_path = d / "config.simulation.json"
            cfg = json.loads(cfg_path.read_text())
            dt, tstop = cfg["run"].get("dt", 0.1), cfg["run"]["tstop"]
            block_ms = max(dt, tstop / 5)  # five blocks, a checkpoint after each of the first four
            cfg["run"]["nsteps_block"] = int(round(block_ms / dt))
            cfg_path.write_text(json.dumps(cfg))
            t_plain, _ = run([*base, str(cfg_path), "--output-dir", str(d / "plain")], d)
            t_ck, out = run([*base, str(cfg_path), "--output-dir", str(d / "ck"), "--checkpoint-interval",
                             str(block_ms)], d)
            writes = [float(x) for x in re.findall(r"checkpoint at t = \S+ ms written in ([0-9.]+) s", out)]
            size = du(d / "ck" / "checkpoint")
            t_resume, out = run([*base, str(cfg_path), "--output-dir", str(d / "ck"), "--resume"], d)
            rows.append((name, len(writes), sum(writes) / max(1, len(writes)), size, t_plain, t_ck, t_resume))
    print(f"{'example':<16}{'ckpts':>6}{'write/ckpt s':>14}{'size':>10}{'run s':>8}{'run+ckpt s':>12}{'resume s':>10}")
    for name, n, w, size, tp, tc, tr in rows:
        print(f"{name:<16}{n:>6}{w:>14.3f}{size / 1e6:>8.2f}MB{tp:>8.2f}{tc:>12.2f}{tr:>10.2f}")
    print(f"({args.np} rank(s); resume = a whole process from the last checkpoint to tstop, build included)")


if __name__ == "__main__":
    main()
