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

Streamed populations (:class:`~sonatarun.engines.base.EdgeChunk`, one part each) are read by
the same worker: the step that reaches a chunk reads its columns (h5py leaves Python's lock
during the reads), makes its batches and prepares the first one, all while NEST connects the
batch before it; so the build no longer waits for every edge to be read before the first
connect. A chunk's errors (CircuitError of its read) are raised like the worker's others.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from sonatarun.engines.base import ConnectionBatch, EdgeChunk
from sonatarun.engines.nest import build
from sonatarun.engines.nest.locality import Edges, OrderPlan

# connect(batch, edges, reordered): hands one batch to NEST on the calling thread
Connect = Callable[[ConnectionBatch, Edges, bool], None]


@dataclass
class Part:
    """Batches judged together for the cache order (one engine call), connected in this order.
    ``file_order``: keep every batch's file order (reports whose rows follow NEST's order).
    ``chunk``: the part's batches are an EdgeChunk's, read when the pipeline reaches it (on the
    worker, while NEST connects the part before), and judged on their own (the chunk shares no
    (source, target) pair with any other batch)."""

    batches: list[ConnectionBatch]
    file_order: bool = False
    chunk: EdgeChunk | None = None

    def load(self) -> list[ConnectionBatch]:
        return self.chunk.load() if self.chunk is not None else self.batches


@dataclass
class _Prepared:
    part: Part
    plan: OrderPlan
    edges: list[Edges | None] = field(default_factory=list)  # batches prepared ahead (ranges), else None


# Steps the worker may hold ready ahead of NEST: two, so that while NEST connects a chunk's large
# first batch the worker prepares its small second one and goes on to read the next chunk.
AHEAD = 2
# Python's thread switch interval while the worker runs beside NEST. The worker needs the lock
# back after each read or numpy call (dozens per chunk); waiting the default 5 ms before asking
# for it each time left NEST without edges for up to a fifth of the build.
SWITCH_INTERVAL = 2e-4


def connect_batches(parts: list[Part], gid_map: build.GidMap, dt: float, connect: Connect) -> None:
    """``connect(batch, edges, reordered)`` on this thread for every batch of ``parts`` in order,
    the batches after the first prepared (and chunks read) on a worker thread, up to ``AHEAD``
    of them ready while NEST connects."""
    share: list[ThreadPoolExecutor | None] = [None]  # an idle thread the step being made may use
    steps = _prepared(parts, gid_map, dt, share)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sonatarun-edges") as helper:
        # the first step has nothing to overlap with: made here, the idle helper sharing its ordering
        share[0] = helper
        first = next(steps, None)
        share[0] = None  # the later steps run on the worker, which has no idle thread beside it
    if first is None:
        return
    ahead: queue.Queue = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Queue an item unless the main thread has stopped listening (its own error)."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for step in steps:
                if not offer(step):
                    return
            offer(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread, in order
            offer(exc)

    worker = threading.Thread(target=produce, name="sonatarun-edges", daemon=True)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    worker.start()
    try:
        ready: tuple[ConnectionBatch, Edges, bool] | BaseException | None = first
        while ready is not None:
            if isinstance(ready, BaseException):
                raise ready  # the worker's error, raised on this thread once the batches before it connected
            batch, edges, reordered = ready
            ready = None
            connect(batch, edges, reordered)
            del edges  # NEST has them: this batch's copy goes before the next one is taken
            ready = ahead.get()
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(switch)
    _return_freed_memory()


def _prepared(parts: list[Part], gid_map: build.GidMap, dt: float, share: list[ThreadPoolExecutor | None]):
    """Every batch of ``parts`` in order, as (batch, edges as NEST gets them, reordered), made when
    asked for (``next``: the first on the main thread, the others on the worker). ``share[0]``: an
    idle thread the step being made may hand half of its ordering to, or None."""
    for part in parts:
        batches = part.load()
        if not batches:
            continue
        s = _Prepared(Part(batches, part.file_order),
                      OrderPlan([build.synapse_model_name(b) for b in batches], dt, file_order=part.file_order),
                      [None] * len(batches))
        # the ranges the order must know before the part's first batch connects
        _edges_ahead(s, s.plan.shared[-1] + 1 if s.plan.shared else 0, gid_map, dt, share[0])
        s.plan.judge(s.edges)
        for i, batch in enumerate(batches):
            if s.edges[i] is None:
                s.edges[i] = build.connection_edges(batch, gid_map, dt)
            ordered = s.plan.order(i, s.edges, share[0])
            edges, s.edges[i] = s.edges[i], None
            yield (batch, ordered, True) if ordered is not None else (batch, edges, False)
            del edges, ordered


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
