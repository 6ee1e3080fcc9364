"""An edge order that NEST connects several times faster, used only where it cannot change a spike.

``nest.Connect`` with arrays handles one edge at a time, and for each it looks up the
source and the target node (``connection_required``, ``get_node_by_node_id``): two reads
of node objects scattered over hundreds of MB at 100k neurons, i.e. two cache misses per
edge when either end is in random order, as in every SONATA file (sorted by target, sources
random). Connecting the edges tile by tile of targets (a few thousand neurons, which stay in
cache), sources ascending inside a tile, makes both lookups cheap: 10M edges onto 100k
iaf_psc_alpha neurons connect in ~2 s instead of ~7 s here.

Why that order does not change the simulation: NEST sorts each thread's connections by
source before the run (an unstable sort, so the order of one source's connections depends
on the order they were created in) and delivers a spike by walking its source's connections
in that order, each adding its weight to its target's input slot for arrival time
spike time + delay. Only connections sharing source, target and arrival step add into the
same slot within one spike's delivery, and only there does their order change a
floating-point sum (additions from different spikes follow the spike order, which
connections do not decide). So the order is used only when no two edges of one synapse
model (across all of the model's batches) join the same source and target with delays
closer than two steps, and only for synapse models whose delivery draws no random numbers
(``bernoulli_synapse`` draws one per connection in delivery order) and whose connections
keep no shared state; otherwise the file order is kept, as BMTK connects it. Reports whose
rows follow NEST's connection order (weight_recorder) connect their models unchanged
(those batches never come here).

The order is a two-pass counting sort written in C that also writes the reordered columns
(compiled once, :mod:`sonatarun.util.native`); the second pass places disjoint target tiles,
so two threads can share it. Where it cannot be compiled the file order is kept (the same
spikes, NEST's speed of before).
"""
from __future__ import annotations

import ctypes
import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from sonatarun.util.native import load_function

log = logging.getLogger(__name__)

# Synapse models whose delivery is a function of the connection's own state and the target's
# history only (no random draws, no state shared between connections). `_hpc` and `_lbl`
# variants store the same state differently.
_BASES = ("static_synapse", "static_synapse_hom_w", "stdp_synapse", "stdp_synapse_hom", "stdp_pl_synapse_hom",
          "stdp_triplet_synapse", "stdp_nn_symm_synapse", "stdp_nn_pre_centered_synapse",
          "stdp_nn_restr_synapse", "tsodyks_synapse", "tsodyks_synapse_hom", "tsodyks2_synapse",
          "vogels_sprekeler_synapse")
ORDER_FREE_SYNAPSES = frozenset(b + s for b in _BASES for s in ("", "_hpc", "_lbl"))

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef struct { int64_t t; double d; } td_t;

static int cmp_td(const void *a, const void *b)
{
    const td_t *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (x->d > y->d) - (x->d < y->d);
}

/* 1 when two of the m edges (one source) share a target with delays closer than min_gap. */
static int64_t repeated(const int64_t *t, const double *d, int64_t m, double min_gap, td_t **buf, int64_t *cap)
{
    if (m == 2) return t[0] == t[1] && fabs(d[0] - d[1]) < min_gap;
    if (m > *cap) {
        td_t *nb = realloc(*buf, (size_t)m * sizeof(td_t));
        if (!nb) return -1;
        *buf = nb; *cap = m;
    }
    for (int64_t q = 0; q < m; q++) { (*buf)[q].t = t[q]; (*buf)[q].d = d[q]; }
    qsort(*buf, (size_t)m, sizeof(td_t), cmp_td);
    for (int64_t q = 1; q < m; q++)
        if ((*buf)[q].t == (*buf)[q - 1].t && fabs((*buf)[q].d - (*buf)[q - 1].d) < min_gap) return 1;
    return 0;
}

/* First pass: the edges' indices grouped by target tile, file order inside a tile (a
   counting sort, sequential for target-sorted files): tile t's edges are
   work[bounds[t] .. bounds[t + 1]). bounds and next: n_tiles + 1 entries each. */
void locality_tiles(const int64_t *tgt, int64_t n, int64_t tgt_lo, int64_t tile, int64_t n_tiles,
                    int64_t *bounds, int64_t *next, int64_t *work)
{
    int64_t i, k;
    memset(bounds, 0, (size_t)(n_tiles + 1) * sizeof(int64_t));
    for (i = 0; i < n; i++) bounds[(tgt[i] - tgt_lo) / tile + 1]++;
    for (k = 1; k <= n_tiles; k++) bounds[k] += bounds[k - 1];
    memcpy(next, bounds, (size_t)(n_tiles + 1) * sizeof(int64_t));
    for (i = 0; i < n; i++) work[next[(tgt[i] - tgt_lo) / tile]++] = i;
}

