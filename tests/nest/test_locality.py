"""The cache-friendly connection order (engines/nest/locality.py): what it orders, when it
keeps the file order, and that NEST then simulates the same spikes."""
from __future__ import annotations

import importlib.util

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


IAF = {"C_m": 250.0, "tau_m": 10.0, "t_ref": 2.0, "E_L": -70.0, "V_m": -70.0, "V_th": -55.0, "V_reset": -70.0,
       "I_e": 300.0}
N_CELLS, N_VIRTUAL = 600, 200


def _engine():
    import logging

    from sonatarun.engines import registry
    from sonatarun.engines.base import RunSettings
    from sonatarun.mpi import Comm

    need(importlib.util.find_spec("nest") is not None, "NEST (pip install nest-simulator)")
    settings = RunSettings(tstart=0.0, tstop=100.0, dt=0.1, nsteps_block=1000)
    eng = registry.get("nest")(settings, Comm(None), logging.getLogger("test-pipeline"))
    eng.build_cells([_cell_batch("v1", 1, np.arange(0, 400)), _cell_batch("v1", 2, np.arange(400, N_CELLS)),
                     _cell_batch("lgn", 3, np.arange(N_CELLS, N_CELLS + N_VIRTUAL), virtual=True)])
    return eng


def _cell_batch(pop, ntid, gids, virtual=False):
    import pandas as pd

    from sonatarun.engines.base import CellBatch

    return CellBatch(population=pop, node_type_id=ntid, model_type="virtual" if virtual else "point_neuron",
                     model_template=None if virtual else "nest:iaf_psc_alpha", node_ids=gids - gids.min(), gids=gids,
                     attributes=pd.DataFrame(index=range(len(gids))), dynamics={} if virtual else IAF,
                     node_dynamics={})


def _edge_batch(rng, etid, src_pop, src_gids, n_per_target, template, weight, delay=None):
    from sonatarun.engines.base import ConnectionBatch

    tgt = np.repeat(np.arange(N_CELLS), n_per_target)
    src = np.concatenate([rng.choice(src_gids, n_per_target, replace=False) for _ in range(N_CELLS)])
    n = len(tgt)
    delays = np.round(rng.uniform(1.0, 3.0, n), 1) if delay is None else np.full(n, delay)
    return ConnectionBatch(edge_population=f"{src_pop}_v1", source_population=src_pop, target_population="v1",
                           edge_type_id=etid, model_template=template, dynamics={}, source_gids=src, target_gids=tgt,
                           source_node_ids=src, target_node_ids=tgt, weights=rng.uniform(0.5, 1.5, n) * weight,
                           delays=delays, nsyns=np.ones(n, dtype=np.int64))


def _network(rng):
    """Six batches: two static ones with disjoint sources (each ordered on its own), two
    tsodyks ones that share a pair of equal delays (checked together: file order), one
    bernoulli (file order: it draws random numbers), one from the virtual population."""
    exc, inh = np.arange(0, 400), np.arange(400, N_CELLS)
    b = [_edge_batch(rng, 100, "v1", exc, 30, "static_synapse", 20.0),
         _edge_batch(rng, 101, "v1", inh, 10, "static_synapse", -60.0),
         _edge_batch(rng, 102, "v1", exc, 5, "tsodyks_synapse", 30.0),
         _edge_batch(rng, 103, "v1", exc, 3, "tsodyks_synapse", 30.0),
         _edge_batch(rng, 104, "v1", inh, 4, "bernoulli_synapse", -10.0),
         _edge_batch(rng, 105, "lgn", np.arange(N_CELLS, N_CELLS + N_VIRTUAL), 8, "static_synapse", 50.0)]
    for f in ("source_gids", "target_gids", "delays"):  # batch 103 repeats one pair of batch 102
        getattr(b[3], f)[7] = getattr(b[2], f)[11]
    return b


def _connections(nest):
    conns = nest.GetConnections()
    return {f: np.asarray(conns.get(f)) for f in ("source", "target", "weight", "delay", "synapse_model")}


def _simulate(eng):
    from sonatarun.engines.base import SpikeTrains

    rng = np.random.default_rng(1)
    eng.add_stimulus(SpikeTrains("lgn", np.arange(N_CELLS, N_CELLS + N_VIRTUAL),
                                 [np.sort(rng.uniform(1.0, 99.0, 20)) for _ in range(N_VIRTUAL)]))
    eng.prepare()
    eng.advance(100.0)
    gids, times = eng.drain_spikes()
    order = np.lexsort((gids, times))
    return gids[order], times[order]


