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

The order is a two-pass counting sort written in C (compiled once, :mod:`sonatarun.util.native`);
where it cannot be compiled the file order is kept (the same spikes, NEST's speed of before).
"""
from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass

import numpy as np

from sonatarun.util.native import NativeBuildError, compile_library

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

/* perm <- the edges 0..n-1 stably ordered by (target tile, source): a counting sort by tile
   (sequential for target-sorted files), then one by source inside each tile (a tile's
   edges fit in cache). Returns 1 when two edges with the same source and target have delays
   closer than min_gap (their order can change a sum), 0 otherwise, -1 when out of memory.
   work: n scratch entries; counts: max(src_span, n_tiles) + 1 scratch entries. */
int64_t locality_order(const int64_t *src, const int64_t *tgt, const double *delay, int64_t n,
                       int64_t src_lo, int64_t src_span, int64_t tgt_lo, int64_t tile, int64_t n_tiles,
                       double min_gap, int64_t *perm, int64_t *work, int64_t *counts)
{
    int64_t i, k, j;
    int64_t *bounds = malloc((size_t)(n_tiles + 1) * sizeof(int64_t));
    if (!bounds) return -1;
    memset(counts, 0, (size_t)(n_tiles + 1) * sizeof(int64_t));
    for (i = 0; i < n; i++) counts[(tgt[i] - tgt_lo) / tile + 1]++;
    for (k = 1; k <= n_tiles; k++) counts[k] += counts[k - 1];
    memcpy(bounds, counts, (size_t)(n_tiles + 1) * sizeof(int64_t));
    for (i = 0; i < n; i++) work[counts[(tgt[i] - tgt_lo) / tile]++] = i;

    td_t *buf = NULL;
    int64_t cap = 0, status = 0;
    for (int64_t t = 0; t < n_tiles && !status; t++) {
        int64_t a = bounds[t], b = bounds[t + 1];
        if (b - a < 2) { if (b > a) perm[a] = work[a]; continue; }
        memset(counts, 0, (size_t)(src_span + 1) * sizeof(int64_t));
        for (k = a; k < b; k++) counts[src[work[k]] - src_lo + 1]++;
        for (k = 1; k <= src_span; k++) counts[k] += counts[k - 1];
        for (k = a; k < b; k++) { i = work[k]; perm[a + counts[src[i] - src_lo]++] = i; }

        /* multapses: inside each run of one source in this tile */
        for (k = a; k < b && !status; k = j) {
            int64_t e = perm[k], s = src[e];
            for (j = k + 1; j < b && src[perm[j]] == s; j++) ;
            int64_t m = j - k;
            if (m < 2) continue;
            if (m == 2) {
                int64_t f = perm[k + 1];
                if (tgt[e] == tgt[f] && fabs(delay[e] - delay[f]) < min_gap) status = 1;
                continue;
            }
            if (m > cap) {
                td_t *nb = realloc(buf, (size_t)m * sizeof(td_t));
                if (!nb) { status = -1; break; }
                buf = nb; cap = m;
            }
            for (int64_t q = 0; q < m; q++) { buf[q].t = tgt[perm[k + q]]; buf[q].d = delay[perm[k + q]]; }
            qsort(buf, (size_t)m, sizeof(td_t), cmp_td);
            for (int64_t q = 1; q < m; q++)
                if (buf[q].t == buf[q - 1].t && fabs(buf[q].d - buf[q - 1].d) < min_gap) { status = 1; break; }
        }
    }
    free(bounds);
    free(buf);
    return status;
}
"""

_state: dict = {}


def _load():
    """The compiled ``locality_order``, or None where it cannot be built (logged once)."""
    if "fn" not in _state:
        try:
            fn = ctypes.CDLL(str(compile_library("sonatarun_locality", SOURCE))).locality_order
            i64, f64, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
            fn.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, f64, ptr, ptr, ptr]
            fn.restype = i64
            _state["fn"] = fn
        except (NativeBuildError, OSError) as exc:
            log.info("NEST connects edges in file order (compiled ordering unavailable: %s)", exc)
            _state["fn"] = None
    return _state["fn"]


@dataclass
class Edges:
    """One batch's edges as NEST will see them: node ids of both ends and delays (ms)."""

    synapse_model: str
    sources: np.ndarray
    targets: np.ndarray
    delays: np.ndarray


def tile_size(n_edges: int, src_span: int, tgt_span: int) -> int:
    """Targets per tile: about two sweeps' worth of sources per tile, so a tile's targets
    stay in cache while its sources are read in ascending order."""
    env = os.environ.get("SONATARUN_CONNECT_TILE")
    if env:
        return max(1, int(env))
    return max(64, int(2 * src_span * tgt_span / max(n_edges, 1)))


def order_for_model(edges: list[Edges], dt: float) -> list[np.ndarray] | None:
    """Orders for the batches of one synapse model (positions into each batch), or None to keep
    the file order (a multapse whose order matters, or no compiled helper)."""
    fn = _load()
    n = sum(len(e.sources) for e in edges)
    if fn is None or n < 2:
        return None
    def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.ascontiguousarray(parts[0] if len(parts) == 1 else np.concatenate(parts), dtype=dtype)

    src = joined([e.sources for e in edges], np.int64)
    tgt = joined([e.targets for e in edges], np.int64)
    dly = joined([e.delays for e in edges], np.float64)
    src_lo, tgt_lo = int(src.min()), int(tgt.min())
    src_span, tgt_span = int(src.max()) - src_lo + 1, int(tgt.max()) - tgt_lo + 1
    tile = tile_size(n, src_span, tgt_span)
    n_tiles = (tgt_span - 1) // tile + 1
    perm = np.empty(n, np.int64)
    work = np.empty(n, np.int64)
    counts = np.empty(max(src_span, n_tiles) + 1, np.int64)
    status = fn(src.ctypes.data, tgt.ctypes.data, dly.ctypes.data, n, src_lo, src_span, tgt_lo, tile, n_tiles,
                2.0 * dt, perm.ctypes.data, work.ctypes.data, counts.ctypes.data)
    del work, src, tgt, dly
    if status != 0:
        log.debug("%s: file order kept (%s)", edges[0].synapse_model,
                  "multapses with equal delays" if status == 1 else "out of memory")
        return None
    if len(edges) == 1:
        return [perm]
    bounds = np.cumsum([len(e.sources) for e in edges])
    owner = np.searchsorted(bounds, perm, side="right")
    starts = bounds - [len(e.sources) for e in edges]
    return [perm[owner == b] - starts[b] for b in range(len(edges))]


def connection_orders(edges: list[Edges], dt: float) -> list[np.ndarray | None]:
    """For each batch, the order to connect its edges in (None: file order). Batches of one
    synapse model are judged together, since NEST sorts all of a model's connections at once.
    ``SONATARUN_CONNECT_ORDER=file`` keeps the file order everywhere."""
    if os.environ.get("SONATARUN_CONNECT_ORDER", "").lower() == "file":
        return [None] * len(edges)
    by_model: dict[str, list[int]] = {}
    for k, e in enumerate(edges):
        if e.synapse_model in ORDER_FREE_SYNAPSES:
            by_model.setdefault(e.synapse_model, []).append(k)
    out: list[np.ndarray | None] = [None] * len(edges)
    for members in by_model.values():
        orders = order_for_model([edges[k] for k in members], dt)
        if orders is not None:
            for k, order in zip(members, orders):
                out[k] = order
    return out