/* Second pass, tiles t_begin .. t_end - 1: a counting sort by source inside each tile (a
   tile's edges fit in cache) writes the edges, stably ordered by (target tile, source), into
   their final places in os/ot/od/ow, so disjoint tile ranges can be placed concurrently.
   Returns 1 when two edges with the same source and target have delays closer than min_gap
   (their order can change a sum; the outputs are then incomplete), 0 otherwise, -1 when out
   of memory. counts: src_span + 1 scratch entries of the caller's thread. */
int64_t locality_place(const int64_t *src, const int64_t *tgt, const double *delay, const double *weight,
                       const int64_t *bounds, const int64_t *work, int64_t t_begin, int64_t t_end,
                       int64_t src_lo, int64_t src_span, double min_gap,
                       int64_t *os, int64_t *ot, double *od, double *ow, int64_t *counts)
{
    int64_t i, k, j;
    td_t *buf = NULL;
    int64_t cap = 0, status = 0;
    for (int64_t t = t_begin; t < t_end && !status; t++) {
        int64_t a = bounds[t], b = bounds[t + 1];
        if (b == a) continue;
        memset(counts, 0, (size_t)(src_span + 1) * sizeof(int64_t));
        for (k = a; k < b; k++) counts[src[work[k]] - src_lo + 1]++;
        for (k = 1; k <= src_span; k++) counts[k] += counts[k - 1];
        for (k = a; k < b; k++) {
            i = work[k];
            int64_t p = a + counts[src[i] - src_lo]++;
            os[p] = src[i]; ot[p] = tgt[i]; od[p] = delay[i]; ow[p] = weight[i];
        }
        for (k = a; k < b && !status; k = j) {  /* runs of one source in this tile */
            for (j = k + 1; j < b && os[j] == os[k]; j++) ;
            if (j - k > 1) status = repeated(ot + k, od + k, j - k, min_gap, &buf, &cap);
        }
    }
    free(buf);
    return status;
}
"""

def load() -> tuple[Any, Any] | None:
    """The compiled ``(locality_tiles, locality_place)``, or None where they cannot be built (logged once)."""
    i64, f64, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
    what = "NEST connection order (edges go to NEST in file order)"
    tiles = load_function("sonatarun_locality", SOURCE, "locality_tiles", [ptr, i64, i64, i64, i64, ptr, ptr, ptr],
                          None, what=what)
    place = load_function("sonatarun_locality", SOURCE, "locality_place",
                          [ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64, f64, ptr, ptr, ptr, ptr, ptr], i64, what=what)
    return (tiles, place) if tiles is not None and place is not None else None


@dataclass
class Edges:
    """One batch's edges as NEST will get them: node ids of both ends, delays (ms), weights."""

    synapse_model: str
    sources: np.ndarray
    targets: np.ndarray
    delays: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.sources)

    def span(self) -> tuple[int, int, int, int]:
        """(first source, last source, first target, last target), or an empty span."""
        if not len(self):
            return (0, -1, 0, -1)
        return int(self.sources.min()), int(self.sources.max()), int(self.targets.min()), int(self.targets.max())


def tile_size(n_edges: int, src_span: int, tgt_span: int) -> int:
    """Targets per tile: about two sweeps' worth of sources per tile, so a tile's targets
    stay in cache while its sources are read in ascending order."""
    env = os.environ.get("SONATARUN_CONNECT_TILE")
    if env:
        return max(1, int(env))
    return max(64, int(2 * src_span * tgt_span / max(n_edges, 1)))


