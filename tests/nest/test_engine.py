"""Engine-level tests of the NEST engine: the plan dataclasses in, NEST spikes and traces out.

No config and no BMTK: each test builds a tiny plan by hand, runs it in blocks and
checks what only a working engine can produce (spike counts that follow the input,
traces that follow a clamp, parameters NEST actually holds).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import need, run_sonatarun

os.environ.setdefault("PYNEST_QUIET", "1")
HAVE_NEST = importlib.util.find_spec("nest") is not None  # imported by the engine, not at collection

LOG = logging.getLogger("test-nest")


def _engine(**kw):
    need(HAVE_NEST, "NEST (pip install nest-simulator)")
    from sonatarun.engines import registry
    from sonatarun.engines.base import RunSettings
    from sonatarun.mpi import Comm

    settings = RunSettings(tstart=0.0, tstop=kw.pop("tstop", 200.0), dt=0.1, nsteps_block=kw.pop("nsteps", 500),
                           **kw)
    return registry.get("nest")(settings, Comm(None), LOG)


def _cells(pop, ntid, template, gids, dynamics, model_type="point_neuron", node_dynamics=None):
    from sonatarun.engines.base import CellBatch

    gids = np.asarray(gids, dtype=np.int64)
    return CellBatch(population=pop, node_type_id=ntid, model_type=model_type, model_template=template,
                     node_ids=gids - gids.min(), gids=gids, attributes={},
                     dynamics=dynamics, node_dynamics=node_dynamics or {})


def _edges(src_pop, tgt_pop, src_gids, tgt_gids, weight, delay, template="static_synapse", dynamics=None,
           nsyns=None, type_attrs=None):
    from sonatarun.engines.base import ConnectionBatch

    n = len(src_gids)
    return ConnectionBatch(edge_population=f"{src_pop}_{tgt_pop}", source_population=src_pop,
                           target_population=tgt_pop, edge_type_id=100, model_template=template,
                           dynamics=dynamics or {}, source_gids=np.asarray(src_gids), target_gids=np.asarray(tgt_gids),
                           source_node_ids=np.asarray(src_gids), target_node_ids=np.asarray(tgt_gids),
                           weights=np.full(n, float(weight)), delays=np.full(n, float(delay)),
                           nsyns=np.ones(n, dtype=np.int64) if nsyns is None else np.asarray(nsyns),
                           type_attrs=type_attrs or {})


def _run(engine, tstop, block):
    gids, times = [], []
    t = 0.0
    while t < tstop - 1e-9:
        t = min(tstop, t + block)
        engine.advance(t)
        g, s = engine.drain_spikes()
        gids.append(g)
        times.append(s)
    return np.concatenate(gids), np.concatenate(times)


IAF = {"C_m": 250.0, "tau_m": 10.0, "t_ref": 2.0, "E_L": -70.0, "V_m": -70.0, "V_th": -55.0, "V_reset": -70.0}


def test_virtual_input_drives_iaf_and_blocks_do_not_change_spikes():
    """Spikes from spike generators through nsyns-weighted edges make the targets fire; the same
    run in 7 blocks or 1 block gives the same spikes (drain really empties the recorder)."""
    from sonatarun.engines.base import SpikeTrains

    def run(block):
        eng = _engine()
        eng.build_cells([_cells("v1", 1, "nest:iaf_psc_alpha", [10, 11, 12], IAF),
                         _cells("lgn", 2, None, [0, 1], {}, model_type="virtual")])
        # gid 10 gets 2 synapses of 400 pA from both inputs (nsyns multiplies), gid 11 one weak one
        eng.build_connections([_edges("lgn", "v1", [0, 1, 0], [10, 10, 11], 400.0, 1.0, nsyns=[2, 2, 1])])
        eng.add_stimulus(SpikeTrains("lgn", np.array([0, 1]),
                                     [np.arange(10.05, 190.0, 10.0), np.arange(10.05, 190.0, 10.0)]))
        eng.prepare()
        out = _run(eng, 200.0, block)
        eng.finish()
        return out

    gids, times = run(30.0)
    assert set(gids.tolist()) == {10}, gids  # only the strongly driven cell fires
    assert len(times) == 18  # once per input volley
    # precise_times: a spike at 10.05 ms is delivered as of the end of its step (10.1) + 1 ms delay
    assert times.min() > 11.1
    g1, t1 = run(200.0)
    order = np.lexsort((gids, times))
    order1 = np.lexsort((g1, t1))
    assert np.array_equal(gids[order], g1[order1]) and np.array_equal(times[order], t1[order1])


def test_allen_glif_is_converted_and_clamped_cell_traces_follow_the_clamp():
    """An Allen-form GLIF type becomes NEST glif_psc with BMTK's unit conversion; a current clamp
    (pA, BMTK's convention) depolarises it and a multimeter returns [n_t, n_cells] per block."""
    from sonatarun.engines.base import CurrentClamp, ProbeSpec

    allen = {"type": "GLIF", "El_reference": -0.07, "C": 6e-11, "asc_amp_array": [-6e-12, -1.5e-10],
             "th_inf": 0.027, "spike_cut_length": 20, "init_AScurrents": [0.0, 0.0], "El": 0.0, "dt": 5e-05,
             "asc_tau_array": [0.333, 0.01], "R_input": 2.4e8,
             "coeffs": {"a": 1, "C": 1.0, "b": 1, "G": 1, "th_inf": 0.9, "asc_amp_array": [1.0, 1.0]}}
    eng = _engine(tstop=100.0)
    eng.build_cells([_cells("v1", 5, "nest:glif_lif_asc_psc", [0, 1], allen)])
    status = eng.nest.NodeCollection([int(eng.gid_map.gid_to_nest[0])]).get()
    assert status["model"].startswith("glif_psc")  # a copy of glif_psc holding the type parameters
    assert status["V_th"] == pytest.approx(0.9 * 0.027e3 - 70.0)
    assert status["C_m"] == pytest.approx(60.0)
    assert status["t_ref"] == pytest.approx(1.0)
    assert list(status["tau_syn"]) == [5.5, 8.5, 2.8, 5.8]
    eng.build_connections([])
    eng.add_stimulus(CurrentClamp("clamp", np.array([1]), amps=[200.0], delays=[20.0], durations=[50.0]))
    probe = eng.add_probe(ProbeSpec("v", "membrane", ["v"], "v1", np.array([1, 0]), np.array([1, 0])))
    eng.prepare()
    chunks = []
    for t in (40.0, 100.0):
        eng.advance(t)
        chunks.append(probe.drain()["V_m"])
    v = np.concatenate(chunks)
    assert v.shape == (1000, 2), v.shape  # t = 0, 0.1, ... 99.9: row 0 is the initial state
    assert np.allclose(v[:150, :], -70.0)  # before the clamp: at rest
    assert v[400, 0] > -65.0 and v[400, 1] == pytest.approx(-70.0)  # column 0 is gid 1, the clamped cell
    assert list(probe.node_ids) == [1, 0] and list(probe.counts) == [1, 1]


def test_stdp_edges_change_weights_and_per_node_dynamics_apply():
    """stdp_synapse dynamics reach NEST and the weights move; h5 per-node dynamics override type ones."""
    from sonatarun.engines.base import SpikeTrains

    eng = _engine(tstop=300.0)
    params = dict(IAF, I_e=0.0)
    eng.build_cells([_cells("v1", 1, "nest:iaf_psc_alpha", [0, 1, 2], params,
                            node_dynamics={"I_e": np.array([0.0, 0.0, 420.0])}),
                     _cells("lgn", 2, None, [3], {}, model_type="virtual")])
    stdp = {"tau_plus": 20.0, "lambda": 0.05, "alpha": 1.0, "mu_plus": 0.0, "mu_minus": 0.0, "Wmax": 2000.0}
    eng.build_connections([_edges("v1", "v1", [2], [0], 100.0, 1.0, template="nest:stdp_synapse", dynamics=stdp),
                           _edges("lgn", "v1", [3], [0], 1200.0, 1.0)])
    eng.add_stimulus(SpikeTrains("lgn", np.array([3]), [np.arange(5.0, 295.0, 7.0)]))
    eng.prepare()
    gids, _ = _run(eng, 300.0, 100.0)
    assert set(gids.tolist()) >= {0, 2}  # gid 2 fires from its own I_e, gid 0 from the input
    assert 1 not in set(gids.tolist())
    conns = eng.nest.GetConnections(synapse_model="stdp_synapse")
    w = conns.get("weight")
    assert w != pytest.approx(100.0)


def test_bad_inputs_are_user_errors():
    from sonatarun.engines.base import SpikeTrains
    from sonatarun.errors import EngineError, InputError

    eng = _engine()
    with pytest.raises(EngineError, match="point neurons"):
        eng.build_cells([_cells("v1", 1, "ctdb:Biophys1.hoc", [0], {}, model_type="biophysical")])
    eng = _engine()
    eng.build_cells([_cells("v1", 1, "nest:iaf_psc_alpha", [0], IAF),
                     _cells("lgn", 2, None, [1], {}, model_type="virtual")])
    with pytest.raises(EngineError, match="shorter than dt"):
        eng.build_connections([_edges("lgn", "v1", [1], [0], 1.0, 0.01)])
    eng.build_connections([_edges("lgn", "v1", [1], [0], 1.0, 1.0)])
    with pytest.raises(InputError, match="<= 0"):
        eng.add_stimulus(SpikeTrains("lgn", np.array([1]), [np.array([0.0, 5.0])]))


def test_several_ranks_without_mpi_is_a_clear_error():
    need(HAVE_NEST, "NEST (pip install nest-simulator)")
    from sonatarun.engines import registry
    from sonatarun.engines.base import RunSettings
    from sonatarun.errors import EngineError

    class TwoRanks:
        size = 2
        rank = 0

    with pytest.raises(EngineError, match="--threads"):
        registry.get("nest")(RunSettings(), TwoRanks(), LOG)


def test_weights_follow_bmtk_pointnet_nsyns_rule():
    """syn_weight x nsyns, also under BMTK's built-in weight functions; a user function's value is final."""
    need(HAVE_NEST, "NEST (pip install nest-simulator)")
    from sonatarun.engines.nest.build import connection_weights

    plain = _edges("a", "b", [0, 1], [2, 3], 2.0, 1.0, nsyns=[1, 3])
    builtin = _edges("a", "b", [0, 1], [2, 3], 2.0, 1.0, nsyns=[1, 3], type_attrs={"weight_function": "wmax"})
    custom = _edges("a", "b", [0, 1], [2, 3], 2.0, 1.0, nsyns=[1, 3], type_attrs={"weight_function": "my_fn"})
    assert list(connection_weights(plain)) == [2.0, 6.0]
    assert list(connection_weights(builtin)) == [2.0, 6.0]
    assert list(connection_weights(custom)) == [2.0, 2.0]


@pytest.mark.mpi
def test_nest_under_mpiexec_fails_before_writing_anything(tmp_copy):
    """NEST without MPI kills a process started by mpiexec -n 2 at import (exit 127, no hint);
    sonatarun must refuse first, with exit 2, a fix, and no output directory."""
    need(HAVE_NEST, "NEST (pip install nest-simulator)")
    ex = tmp_copy("point_nest")
    out = ex / "out_mpi"
    proc = run_sonatarun("run", str(ex / "config.simulation.json"), "--output-dir", str(out), np=2, cwd=ex,
                         check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--threads" in proc.stderr and "FATAL" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_spikes_recorded_beyond_65534_cells_per_thread():
    """NEST's compact recorder synapse cannot address a target past thread-local index 65534;
    with 70k cells on one thread every cell's spikes must still arrive. ~1 GB of NEST memory,
    2 s. (Several threads with > 65k cells each fall back to static_synapse: 33 kB per cell,
    too heavy for a test.)"""
    n = 70_000
    eng = _engine(tstop=20.0, threads=1)
    drive = {"C_m": 250.0, "tau_m": 10.0, "t_ref": 2.0, "E_L": -70.0, "V_m": -56.0, "V_th": -55.0,
             "V_reset": -70.0, "I_e": 400.0}
    eng.build_cells([_cells("big", 1, "nest:iaf_psc_delta", np.arange(n), drive)])
    eng.build_connections([])
    eng.prepare()
    gids, times = _run(eng, 20.0, 20.0)
    assert len(np.unique(gids)) == n and gids.max() == n - 1


def test_weight_recorder_report_follows_stdp_weights(tmp_path):
    """BMTK's weight_recorder report: edges whose model_template names the report's copy of
    stdp_synapse are connected through it, and every weight change lands in the CSV with
    population + node id; an undefined synapse model is still an error."""
    from sonatarun.engines.base import ProbeSpec, SpikeTrains
    from sonatarun.errors import EngineError

    stdp = {"tau_plus": 20.0, "lambda": 0.05, "alpha": 1.0, "mu_plus": 0.0, "mu_minus": 0.0, "Wmax": 2000.0}

    def build(with_report: bool):
        eng = _engine(tstop=200.0)
        eng.build_cells([_cells("v1", 1, "nest:iaf_psc_alpha", [0, 1, 2], dict(IAF, I_e=0.0),
                                node_dynamics={"I_e": np.array([0.0, 0.0, 420.0])}),
                         _cells("lgn", 2, None, [3], {}, model_type="virtual")])
        eng.build_connections([_edges("v1", "v1", [2], [0], 100.0, 1.0, template="stdp_synapse_rec", dynamics=stdp),
                               _edges("lgn", "v1", [3], [0], 1200.0, 1.0)])
        eng.add_stimulus(SpikeTrains("lgn", np.array([3]), [np.arange(5.0, 195.0, 7.0)]))
        if with_report:
            eng.add_probe(ProbeSpec("w", "weight_recorder", [], "", np.zeros(0), np.zeros(0), options={
                "nest_model": "stdp_synapse", "model_template": "stdp_synapse_rec", "file": str(tmp_path / "w.csv"),
                "populations": [["v1", 0, 3], ["lgn", 3, 1]]}))
        return eng

    with pytest.raises(EngineError, match="stdp_synapse_rec"):
        build(False).prepare()
    eng = build(True)
    probe = eng._probes_other[0]
    eng.prepare()
    for t in (100.0, 200.0):
        eng.advance(t)
        eng.drain_spikes()
        probe.drain()
    table = pd.read_csv(tmp_path / "w.csv", sep=" ")
    assert list(table.columns) == ["source_node_id", "source_population", "target_node_id", "target_population",
                                   "time_ms", "weights", "receptors", "ports"]
    assert len(table) > 5 and set(table["source_node_id"]) == {2} and set(table["target_node_id"]) == {0}
    assert set(table["source_population"]) == {"v1"} and table["weights"].nunique() > 1
    assert table["time_ms"].is_monotonic_increasing and table["time_ms"].max() <= 200.0


@pytest.mark.parametrize("threads", [1, 2])
def test_spike_tap_records_what_a_spike_recorder_records(monkeypatch, threads):
    """The spike tap (weight-0 self-connections seen by a weight_recorder) must give exactly the
    spikes of a spike_recorder: same cells, same times, none lost at block ends that cut a
    min-delay slice or at tstop, and no influence on the dynamics (iaf_psc_alpha, iaf_psc_delta,
    glif_psc on receptor 1, recurrent excitation and inhibition with several delays)."""
    from sonatarun.engines.base import SpikeTrains
    from sonatarun.engines.nest import recorders

    rng = np.random.default_rng(3)
    n = 120
    glif = {"V_m": -70.0, "E_L": -70.0, "V_th": -55.0, "V_reset": -70.0, "C_m": 60.0, "g": 5.0, "t_ref": 2.0,
            "tau_syn": [2.0, 5.0]}

    def run(use_tap: bool):
        if not use_tap:
            monkeypatch.setattr(recorders, "TAP_RECEPTOR", {})
        eng = _engine(tstop=300.0, threads=threads)
        eng.build_cells([_cells("a", 1, "nest:iaf_psc_alpha", np.arange(0, 60), dict(IAF, I_e=360.0)),
                         _cells("a", 2, "nest:iaf_psc_delta", np.arange(60, 100), dict(IAF, I_e=370.0)),
                         _cells("a", 3, "nest:glif_psc", np.arange(100, n), glif),
                         _cells("in", 4, None, np.arange(n, n + 5), {}, model_type="virtual")])
        src = rng.integers(0, 100, 2000)
        tgt = rng.integers(0, 100, 2000)
        w = np.where(src < 80, 40.0, -160.0)
        d = np.round(rng.uniform(0.8, 2.9, 2000), 1)
        edges = _edges("a", "a", src, tgt, 0.0, 1.0)
        edges.weights, edges.delays = w, d
        to_glif = _edges("in", "a", np.repeat(np.arange(n, n + 5), 4), np.tile(np.arange(100, n), 1), 300.0, 1.3,
                         dynamics={"receptor_type": 1})
        eng.build_connections([edges, to_glif])
        eng.add_stimulus(SpikeTrains("in", np.arange(n, n + 5), [np.sort(rng.uniform(1, 299, 40)) for _ in range(5)]))
        eng.prepare()
        kinds = {type(s).__name__ for s in eng._spike_sources}
        out = _run(eng, 300.0, 33.35)  # block ends inside min-delay slices
        eng.finish()
        return kinds, out

    state = rng.bit_generator.state
    kinds_tap, (g_tap, t_tap) = run(True)
    rng.bit_generator.state = state
    kinds_rec, (g_rec, t_rec) = run(False)
    assert kinds_tap == {"SpikeTap"} and kinds_rec == {"SpikeRecorder"}
    assert len(set(g_rec.tolist()) & set(range(100, n))) > 0  # the glif cells fire too
    assert t_rec.max() > 295.0 and len(g_rec) > 500
    o_tap, o_rec = np.lexsort((g_tap, t_tap)), np.lexsort((g_rec, t_rec))
    assert np.array_equal(g_tap[o_tap], g_rec[o_rec]) and np.array_equal(t_tap[o_tap], t_rec[o_rec])
    assert t_tap.max() <= 300.0


def test_a_nest_run_imports_neither_pandas_nor_matplotlib(tmp_copy):
    """Start-up is a large part of a NEST build (pandas alone ~0.3 s of a 10k-neuron build's ~1.2 s):
    a plain NEST run (spike inputs, spikes out) must not import pandas or matplotlib, neither through
    sonatarun nor through pynest (which imports both when it can, see engines/nest/kernel.py), and
    both stay importable after NEST is loaded."""
    need(HAVE_NEST, "NEST (pip install nest-simulator)")
    ex = tmp_copy("point_nest")
    code = ("import sys\nfrom sonatarun.cli.main import main\n"
            f"rc = main(['run', {str(ex / 'config.simulation.json')!r}, '--output-dir', {str(ex / 'out')!r}])\n"
            "loaded = [m for m in ('pandas', 'matplotlib') if m in sys.modules]\n"
            "import pandas, matplotlib\n"
            "print('RESULT', rc, loaded)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ex, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RESULT 0 []" in proc.stdout, proc.stdout[-2000:]
    assert (ex / "out" / "spikes.h5").exists()


def test_nest_mpi_support_is_read_from_its_library_without_importing_it(tmp_path):
    """The wheel's NEST links no MPI (and is not imported to find out: under mpiexec that import
    ends the process); the reader returns nothing for files that are not 64-bit ELF."""
    need(HAVE_NEST, "NEST (pip install nest-simulator)")
    from pathlib import Path

    from sonatarun.engines.nest.kernel import nest_has_mpi
    from sonatarun.util.elf import needed_libraries

    libs = [needed_libraries(p) for p in Path(importlib.util.find_spec("nest").origin).parent.glob("*.so")]
    assert any("libc.so.6" in names for names in libs)  # the reader sees the real entries
    assert not any(n.startswith("libmpi") for names in libs for n in names)
    assert nest_has_mpi() is False
    (tmp_path / "text.so").write_text("not an ELF file")
    (tmp_path / "short.so").write_bytes(b"\x7fELF\x02\x01")
    assert needed_libraries(tmp_path / "text.so") == [] and needed_libraries(tmp_path / "short.so") == []
