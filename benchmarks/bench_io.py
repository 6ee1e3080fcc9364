"""I/O benchmark: report-writing throughput of both HDF5 paths against a plain h5py write,
and the cost of closing a spikes file (by_time / by_id) at 1 and 2 ranks.

    python benchmarks/bench_io.py [--elements 10000] [--rows 10000] [--block 1000] [--spikes 4000000]

The report rows are written block by block exactly as a run does (``write_block`` +
``flush`` per block, cells dealt round-robin over ranks, file closed between blocks);
the baseline is one process writing the same float32 array with plain h5py, both as
one write and block by block (measured before and after the report runs, best of all).
Throughput counts the report's data bytes; files land in the page cache (no fsync) for
all methods alike; the 'disk' columns add one fsync at the end. The parallel path needs the venv that
``.ci/setup-parallel-h5py.sh`` builds (default ``.venv-mpi``) and Debian's mpiexec.mpich.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ workers (run under mpiexec)
def _cells(n_elements: int, per_cell: int, rank: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    n_cells = n_elements // per_cell
    mine = np.arange(rank, n_cells, size, dtype=np.uint64)
    return mine, np.full(len(mine), per_cell, dtype=np.int64)


def worker_report(args: argparse.Namespace) -> dict:
    """Best of ``--repeat`` writes in this process, each into a fresh file (as the baseline does)."""
    from sonatarun.io.report_writer import CompartmentReportWriter
    from sonatarun.mpi import world

    comm = world()
    out = Path(args.out)
    ids, counts = _cells(args.elements, args.per_cell, comm.rank, comm.size)
    n_local = int(counts.sum())
    rng = np.random.default_rng(comm.rank)
    block = rng.standard_normal((args.block, n_local)).astype(np.float32)  # generated before timing
    best_cache = best_disk = float("inf")
    for _ in range(args.repeat):
        if comm.rank == 0:
            out.unlink(missing_ok=True)
        comm.barrier()
        t0 = time.perf_counter()
        w = CompartmentReportWriter(out, comm, "pop", ids, counts, np.zeros(n_local), np.full(n_local, 0.5),
                                    0.0, args.rows * 0.1, 0.1, "v", "mV", group_size=args.group_size or None)
        for _ in range(args.rows // args.block):
            w.write_block(block)
            w.flush()
        w.close()
        comm.barrier()
        t_cache = comm.allreduce_max(time.perf_counter() - t0)
        if comm.rank == 0:
            _fsync(out)
        comm.barrier()
        t_disk = comm.allreduce_max(time.perf_counter() - t0)
        best_cache, best_disk = min(best_cache, t_cache), min(best_disk, t_disk)
    rss = comm.gather(_peak_rss_mb())
    return {"seconds": best_cache, "fsync_seconds": best_disk, "path": w.io_path, "ranks": comm.size,
            "rss_mb": [round(x) for x in rss] if rss else [], "placement": w._own.method}


def _peak_rss_mb() -> float:
    """VmHWM of this process image (ru_maxrss would include the parent's RSS at fork)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def worker_spikes(args: argparse.Namespace) -> dict:
    from sonatarun.io.spike_writer import SpikeWriter
    from sonatarun.mpi import world

    comm = world()
    n_blocks = 50
    n_cells = 100_000
    per_block = args.spikes // n_blocks // comm.size
    rng = np.random.default_rng(comm.rank)
    ids = (rng.integers(0, n_cells // comm.size, per_block) * comm.size + comm.rank).astype(np.uint64)
    frac = rng.uniform(0, 1, per_block)
    res = {}
    for sort in ("by_time", "by_id"):
        comm.barrier()
        t0 = time.perf_counter()
        w = SpikeWriter(Path(args.out), comm, ["pop"], sort)
        for b in range(n_blocks):
            w.append("pop", ids, np.round((b + frac) * 10.0, 3))
            w.flush()
        t1 = time.perf_counter()
        w.close()
        comm.barrier()
        t2 = time.perf_counter()
        res[sort] = {"blocks": comm.allreduce_max(t1 - t0), "close": comm.allreduce_max(t2 - t1)}
    res.update(path=w.io_path, ranks=comm.size)
    return res


# ------------------------------------------------------------------ driver
def plain_h5py(out: Path, rows: int, elements: int, block: int) -> tuple[float, float, float]:
    """(one write, per block, one write + fsync) seconds for the same float32 array."""
    import h5py

    rng = np.random.default_rng(0)
    one_block = rng.standard_normal((block, elements)).astype(np.float32)
    full = np.tile(one_block, (rows // block, 1))
    t0 = time.perf_counter()
    with h5py.File(out, "w") as f:
        f.create_dataset("data", data=full)
    t_one = time.perf_counter() - t0
    _fsync(out)
    t_disk = time.perf_counter() - t0
    del full
    out.unlink()
    t0 = time.perf_counter()
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("data", shape=(rows, elements), dtype=np.float32)
        for r in range(0, rows, block):
            ds[r:r + block] = one_block
    t_blocks = time.perf_counter() - t0
    out.unlink()
    return t_one, t_blocks, t_disk


def launch(kind: str, path: str, ranks: int, out: Path, args: argparse.Namespace) -> dict | None:
    env = dict(os.environ, SONATARUN_IO=path, PYTHONUNBUFFERED="1")
    if args.placement:
        env["SONATARUN_PLACEMENT"] = args.placement
    extra = ["--worker", kind, "--out", str(out), "--elements", str(args.elements), "--rows", str(args.rows),
             "--block", str(args.block), "--per-cell", str(args.per_cell), "--spikes", str(args.spikes),
             "--repeat", str(args.repeat), "--group-size", str(args.group_size)]
    if path == "parallel":
        py, launcher = Path(args.mpi_venv) / "bin" / "python", shutil.which("mpiexec.mpich")
        if not py.exists() or launcher is None:
            return None
        env.pop("MPI_LIB_NRN_PATH", None)
        cmd = [launcher, "-n", str(ranks), str(py), __file__, *extra]
    else:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [sys.executable, __file__, *extra]
        if ranks > 1:
            cmd = [str(mpiexec), "-n", str(ranks), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=10_000, help="report columns (segments)")
    ap.add_argument("--per-cell", type=int, default=50, help="columns per cell")
    ap.add_argument("--rows", type=int, default=10_000, help="report time steps")
    ap.add_argument("--block", type=int, default=1_000, help="rows per block")
    ap.add_argument("--spikes", type=int, default=4_000_000, help="spikes in the spikes benchmark")
    ap.add_argument("--repeat", type=int, default=3, help="keep the best of N runs")
    ap.add_argument("--mpi-venv", default=str(ROOT / ".venv-mpi"))
    ap.add_argument("--worker", choices=["report", "spikes"])
    ap.add_argument("--out")
    ap.add_argument("--no-spikes", action="store_true", help="report table only")
    ap.add_argument("--group-size", type=int, default=0,
                    help="ranks sharing one assembly buffer (default 0: every rank of a node; 1: each rank "
                         "alone, rows exchanged by messages as between nodes)")
    ap.add_argument("--placement", choices=["numpy", "compiled"],
                    help="column placement of the report runs (default: compiled when a C compiler is "
                         "there, as in a real run; numpy = SONATARUN_PLACEMENT=numpy, the fallback)")
    args = ap.parse_args()
    if args.worker:
        res = worker_report(args) if args.worker == "report" else worker_spikes(args)
        from sonatarun.mpi import world

        if world().is_root:
            print(json.dumps(res))
        return

    mb = args.rows * args.elements * 4 / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="bench_io_"))
    try:
        # the baseline runs before and after the report runs (best of all): a page-cache write is
        # memory-speed, so it moves with what else runs on the machine, and the ratios with it
        load0 = os.getloadavg()
        plain = [plain_h5py(tmp / "plain.h5", args.rows, args.elements, args.block) for _ in range(args.repeat)]
        results = {}
        for path in ("serial", "parallel"):
            for ranks in (1, 2):
                results[(path, ranks)] = launch("report", path, ranks, tmp / f"{path}{ranks}.h5", args)
                (tmp / f"{path}{ranks}.h5").unlink(missing_ok=True)
        plain += [plain_h5py(tmp / "plain.h5", args.rows, args.elements, args.block) for _ in range(args.repeat)]
        load1 = os.getloadavg()
        t_one, t_blk, t_one_disk = (min(p[i] for p in plain) for i in range(3))
        spread = max(p[0] for p in plain) / t_one
        print(f"report: {args.rows} rows x {args.elements} columns float32 = {mb:.0f} MB, "
              f"blocks of {args.block} rows, best of {args.repeat}")
        print(f"load average before {load0[0]:.1f}, after {load1[0]:.1f} (2 cores: above ~0.5 the machine "
              f"is shared); plain one-write spread over its {len(plain)} runs: worst/best {spread:.2f}")
        print("'cache': until the file is closed (page cache); 'disk': until fsync returns")
        print(f"{'method':38s} {'ranks':>5s} {'cache s':>8s} {'MB/s':>6s} {'vs plain':>8s} {'disk s':>7s} "
              f"{'MB/s':>6s} {'vs plain':>8s}  peak RSS MB per rank")
        print(f"{'plain h5py, one write':38s} {1:5d} {t_one:8.3f} {mb / t_one:6.0f} {'100%':>8s} {t_one_disk:7.3f} "
              f"{mb / t_one_disk:6.0f} {'100%':>8s}")
        print(f"{'plain h5py, per block':38s} {1:5d} {t_blk:8.3f} {mb / t_blk:6.0f} {t_one / t_blk:8.0%}")
        for (path, ranks), r in results.items():
            if r is None:
                print(f"{'sonatarun ' + path:38s} {ranks:5d}   (parallel h5py venv not found: skipped)")
                continue
            t, td = r["seconds"], r["fsync_seconds"]
            print(f"{'sonatarun ' + path + ' (write_block+flush)':38s} {ranks:5d} {t:8.3f} {mb / t:6.0f} "
                  f"{t_one / t:8.0%} {td:7.3f} {mb / td:6.0f} {t_one_disk / td:8.0%}  {r['rss_mb']} "
                  f"placement: {r['placement']}")
        if args.no_spikes:
            return

        print(f"\nspikes: {args.spikes} spikes in 50 blocks; close = final sort/attributes (no CSV)")
        print(f"{'path':10s} {'ranks':>5s} {'sort':>8s} {'blocks s':>9s} {'close s':>8s}")
        for path in ("serial", "parallel"):
            for ranks in (1, 2):
                r = launch("spikes", path, ranks, tmp / f"spk_{path}{ranks}.h5", args)
                if r is None:
                    continue
                for sort in ("by_time", "by_id"):
                    print(f"{path:10s} {ranks:5d} {sort:>8s} {r[sort]['blocks']:9.3f} {r[sort]['close']:8.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