def reorder(e: Edges, dt: float, helper: Executor | None = None) -> Edges | None:
    """The batch's edges in cache order, or None when a repeated (source, target) pair of
    near-equal delays makes the order matter (or nothing can be compiled). With an idle
    ``helper`` thread the tiles are placed half there, half here: the same bytes, somewhat
    sooner, as both threads share the memory bandwidth (the 100k benchmark's 7.2M-edge batch,
    4 fresh processes each: 0.26-0.58 s against 0.32-0.47 s alone; in the run 0.31-0.42 s
    against 0.44-0.47 s)."""
    fns = load()
    n = len(e)
    if fns is None or n < 2:
        return None
    tiles, place = fns
    src = np.ascontiguousarray(e.sources, dtype=np.int64)
    tgt = np.ascontiguousarray(e.targets, dtype=np.int64)
    dly = np.ascontiguousarray(e.delays, dtype=np.float64)
    wgt = np.ascontiguousarray(e.weights, dtype=np.float64)
    s_lo, s_hi, t_lo, t_hi = e.span()
    src_span, tgt_span = s_hi - s_lo + 1, t_hi - t_lo + 1
    tile = tile_size(n, src_span, tgt_span)
    n_tiles = (tgt_span - 1) // tile + 1
    out = Edges(e.synapse_model, np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n), np.empty(n))
    bounds, work = np.empty(n_tiles + 1, np.int64), np.empty(n, np.int64)
    tiles(tgt.ctypes.data, n, t_lo, tile, n_tiles, bounds.ctypes.data, np.empty(n_tiles + 1, np.int64).ctypes.data,
          work.ctypes.data)

    def place_tiles(t_begin: int, t_end: int) -> int:
        counts = np.empty(src_span + 1, np.int64)
        return place(src.ctypes.data, tgt.ctypes.data, dly.ctypes.data, wgt.ctypes.data, bounds.ctypes.data,
                     work.ctypes.data, t_begin, t_end, s_lo, src_span, 2.0 * dt, out.sources.ctypes.data,
                     out.targets.ctypes.data, out.delays.ctypes.data, out.weights.ctypes.data, counts.ctypes.data)

    if helper is None or n_tiles < 2:
        status = place_tiles(0, n_tiles)
    else:
        mid = min(max(int(np.searchsorted(bounds, n // 2)), 1), n_tiles - 1)  # half the edges each
        upper = helper.submit(place_tiles, mid, n_tiles)
        try:
            status = place_tiles(0, mid)
        finally:
            status_upper = upper.result()  # never leave the helper writing into freed arrays
        status = status or status_upper
    if status != 0:
        log.debug("%s: file order kept (%s)", e.synapse_model,
                  "multapses with near-equal delays" if status == 1 else "out of memory")
        return None
    return out


def _may_share_pairs(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1] and a[2] <= b[3] and b[2] <= a[3]


def file_order_forced() -> bool:
    """``SONATARUN_CONNECT_ORDER=file``: every batch keeps its file order."""
    return os.environ.get("SONATARUN_CONNECT_ORDER", "").lower() == "file"


class OrderPlan:
    """:func:`cache_order`'s judgement of one call's batches, made one batch at a time, so each
    batch can be ordered just before it connects (the engine prepares the next batch while NEST
    connects the current one).

    Batches of one synapse model are judged together (NEST sorts a model's connections all at
    once): those whose source and target ranges both overlap may repeat each other's pairs and
    are checked as one, when the first of them is ordered, i.e. before any of them connects.
    Telling which ranges overlap needs the edges of every batch whose order-free model has other
    batches in the call (``shared``): :meth:`judge` takes them before the first :meth:`order`.
    Not thread-safe: calls must follow each other (the engine's pipeline hands them on in order).
    """

    def __init__(self, models: list[str], dt: float, *, file_order: bool = False) -> None:
        self.dt = dt
        keep = file_order or file_order_forced()
        self._free = [not keep and m in ORDER_FREE_SYNAPSES for m in models]
        self._by_model: dict[str, list[int]] = {}
        for k, m in enumerate(models):
            if self._free[k]:
                self._by_model.setdefault(m, []).append(k)
        self.shared = sorted(k for ks in self._by_model.values() if len(ks) > 1 for k in ks)
        self._group: dict[int, tuple[int, ...]] = {}  # batch -> the overlapping batches checked with it
        self._passed: dict[tuple[int, ...], bool] = {}

    def judge(self, edges: list[Edges | None]) -> None:
        """Group the overlapping batches of each model; ``edges[k]`` is needed for k in ``shared``."""
        for members in self._by_model.values():
            if len(members) < 2:
                continue
            spans = {k: edges[k].span() for k in members}  # type: ignore[union-attr]
            group = tuple(sorted({k for k in members for m in members
                                  if m != k and _may_share_pairs(spans[k], spans[m])}))
            for k in group:
                self._group[k] = group

    def order(self, k: int, edges: list[Edges | None], helper: Executor | None = None) -> Edges | None:
        """Batch k (``edges[k]``) in cache order, or None where its file order must stay. The first
        batch of an overlapping group checks the group as one (every member's edges still in ``edges``).
        ``helper``: an idle thread to share the ordering with (:func:`reorder`)."""
        if not self._free[k]:
            return None
        group = self._group.get(k)
        if group is not None:
            if group not in self._passed:
                first = edges[group[0]]
                joined = Edges(first.synapse_model, *(np.concatenate([getattr(edges[j], f) for j in group])  # type: ignore[union-attr]
                                                      for f in ("sources", "targets", "delays", "weights")))
                self._passed[group] = reorder(joined, self.dt, helper) is not None  # a pair repeated across batches?
            if not self._passed[group]:
                return None
        return reorder(edges[k], self.dt, helper)  # type: ignore[arg-type]


def cache_order(edges: list[Edges], dt: float) -> list[Edges | None]:
    """Each batch in cache order, or None where its file order must stay (all batches judged at
    once, as :class:`OrderPlan` does batch by batch). ``SONATARUN_CONNECT_ORDER=file`` keeps the
    file order everywhere."""
    every: list[Edges | None] = list(edges)
    plan = OrderPlan([e.synapse_model for e in edges], dt)
    plan.judge(every)
    return [plan.order(k, every) for k in range(len(every))]
