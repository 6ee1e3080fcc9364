"""The cache-friendly connection order (engines/nest/locality.py): what it orders, when it
keeps the file order, and that NEST then simulates the same spikes."""
from __future__ import annotations

import numpy as np
import pytest

from sonatarun.engines.nest import locality
from sonatarun.engines.nest.locality import Edges, cache_order

from tests.conftest import need


@pytest.fixture(autouse=True)
def _compiled():
    need(locality.load() is not None, "a C compiler for the connection order")


def _random_edges(rng, n_src, n_tgt, per_target, model="static_synapse", multapses=False):
    tgt = np.repeat(np.arange(1, n_tgt + 1), per_target)
    if multapses:
        src = rng.integers(1, n_src + 1, size=len(tgt))
    else:
        src = np.concatenate([rng.choice(np.arange(1, n_src + 1), per_target, replace=False) for _ in range(n_tgt)])
    return Edges(model, src, tgt, np.round(rng.uniform(1.0, 3.0, size=len(tgt)), 1), rng.uniform(-1, 1, len(tgt)))


def _cut(e: Edges, rows) -> Edges:
    return Edges(e.synapse_model, e.sources[rows], e.targets[rows], e.delays[rows], e.weights[rows])


def test_order_is_by_target_tile_then_source_and_stable():
    rng = np.random.default_rng(3)
    e = _random_edges(rng, 3000, 2000, 40)
    (got,) = cache_order([e], 0.1)
    tile = locality.tile_size(len(e), 3000, 2000)
    assert 64 <= tile < 2000  # several tiles, so the test sees tile boundaries
    want = _cut(e, np.argsort(((e.targets - 1) // tile) * 3001 + e.sources, kind="stable"))
    for f in ("sources", "targets", "delays", "weights"):
        assert np.array_equal(getattr(got, f), getattr(want, f)), f


def test_multapses_whose_order_matters_keep_the_file_order():
    rng = np.random.default_rng(4)
    e = _random_edges(rng, 500, 300, 20)
    assert cache_order([e], 0.1)[0] is not None
    # one repeated (source, target) pair with a delay one step away: its sum order could matter
    src, tgt, d = e.sources.copy(), e.targets.copy(), e.delays.copy()
    src[101], tgt[101], d[101] = src[7], tgt[7], d[7] + 0.1
    assert cache_order([Edges("static_synapse", src, tgt, d, e.weights)], 0.1) == [None]
    # the same pair far apart in delay lands in other input slots: the order is free again
    d[101] = d[7] + 1.0
    assert cache_order([Edges("static_synapse", src, tgt, d, e.weights)], 0.1)[0] is not None
    # a pair repeated across two batches of one model is seen too
    a, b = _cut(e, slice(0, 3000)), _cut(e, slice(7, 9))
    assert cache_order([a, b], 0.1) == [None, None]
    # ... but not across synapse models (NEST delivers models one after the other)
    other = Edges("stdp_synapse", b.sources, b.targets, b.delays, b.weights)
    got = cache_order([a, other], 0.1)
    assert got[0] is not None and got[1] is not None and np.array_equal(np.sort(got[0].sources), np.sort(a.sources))


def test_batches_of_one_model_are_ordered_each_on_its_own():
    rng = np.random.default_rng(6)
    e = _random_edges(rng, 800, 600, 15)
    # overlapping ranges, no shared pair: checked together, ordered one by one
    a, b = _cut(e, slice(0, 4000)), _cut(e, slice(4000, None))
    assert locality._may_share_pairs(a.span(), b.span())
    got = cache_order([a, b], 0.1)
    assert all(g is not None and np.array_equal(g.sources, cache_order([x], 0.1)[0].sources)
               for g, x in zip(got, (a, b)))
    # disjoint source ranges (e.g. excitatory and inhibitory edge types): never compared
    low, high = e.sources <= 400, e.sources > 400
    c, d = _cut(e, low), _cut(e, high)
    assert not locality._may_share_pairs(c.span(), d.span())
    assert all(g is not None for g in cache_order([c, d], 0.1))


def test_models_that_draw_random_numbers_keep_the_file_order(monkeypatch):
    rng = np.random.default_rng(5)
    e = _random_edges(rng, 400, 200, 10, model="bernoulli_synapse")
    assert cache_order([e], 0.1) == [None]
    monkeypatch.setenv("SONATARUN_CONNECT_ORDER", "file")
    assert cache_order([_random_edges(rng, 400, 200, 10)], 0.1) == [None]


def test_nest_state_does_not_depend_on_the_order(nest_kernel_runner):
    """A random network without multapses simulated with its edges in file order, in the
    cache order and reversed: every spike and every membrane potential bit-identical (the
    argument of locality.py's docstring, checked). With repeated pairs of equal delay, which
    the order leaves alone, reversing the edges does change the potentials: the check has teeth."""
    rng = np.random.default_rng(7)
    n = 400
    for multapses in (False, True):
        e = _random_edges(rng, n, n, 60, multapses=multapses)
        e.weights = rng.uniform(20.0, 60.0, size=len(e)) * np.where(e.sources > 320, -4.0, 1.0)
        if multapses:  # one delay: every repeated pair adds into one input slot
            e.delays = np.full(len(e), 1.5)
        (ordered,) = cache_order([e], 0.1)
        variants = [_cut(e, np.arange(len(e))[::-1])]
        if multapses:
            assert ordered is None  # the engine keeps the file order
        else:
            assert ordered is not None and not np.array_equal(ordered.sources, e.sources)
            variants.append(ordered)
        base = nest_kernel_runner(n, e)
        assert len(base[0]) > 500
        for v in variants:
            same = all(np.array_equal(x, y) for x, y in zip(base, nest_kernel_runner(n, v)))
            assert same != multapses, "multapses" if multapses else "no multapses"


@pytest.fixture
def nest_kernel_runner():
    import subprocess
    import sys

    code = r'''
import sys, numpy as np, nest
nest.set_verbosity("M_ERROR"); nest.ResetKernel(); nest.resolution = 0.1
d = np.load(sys.argv[1]); n = int(d["n"])
cells = nest.Create("iaf_psc_alpha", n, {"I_e": 376.0 + 5.0 * np.arange(n) / n})
nest.Connect(d["src"], d["tgt"], "one_to_one", {"synapse_model": "static_synapse", "weight": d["w"], "delay": d["d"]})
rec = nest.Create("spike_recorder"); nest.Connect(cells, rec)
mm = nest.Create("multimeter", {"record_from": ["V_m"], "interval": 1.0}); nest.Connect(mm, cells)
nest.Simulate(300.0)
ev, vm = rec.get("events"), mm.get("events")
np.savez(sys.argv[2], ids=ev["senders"], t=ev["times"], v=vm["V_m"], vs=vm["senders"], vt=vm["times"])
'''

    def run(n, e: Edges):
        import tempfile
        from pathlib import Path

        tmp = Path(tempfile.mkdtemp())
        np.savez(tmp / "in.npz", n=n, src=e.sources, tgt=e.targets, w=e.weights, d=e.delays)
        subprocess.run([sys.executable, "-c", code, str(tmp / "in.npz"), str(tmp / "out.npz")], check=True,
                       capture_output=True, timeout=300)
        out = np.load(tmp / "out.npz")
        return out["ids"], out["t"], out["v"], out["vs"], out["vt"]
    return run


def test_two_threads_place_the_same_bytes_and_see_the_same_repeats():
    """reorder with an idle helper thread (the engine's first batch) splits the tiles in two:
    the same columns as one thread, and a repeated pair in either half still keeps the file order."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    e = _random_edges(rng, 3000, 2000, 40)
    one = locality.reorder(e, 0.1)
    with ThreadPoolExecutor(max_workers=1) as helper:
        two = locality.reorder(e, 0.1, helper)
        assert one is not None and two is not None
        for f in ("sources", "targets", "delays", "weights"):
            assert np.array_equal(getattr(one, f), getattr(two, f)), f
        for row in (5, len(e) - 5):  # a repeat in the lower, then in the upper half of the tiles
            src, tgt, d = e.sources.copy(), e.targets.copy(), e.delays.copy()
            src[row + 1], tgt[row + 1], d[row + 1] = src[row], tgt[row], d[row]
            assert locality.reorder(Edges("static_synapse", src, tgt, d, e.weights), 0.1, helper) is None

