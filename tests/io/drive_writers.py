"""Drive the spike and report writers with deterministic data, as the simulation loop would.

Run directly or under mpiexec (any rank count): cells are dealt round-robin by node id,
each rank passes only its own cells' data, blocks of 10 ms over [0, 100) ms. The files
must come out identical whatever the rank count and I/O path.

    python drive_writers.py OUT [--sort by_id] [--sleep S] [--state-dir D] [--resume]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from sonatarun.io.report_writer import CompartmentReportWriter
from sonatarun.io.spike_writer import SpikeWriter
from sonatarun.mpi import world

TSTART, TSTOP, DT, BLOCK = 0.0, 100.0, 0.1, 10.0
POPS = {"cortex": 23, "thalamus": 10, "silent": 4}


def all_spikes(pop: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's spikes of one population (same on every rank), with exact time ties."""
    if pop == "silent":
        return np.zeros(0, np.uint64), np.zeros(0)
    rng = np.random.default_rng(7 + n)
    k = 40 * n
    ids = rng.integers(0, n, k).astype(np.uint64)
    ts = np.round(rng.uniform(TSTART, TSTOP, k), 1)  # on the dt grid: many ties
    return ids, ts


def cell_counts(gid: int) -> int:
    return 1 + gid % 4


def report_values(rows: np.ndarray, gid: int, count: int) -> np.ndarray:
    t = rows[:, None].astype(np.float64)
    col = np.arange(count)[None, :]
    return (-65.0 + 10 * np.sin(0.01 * t * (gid + 1) + col) + 0.001 * gid).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--sort", default="by_time")
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds of 'simulation' per block")
    ap.add_argument("--state-dir", type=Path, help="write writer states after each block (checkpoint)")
    ap.add_argument("--resume", action="store_true", help="resume from the state in --state-dir")
    ap.add_argument("--elements-scale", type=int, default=1, help="multiply columns per cell")
    ap.add_argument("--max-chunk-bytes", type=int, default=64 << 20,
                    help="writer memory bound: small values force several slices per block")
    ap.add_argument("--placement", choices=["slices", "units", "compiled"],
                    help="force how columns are placed (slices/units: numpy's; compiled: the C run copy)")
    ap.add_argument("--group-size", type=int, help="ranks sharing memory (emulates several nodes)")
    ap.add_argument("--chunk-bytes", type=int, help="assemble and write rows this much at a time")
    args = ap.parse_args()
    comm = world()
    rank, size = comm.rank, comm.size
    if args.chunk_bytes is not None:
        import sonatarun.io.report_writer as rw

        rw.CHUNK_BYTES = rw.PARALLEL_CHUNK_BYTES = args.chunk_bytes
    if args.placement == "compiled":
        from sonatarun.io import run_copy

        if run_copy.load() is None:
            raise SystemExit("--placement compiled: the C run copy could not be built here")
    elif args.placement is not None:
        import sonatarun.io.placement as pl

        os.environ["SONATARUN_PLACEMENT"] = "numpy"
        pl.MAX_SLICE_RUNS, pl.SLICE_MIN_COLS = (1 << 62, 0) if args.placement == "slices" else (0, 1 << 62)
    out = args.out
    spikes = SpikeWriter(out / "spikes.h5", comm, list(POPS), args.sort, csv_path=out / "spikes.csv")

    # report on cortex cells whose id % 3 != 1, given to the writer in a scrambled local order
    mine = [g for g in range(POPS["cortex"]) if g % size == rank and g % 3 != 1][::-1]
    counts = np.array([cell_counts(g) * args.elements_scale for g in mine], dtype=np.int64)
    eids = np.concatenate([np.arange(c) for c in counts]) if len(mine) else np.zeros(0)
    epos = np.concatenate([(np.arange(c) + 0.5) / c for c in counts]) if len(mine) else np.zeros(0)
    report = CompartmentReportWriter(out / "v_report.h5", comm, "cortex", np.array(mine, dtype=np.uint64),
                                     counts, eids, epos, TSTART, TSTOP, DT, "v", "mV",
                                     max_chunk_bytes=args.max_chunk_bytes, group_size=args.group_size)

    n_blocks = int(round((TSTOP - TSTART) / BLOCK))
    first = 0
    if args.resume:
        state = json.loads((args.state_dir / "state.json").read_text())
        spikes.truncate(state["spikes"])
        report.truncate(state["report"])
        first = state["block"]
    rows_per_block = int(round(BLOCK / DT))
    for b in range(first, n_blocks):
        t0, t1 = TSTART + b * BLOCK, TSTART + (b + 1) * BLOCK
        if args.sleep:
            time.sleep(args.sleep)
        for pop, n in POPS.items():
            ids, ts = all_spikes(pop, n)
            sel = (ids % size == rank) & (ts >= t0) & (ts < t1)
            spikes.append(pop, ids[sel], ts[sel])
        rows = np.arange(b * rows_per_block, (b + 1) * rows_per_block)
        block = [report_values(rows, g, c) for g, c in zip(mine, counts)]
        report.write_block(np.concatenate(block, axis=1) if block else np.zeros((len(rows), 0), np.float32))
        spikes.flush()
        report.flush()
        if args.state_dir is not None and rank == 0:
            args.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = args.state_dir / "state.json.tmp"
            tmp.write_text(json.dumps({"block": b + 1, "spikes": spikes.state(), "report": report.state()}))
            os.replace(tmp, args.state_dir / "state.json")
        if args.state_dir is not None:
            print(f"block {b + 1} done", flush=True)
    spikes.close()
    report.close()
    by_rank = comm.gather(report.bytes_written)
    if rank == 0:
        print(f"report bytes written by rank: {json.dumps(by_rank)}", flush=True)
        print("done", flush=True)


if __name__ == "__main__":
    main()
