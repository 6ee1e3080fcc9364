"""The cache-friendly connection order (engines/nest/locality.py): what it orders, when it
keeps the file order, and that NEST then simulates the same spikes."""
from __future__ import annotations

import numpy as np
import pytest

from sonatarun.engines.nest import locality
from sonatarun.engines.nest.locality import Edges, connection_orders

from tests.conftest import need


@pytest.fixture(autouse=True)
def _compiled():
    need(locality._load() is not None, "a C compiler for the connection order")


def _random_edges(rng, n_src, n_tgt, per_target, model="static_synapse", multapses=False):
    tgt = np.repeat(np.arange(1, n_tgt + 1), per_target)
    if multapses:
        src = rng.integers(1, n_src + 1, size=len(tgt))
    else:
        src = np.concatenate([rng.choice(np.arange(1, n_src + 1), per_target, replace=False) for _ in range(n_tgt)])
    return Edges(model, src, tgt, np.round(rng.uniform(1.0, 3.0, size=len(tgt)), 1))


def test_order_is_by_target_tile_then_source_and_stable():
    rng = np.random.default_rng(3)
    e = _random_edges(rng, 3000, 2000, 40)
    (order,) = connection_orders([e], 0.1)
    tile = locality.tile_size(len(e.sources), 3000, 2000)
    assert 64 <= tile < 2000  # several tiles, so the test sees tile boundaries
    key = ((e.targets - 1) // tile) * 3001 + e.sources
    assert np.array_equal(order, np.argsort(key, kind="stable"))


def test_multapses_whose_order_matters_keep_the_file_order():
    rng = np.random.default_rng(4)
    e = _random_edges(rng, 500, 300, 20)
    assert connection_orders([e], 0.1)[0] is not None
    # one repeated (source, target) pair with a delay one step away: its sum order could matter
    src, tgt, d = e.sources.copy(), e.targets.copy(), e.delays.copy()
    src[101], tgt[101], d[101] = src[7], tgt[7], d[7] + 0.1
    assert connection_orders([Edges("static_synapse", src, tgt, d)], 0.1) == [None]
    # the same pair far apart in delay lands in other input slots: the order is free again
    d[101] = d[7] + 1.0
    assert connection_orders([Edges("static_synapse", src, tgt, d)], 0.1)[0] is not None
    # a repeated pair split over two batches of one model is seen too
    a = Edges("static_synapse", e.sources[:3000], e.targets[:3000], e.delays[:3000])
    b = Edges("static_synapse", e.sources[7:8], e.targets[7:8], e.delays[7:8])
    assert connection_orders([a, b], 0.1) == [None, None]
    # ... but not across synapse models (NEST delivers models one after the other)
    other = Edges("stdp_synapse", b.sources, b.targets, b.delays)
    orders = connection_orders([a, other], 0.1)
    assert orders[0] is not None and np.array_equal(np.sort(orders[0]), np.arange(3000))


def test_models_that_draw_random_numbers_keep_the_file_order(monkeypatch):
    rng = np.random.default_rng(5)
    e = _random_edges(rng, 400, 200, 10, model="bernoulli_synapse")
    assert connection_orders([e], 0.1) == [None]
    monkeypatch.setenv("SONATARUN_CONNECT_ORDER", "file")
    assert connection_orders([_random_edges(rng, 400, 200, 10)], 0.1) == [None]


def test_orders_split_back_into_batches():
    rng = np.random.default_rng(6)
    e = _random_edges(rng, 800, 600, 15)
    cut = 4000
    a = Edges("static_synapse", e.sources[:cut], e.targets[:cut], e.delays[:cut])
    b = Edges("static_synapse", e.sources[cut:], e.targets[cut:], e.delays[cut:])
    oa, ob = connection_orders([a, b], 0.1)
    assert np.array_equal(np.sort(oa), np.arange(cut)) and np.array_equal(np.sort(ob), np.arange(len(b.sources)))
    (whole,) = connection_orders([e], 0.1)
    assert np.array_equal(oa, whole[whole < cut]) and np.array_equal(ob + cut, whole[whole >= cut])


def test_nest_state_does_not_depend_on_the_order(nest_kernel_runner):
    """A random network without multapses simulated with its edges in file order, in the
    cache order and reversed: every spike and every membrane potential bit-identical (the
    argument of locality.py's docstring, checked). With repeated pairs of equal delay, which
    the order leaves alone, reversing the edges does change the potentials: the check has teeth."""
    rng = np.random.default_rng(7)
    n = 400
    for multapses in (False, True):
        e = _random_edges(rng, n, n, 60, multapses=multapses)
        w = rng.uniform(20.0, 60.0, size=len(e.sources)) * np.where(e.sources > 320, -4.0, 1.0)
        (order,) = connection_orders([e], 0.1)
        orders = [np.arange(len(w))[::-1]]
        if multapses:
            assert order is None  # the engine keeps the file order
        else:
            assert order is not None and not np.array_equal(order, np.arange(len(order)))
            orders.append(order)
        base = nest_kernel_runner(n, e.sources, e.targets, w, e.delays)
        assert len(base[0]) > 500
        for o in orders:
            moved = nest_kernel_runner(n, e.sources[o], e.targets[o], w[o], e.delays[o])
            same = all(np.array_equal(a, b) for a, b in zip(base, moved))
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

    def run(n, src, tgt, w, d):
        import tempfile
        from pathlib import Path

        tmp = Path(tempfile.mkdtemp())
        np.savez(tmp / "in.npz", n=n, src=src, tgt=tgt, w=w, d=d)
        subprocess.run([sys.executable, "-c", code, str(tmp / "in.npz"), str(tmp / "out.npz")], check=True,
                       capture_output=True, timeout=300)
        out = np.load(tmp / "out.npz")
        return out["ids"], out["t"], out["v"], out["vs"], out["vt"]
    return run
