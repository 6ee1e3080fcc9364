"""End to end: `sonatarun run` on NEST gives BMTK PointNet's spikes, bit for bit.

examples/point_nest has three populations (iaf_psc_alpha, Allen-form GLIF converted to
glif_psc, native glif_psc, iaf_psc_delta, a virtual population with off-grid Poisson
times), static and stdp synapses, nsyns, per-edge h5 delays, receptor ports, and a
two-pulse current clamp, on 1 and on 2 NEST threads. BMTK runs in a subprocess (it resets
the NEST kernel at import time), sonatarun through its CLI; both write SONATA spikes and a
multimeter report. ~10 s in total.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import need, run_sonatarun

pytestmark = pytest.mark.bmtk


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _spikes(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    with h5py.File(path, "r") as f:
        for pop, g in f["spikes"].items():
            ids, ts = g["node_ids"][()], g["timestamps"][()]
            order = np.lexsort((ids, ts))
            out[pop] = (ids[order].astype(np.int64), ts[order])
    return out


@pytest.mark.parametrize("threads,chunk", [(1, None), (2, None), (1, 64), (2, 64)])
def test_point_nest_example_matches_bmtk_pointnet(tmp_copy, threads, chunk):
    """``chunk``: populations streamed in chunks of at most that many edges (EdgeChunk; networks
    this small are otherwise read whole), each chunk ordered on its own."""
    need(_have("bmtk") and _have("nest"), "bmtk and nest-simulator")
    ex = tmp_copy("point_nest")
    config = ex / "config.simulation.json"
    if threads != 1:  # BMTK PointNet's thread key; both must run NEST with that many threads
        raw = json.loads(config.read_text())
        raw["run"]["n_thread"] = threads
        config.write_text(json.dumps(raw, indent=2))
    bmtk_out, ours_out = ex / "output_bmtk", ex / "output_sonatarun"
    proc = subprocess.run([sys.executable, str(ex / "run_bmtk.py"), str(config), "--output-dir", str(bmtk_out)],
                          cwd=ex, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {"SONATARUN_EDGE_CHUNK": str(chunk)} if chunk else None
    run_sonatarun("run", str(config), "--output-dir", str(ours_out), cwd=ex, env=env)
    record = json.loads((ours_out / "sonatarun.json").read_text())
    assert record["threads"] == threads
    # streamed: the three populations of more than chunk / 8 edges, cut at target changes
    assert (record["engine_stats"]["edge_chunks"] > 20) if chunk else record["engine_stats"]["edge_chunks"] == 0
    # most edges went to NEST in cache order (locality.py), the rest (multapses) in file order
    assert 0 < record["engine_stats"]["edges_reordered"] < record["engine_stats"]["edges"]

    ref, got = _spikes(bmtk_out / "spikes.h5"), _spikes(ours_out / "spikes.h5")
    assert set(ref) == {"cortex", "thal"}  # the clamp makes thal fire; lgn is virtual
    for pop in ref:
        assert pop in got, f"no spikes for population {pop}"
        assert len(got[pop][0]) == len(ref[pop][0]), pop
        assert np.array_equal(got[pop][0], ref[pop][0]), pop
        assert np.array_equal(got[pop][1], ref[pop][1]), pop
    # every cell type of the example actually fired (else the test would prove little)
    fired = set(ref["cortex"][0].tolist())
    assert fired & set(range(0, 30)) and fired & set(range(30, 50)) and fired & set(range(50, 60))

    # membrane report: BMTK's row i is t = (i + 1) dt (3-decimal ASCII); ours has t = 0 in row 0
    with h5py.File(bmtk_out / "membrane_potential.h5", "r") as f:
        ref_v = f["report/cortex/data"][()]
        ref_ids = f["report/cortex/mapping/node_ids"][()]
    with h5py.File(ours_out / "membrane_potential.h5", "r") as f:
        got_v = f["report/cortex/data"][()]
        got_ids = f["report/cortex/mapping/node_ids"][()]
        time = f["report/cortex/mapping/time"][()]
    assert list(got_ids) == list(ref_ids)
    assert got_v.shape == (5000, 6) and list(time) == pytest.approx([0.0, 500.0, 0.1])
    assert np.abs(got_v[1:1 + len(ref_v)] - ref_v).max() < 1e-3
    assert np.ptp(got_v[:, 0]) > 10.0  # the traces move


ALLEN_R_ASC_A = {
    "type": "GLIF", "El_reference": -0.0790417277018229, "C": 6.072689987399939e-11,
    "asc_amp_array": [-6.2e-12, -1.5e-10], "th_inf": 0.027239, "spike_cut_length": 29,
    "init_AScurrents": [0.0, 0.0], "El": 0.0, "dt": 5e-05, "asc_tau_array": [0.3333333333333333, 0.01],
    "R_input": 238800000.0,
    "threshold_dynamics_method": {"name": "three_components_exact",
                                  "params": {"a_spike": 0.0021, "b_spike": 410.0, "a_voltage": 5.2, "b_voltage": 3.1}},
    "voltage_reset_method": {"name": "v_before", "params": {"a": 0.63, "b": 0.0051}},
    "coeffs": {"a": 1.1, "C": 1.0, "b": 0.9, "G": 1.05, "th_inf": 0.9676, "asc_amp_array": [1.0, 0.8]},
}


@pytest.mark.parametrize("variant", ["glif_lif_psc", "glif_lif_r_psc", "glif_lif_asc_psc", "glif_lif_r_asc_psc",
                                     "glif_lif_r_asc_a_psc", "glif_lif_psc_bix", "glif_lif_asc_psc_bix",
                                     "glif_lif_r_asc_psc_bix"])
def test_allen_glif_conversion_is_bmtks(variant):
    """Our Allen -> NEST GLIF conversion gives BMTK's model and parameters for every variant."""
    need(_have("bmtk") and _have("nest"), "bmtk and nest-simulator")
    from bmtk.simulator.pointnet.glif_utils import converter_builtin

    from sonatarun.engines.nest.models import convert_allen_glif

    ref_model, ref = converter_builtin(f"nest:{variant}", dict(ALLEN_R_ASC_A))
    got = convert_allen_glif(variant, dict(ALLEN_R_ASC_A))
    assert f"nest:{got.name}" == ref_model
    assert set(got.params) == set(ref)
    for key, value in ref.items():
        assert np.allclose(np.asarray(got.params[key], dtype=float), np.asarray(value, dtype=float), rtol=0,
                           atol=0), key


