"""Close-time distributed sort of a spikes file (``by_id``, or ``by_time`` after out-of-order blocks).

A sample sort, chosen because it needs no rank to hold more than ~1/P of the spikes and
costs one read, one all-to-all and one write of the data, whatever the number of ranks:

1. every rank reads a contiguous 1/P slice of each population from the unsorted file;
2. ranks agree on P-1 splitters from an all-gathered sample of the primary key (node id
   for ``by_id``, time for ``by_time``), so equal keys always land on the same rank;
3. records move to the rank owning their key range (all-to-all) and are sorted locally by
   (primary, secondary) key: concatenated in rank order they are globally sorted;
4. each rank writes its rows at its prefix offset into a new file (parallel: one collective
   write; serial path: ranks take turns opening the file), which then atomically replaces
   the original (rename), so a kill during the sort leaves the unsorted file intact.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sonatarun.io import exchange
from sonatarun.io.durable import replace_durably
from sonatarun.io.h5path import PARALLEL, open_h5
from sonatarun.io.slab import create_fixed, write_rows
from sonatarun.mpi import Comm

SAMPLES_PER_RANK = 64


def _keys(sort_order: str) -> tuple[str, str]:
    return ("node_id", "t") if sort_order == "by_id" else ("t", "node_id")


def _read_slice(f, pop: str, n: int, rank: int, size: int) -> np.ndarray:
    from sonatarun.io.spike_writer import RECORD

    a, b = (n * rank) // size, (n * (rank + 1)) // size
    rec = np.empty(b - a, dtype=RECORD)
    if b > a:
        g = f[f"spikes/{pop}"]
        rec["node_id"] = g["node_ids"][a:b]
        rec["t"] = g["timestamps"][a:b]
    return rec


def sample_sort(comm: Comm, rec: np.ndarray, sort_order: str) -> np.ndarray:
    """Globally sort records spread over ranks; returns this rank's (contiguous) share."""
    primary, secondary = _keys(sort_order)
    size = comm.size
    if comm.mpi is None or size == 1:
        return rec[np.lexsort((rec[secondary], rec[primary]))]
    from sonatarun.io.spike_writer import RECORD

    keys = np.sort(rec[primary].astype(np.float64))
    pick = np.linspace(0, len(keys) - 1, min(len(keys), SAMPLES_PER_RANK)).astype(np.int64) if len(keys) else []
    samples = np.sort(np.concatenate(exchange.allgather_array(comm, keys[pick] if len(keys) else keys)))
    if len(samples):
        splitters = samples[(np.arange(1, size) * len(samples)) // size]
    else:
        splitters = np.zeros(size - 1)
    dest = np.searchsorted(splitters, rec[primary].astype(np.float64), side="right")
    order = np.argsort(dest, kind="stable")
    bounds = np.searchsorted(dest[order], np.arange(size + 1))
    parts = [rec[order[bounds[d]:bounds[d + 1]]] for d in range(size)]
    mine = np.concatenate(exchange.alltoallv(comm, parts, RECORD))
    return mine[np.lexsort((mine[secondary], mine[primary]))]


def rewrite_sorted(h5_path: Path, comm: Comm, io_path: str, counts: dict[str, int], sort_order: str) -> None:
    """Replace ``h5_path`` by a copy whose populations are sorted (collective)."""
    from sonatarun.io.spike_writer import set_sorting_attrs, write_root_attrs

    tmp = h5_path.with_name(h5_path.name + ".sorting.tmp")
    pops = sorted(counts)
    parallel = io_path == PARALLEL
    rank, size = comm.rank, comm.size

    def skeleton(f) -> None:
        write_root_attrs(f)
        for p in pops:
            g = f.create_group(f"spikes/{p}")
            ts = create_fixed(g, "timestamps", (counts[p],), np.float64)
            ts.attrs["units"] = "ms"
            create_fixed(g, "node_ids", (counts[p],), np.uint64)
            set_sorting_attrs(g, sort_order, counts[p])

    if parallel:
        src = open_h5(h5_path, "r", comm, io_path)
        dst = open_h5(tmp, "w", comm, io_path)
        skeleton(dst)
    else:
        if rank == 0:
            with open_h5(tmp, "w", comm, io_path) as f:
                skeleton(f)
        comm.barrier()
        src = open_h5(h5_path, "r", comm, io_path)
        dst = None
    try:
        for p in pops:
            mine = sample_sort(comm, _read_slice(src, p, counts[p], rank, size), sort_order)
            offset, total = exchange.offsets(comm, len(mine))
            assert total == counts[p]
            if parallel:
                write_rows(dst[f"spikes/{p}/timestamps"], offset, mine["t"], True)
                write_rows(dst[f"spikes/{p}/node_ids"], offset, mine["node_id"], True)
                continue
            for turn in range(size):  # serial HDF5: one writer at a time
                if turn == rank and len(mine):
                    with open_h5(tmp, "r+", comm, io_path) as f:
                        write_rows(f[f"spikes/{p}/timestamps"], offset, mine["t"], False)
                        write_rows(f[f"spikes/{p}/node_ids"], offset, mine["node_id"], False)
                comm.barrier()
    finally:
        src.close()
        if dst is not None:
            dst.close()
    comm.barrier()
    if rank == 0:
        replace_durably(tmp, h5_path)
    comm.barrier()