def _serial_build(batches):
    """The engine's build before the pipeline, step by step: recurrent batches (edges of all,
    then the cache order of all, then one nest.Connect each), the spike generators, the
    virtual batch the same way, then the spike recorder."""
    from sonatarun.engines.nest import build

    eng = _engine()
    stats = {"edges": 0, "edges_reordered": 0}

    def connect(part):
        edges = [build.connection_edges(b, eng.gid_map, 0.1) for b in part]
        for b, e, o in zip(part, edges, cache_order(edges, 0.1)):
            use = o if o is not None else e
            eng.nest.Connect(use.sources, use.targets, "one_to_one",
                             {**build.synapse_params(b), "weight": use.weights, "delay": use.delays})
            stats["edges"] += len(b)
            stats["edges_reordered"] += len(b) if o is not None else 0

    connect(batches[:5])
    eng._create_generators()
    connect(batches[5:])
    eng._connected = True
    eng._connect_recorder()
    return eng, stats


def test_pipelined_build_gives_nest_what_the_serial_build_gave(monkeypatch):
    """The engine prepares each batch on a worker thread while NEST connects the one before (in
    slices): NEST ends up with the same connections in the same order as with the serial build
    (GetConnections lists each source's connections in their creation order), the stats agree,
    and the network fires the same spikes. The file order gives other lists: the comparison sees order."""
    from sonatarun.engines.nest import build

    monkeypatch.setattr(build, "CONNECT_SLICE", 1000)  # several slices per batch: the worker runs between them
    batches = _network(np.random.default_rng(9))
    eng = _engine()
    eng.build_connections(batches)
    got, got_stats = _connections(eng.nest), dict(eng.stats)
    got_spikes = _simulate(eng)

    ref_eng, ref_stats = _serial_build(batches)
    want = _connections(ref_eng.nest)
    want_spikes = _simulate(ref_eng)
    for f in want:
        assert np.array_equal(got[f], want[f]), f
    assert {k: got_stats[k] for k in ref_stats} == ref_stats
    n_edges = sum(len(b) for b in batches)
    assert ref_stats["edges"] == n_edges and 0 < ref_stats["edges_reordered"] < n_edges
    assert ref_stats["edges_reordered"] == sum(len(b) for b in (batches[0], batches[1], batches[5]))
    assert len(got_spikes[0]) > 100
    assert all(np.array_equal(x, y) for x, y in zip(got_spikes, want_spikes))

    monkeypatch.setenv("SONATARUN_CONNECT_ORDER", "file")
    eng = _engine()
    eng.build_connections(batches)
    assert eng.stats["edges_reordered"] == 0
    assert not np.array_equal(_connections(eng.nest)["target"], want["target"])


def test_an_error_of_a_later_batch_is_raised_unchanged_on_the_main_thread():
    """A batch the worker prepares while NEST connects earlier ones (here an stdp batch with a
    delay below dt, after two static batches) fails with the EngineError its preparation raises."""
    from sonatarun.engines.nest import build
    from sonatarun.errors import EngineError

    rng = np.random.default_rng(10)
    exc, inh = np.arange(0, 400), np.arange(400, N_CELLS)
    batches = [_edge_batch(rng, 100, "v1", exc, 20, "static_synapse", 20.0),
               _edge_batch(rng, 101, "v1", inh, 10, "static_synapse", -60.0),
               _edge_batch(rng, 102, "v1", exc, 5, "stdp_synapse", 5.0, delay=0.05)]
    eng = _engine()
    with pytest.raises(EngineError) as direct:
        build.connection_edges(batches[2], eng.gid_map, 0.1)
    with pytest.raises(EngineError) as raised:
        eng.build_connections(batches)
    assert type(raised.value) is type(direct.value) and raised.value.render() == direct.value.render()
    assert "shorter than dt" in str(raised.value)
    # raised by the pipeline's worker: the batches before it were connected by then
    assert eng.nest.GetKernelStatus("num_connections") == len(batches[0]) + len(batches[1])


def test_errors_before_the_first_connect_come_in_batch_order():
    """The edges whose ranges the order needs are made before anything connects, on both
    threads (batch 0 here, batch 1 on the worker): with both bad, batch 0's error is raised,
    as the serial build raised it; with only batch 1 bad, its error; nothing is connected."""
    from sonatarun.engines.nest import build
    from sonatarun.errors import EngineError

    def batches(bad0: bool, bad1: bool):
        rng = np.random.default_rng(11)
        b = [_edge_batch(rng, 100, "v1", np.arange(0, 400), 20, "static_synapse", 20.0),
             _edge_batch(rng, 101, "v1", np.arange(400, N_CELLS), 20, "static_synapse", -60.0)]
        if bad0:
            b[0].delays[3] = np.nan
        if bad1:
            b[1].target_gids[5] = 10_000  # no such cell
        return b

    for bad0, bad1, want in ((True, True, "no delay"), (False, True, "has no NEST node")):
        eng = _engine()
        bs = batches(bad0, bad1)
        with pytest.raises(EngineError) as direct:
            build.connection_edges(bs[0] if bad0 else bs[1], eng.gid_map, 0.1)
        with pytest.raises(EngineError, match=want) as raised:
            eng.build_connections(bs)
        assert raised.value.render() == direct.value.render()
        assert eng.nest.GetKernelStatus("num_connections") == 0