def add_weight_recorder_report(ex: Path) -> Path:
    """The point example with its cortical STDP edges seen by a weight_recorder report
    (stdp_weights.csv), as BMTK configures one; returns the config."""
    types = ex / "network" / "cortex_cortex_edge_types.csv"
    types.write_text(types.read_text().replace(" stdp_synapse ", " stdp_synapse_recorded "))
    config = ex / "config.simulation.json"
    raw = json.loads(config.read_text())
    raw["reports"]["stdp_weights"] = {"module": "weight_recorder", "nest_model": "stdp_synapse",
                                      "model_template": "stdp_synapse_recorded", "file_name": "stdp_weights.csv"}
    config.write_text(json.dumps(raw))
    return config


@pytest.mark.parametrize("chunk", [None, 64])
def test_weight_recorder_matches_bmtk(tmp_copy, chunk):
    """BMTK PointNet's weight_recorder report: the same rows, weights within BMTK's 3 decimals.
    ``chunk``: streaming on (the population of the recorded model is then read whole, in BMTK's
    order, while the others stream)."""
    import pandas as pd

    ex = tmp_copy("point_nest")
    config = add_weight_recorder_report(ex)
    subprocess.run([sys.executable, str(ex / "run_bmtk.py"), str(config), "--output-dir", str(ex / "ob")],
                   cwd=ex, check=True, capture_output=True)
    env = {"SONATARUN_EDGE_CHUNK": str(chunk)} if chunk else None
    run_sonatarun("run", str(config), "--output-dir", str(ex / "os"), cwd=ex, env=env)
    chunks = json.loads((ex / "os" / "sonatarun.json").read_text())["engine_stats"]["edge_chunks"]
    assert (chunks > 0) == bool(chunk)
    a = pd.read_csv(ex / "ob" / "stdp_weights.csv", sep=" ")
    b = pd.read_csv(ex / "os" / "stdp_weights.csv", sep=" ")
    assert len(a) > 1000 and list(a.columns) == list(b.columns) and len(a) == len(b)
    for c in a.columns:
        if c == "weights":
            assert np.abs(a[c].to_numpy() - b[c].to_numpy()).max() <= 5e-4
        else:
            assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
