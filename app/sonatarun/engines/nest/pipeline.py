"""Each batch's edges prepared while NEST connects the batch before it: the build's second core.

Connecting a batch takes two steps: preparing its edges (NEST node ids of both ends, checked
delays, final weights: :func:`build.connection_edges`; the cache order:
:class:`locality.OrderPlan`) and ``nest.Connect``. The preparation is numpy and one ctypes
call, which run outside Python's lock, so one worker thread prepares batch k+1 while the main
thread connects batch k. PyNEST's array Connect keeps the lock while NEST connects (NEST
3.10), so :func:`build.connect` hands a batch to NEST in slices, and the worker takes its
next step between two slices. NEST is called from the main thread only (PyNEST is not
thread-safe); the worker runs numpy and ctypes, nothing else. The first batch has nothing to
overlap with: the idle worker shares its ordering instead (:func:`locality.reorder`).

What NEST gets is what the serial loop gave it: the same batches in the same order, each
in the order :func:`locality.cache_order` would choose (an overlapping group of one model
is checked as one before the first of its batches connects). A batch's copies go as soon
as NEST has them, so at most the batch being connected and the next one are held besides
the edges whose ranges the cache order must know up front. An error of the worker (an
``EngineError`` of ``connection_edges``) is raised on the main thread, unchanged; the edges
of a part's first batches, up to the last whose ranges the order must know (in most
networks every batch: one synapse model), are made before that part's first batch connects
(for the first part on both threads) and the first bad batch among them is the one
reported. A bad batch after those is reported once the batches before it are connected
(the serial loop checked every batch before connecting any).
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from sonatarun.engines.base import ConnectionBatch
from sonatarun.engines.nest import build
from sonatarun.engines.nest.locality import Edges, OrderPlan

# connect(batch, edges, reordered): hands one batch to NEST on the calling thread
Connect = Callable[[ConnectionBatch, Edges, bool], None]


@dataclass
class Part:
    """Batches judged together for the cache order (one engine call), connected in this order.
    ``file_order``: keep every batch's file order (reports whose rows follow NEST's order)."""

    batches: list[ConnectionBatch]
    file_order: bool = False


@dataclass
class _Prepared:
    part: Part
    plan: OrderPlan
    edges: list[Edges | None] = field(default_factory=list)  # batches prepared ahead (ranges), else None


def connect_batches(parts: list[Part], gid_map: build.GidMap, dt: float, connect: Connect) -> None:
    """``connect(batch, edges, reordered)`` on this thread for every batch of ``parts`` in order,
    each batch's edges prepared on a worker thread while the batch before it connects."""
    states = [_Prepared(p, OrderPlan([build.synapse_model_name(b) for b in p.batches], dt, file_order=p.file_order),
                        [None] * len(p.batches)) for p in parts]
    steps = [(s, i) for s in states for i in range(len(s.part.batches))]
    if not steps:
        return

    def prepare(s: _Prepared, i: int, helper: ThreadPoolExecutor | None = None) -> tuple[Edges, bool]:
        if i == 0:  # the ranges the order must know before the part's first batch connects
            _edges_ahead(s, s.plan.shared[-1] + 1 if s.plan.shared else 0, gid_map, dt, helper)
            s.plan.judge(s.edges)
        if s.edges[i] is None:
            s.edges[i] = build.connection_edges(s.part.batches[i], gid_map, dt)
        ordered = s.plan.order(i, s.edges, helper)
        edges, s.edges[i] = s.edges[i], None
        return (ordered, True) if ordered is not None else (edges, False)  # type: ignore[return-value]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sonatarun-edges") as worker:
        # nothing to overlap the first batch with: the idle worker shares its ordering instead
        ready: tuple[Edges, bool] | None = prepare(*steps[0], helper=worker)
        for n, (s, i) in enumerate(steps):
            upcoming: Future | None = worker.submit(prepare, *steps[n + 1]) if n + 1 < len(steps) else None
            edges, reordered = ready  # type: ignore[misc]
            ready = None
            connect(s.part.batches[i], edges, reordered)
            del edges  # NEST has them: this batch's copy goes before the next one is taken
            if upcoming is not None:
                ready = upcoming.result()  # the worker's error, if any, is raised here, on this thread
                upcoming = None
    _return_freed_memory()


def _return_freed_memory() -> None:
    """Give the worker's freed copies back to the system. glibc keeps memory freed on the worker
    in that thread's malloc arena, where NEST's later allocations (main thread) cannot reuse it:
    without this the 100k-cell benchmark peaked 113 MB higher than the serial build (the same
    peak with MALLOC_ARENA_MAX=1). ``malloc_trim`` returns free pages of every arena; elsewhere
    than glibc there is no such function and nothing to do."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


def _edges_ahead(s: _Prepared, n: int, gid_map: build.GidMap, dt: float, helper: ThreadPoolExecutor | None) -> None:
    """Edges of the part's first n batches; with an idle ``helper`` the later ones (about half
    the edges) are made there. Each thread stops at its first bad batch, so every batch before
    the earlier of the two is good: that one's error is raised, as the serial loop raised it."""
    batches = s.part.batches[:n]

    def make(ks: range) -> tuple[int, Exception] | None:
        for k in ks:
            try:
                s.edges[k] = build.connection_edges(batches[k], gid_map, dt)
            except Exception as exc:  # noqa: BLE001 - re-raised below, in batch order
                return k, exc
        return None

    cum = np.cumsum([len(b) for b in batches])
    split = int(np.searchsorted(cum, cum[-1] / 2)) + 1 if n > 1 and helper is not None else n
    if split >= n:
        failed = [make(range(n))]
    else:
        later = helper.submit(make, range(split, n))  # type: ignore[union-attr]
        first = make(range(split))
        failed = [first, later.result()]
    errors = sorted((f for f in failed if f is not None), key=lambda f: f[0])
    if errors:
        raise errors[0][1]
