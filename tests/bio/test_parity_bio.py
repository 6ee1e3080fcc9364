"""Parity with BMTK BioNet for biophysically detailed networks.

The bio_network example's builder writes a small network into tmp_path: real Allen
reconstructions (perisomatic and all-active processing), Allen-form JSON with ``hh``,
``pas`` and the example's own ``Ih.mod``, edges placed by ``target_sections`` +
``distance_range`` (BMTK's per-cell random stream) and by ``afferent_section_id/pos``,
virtual inputs, a soma report, an all-segment report and a synapse-current report.
BMTK runs it once; sonatarun must give the same spikes (>= 99% within one dt) and the
same traces, on 1 rank and under ``mpiexec -n 2``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.bmtk_support import read_spikes
from tests.conftest import EXAMPLES, ROOT, need, run_sonatarun

DT = 0.025


def _builder():
    spec = importlib.util.spec_from_file_location("bio_network_build", EXAMPLES / "bio_network" / "build_network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run_bmtk_bio(config: Path, workdir: Path) -> Path:
    """BMTK on `config` with the example's own mechanisms (Ih + VecStim) compiled in place."""
    mech = config.parent / "components" / "mechanisms"
    if not (mech / platform.machine() / "libnrnmech.so").exists():
        nrnivmodl = Path(sys.executable).parent / "nrnivmodl"
        subprocess.run([str(nrnivmodl), "modfiles"], cwd=mech, check=True, capture_output=True)
    out = workdir / "bmtk_output"
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "bmtk_support.py"), str(config), str(out), str(mech)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"BMTK failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) for the parity reference")
    base = tmp_path_factory.mktemp("bio_network")
    _builder().build(base, n_exc_per_morph=3, n_inh_per_morph=2, n_lgn=20, tstop=300.0)
    cfg = json.loads((base / "config.simulation.json").read_text())
    # a pulse train into two cells: three IClamps from lists, as BMTK's AmpsReader makes them
    cfg["inputs"]["pulses"] = {"input_type": "current_clamp", "module": "IClamp", "node_set": "recorded",
                               "amp": [0.3, 0.5, 0.4], "delay": [40.0, 120.0, 200.0], "duration": [30.0, 20.0, 50.0]}
    (base / "config.simulation.json").write_text(json.dumps(cfg, indent=2))
    ref = run_bmtk_bio(base / "config.simulation.json", base)
    spikes = read_spikes(ref / "spikes.h5")
    assert len(spikes["bio"][0]) > 30, f"BMTK reference too quiet: {len(spikes['bio'][0])} spikes"
    return base, ref


def _matched_fraction(expected, actual, tol: float) -> float:
    """Fraction of expected spikes with a spike of the same node within `tol` ms in `actual`."""
    e_ids, e_ts = expected
    a_ids, a_ts = actual
    hits = 0
    for nid in np.unique(e_ids):
        a = np.sort(a_ts[a_ids == nid])
        e = e_ts[e_ids == nid]
        if len(a) == 0:
            continue
        j = np.clip(np.searchsorted(a, e), 1, len(a)) - 1
        near = np.minimum(np.abs(a[j] - e), np.abs(a[np.minimum(j + 1, len(a) - 1)] - e))
        hits += int(np.count_nonzero(near <= tol + 1e-9))
    return hits / max(len(e_ids), 1)


def _report(path: Path) -> dict[tuple[int, int, float], np.ndarray]:
    """{(node_id, element_id, element_pos rounded): trace} so any column order compares."""
    with h5py.File(path, "r") as f:
        pop = next(iter(f["report"]))
        g = f["report"][pop]
        data = g["data"][()]
        m = g["mapping"]
        ptr = (m["index_pointer"][()] if "index_pointer" in m else m["index_pointers"][()]).astype(np.int64)
        nodes = np.repeat(m["node_ids"][()], np.diff(ptr))
        keys = list(zip(nodes.tolist(), m["element_ids"][()].tolist(), np.round(m["element_pos"][()], 6).tolist()))
    out: dict = {}
    for j, k in enumerate(keys):
        k2 = k
        while k2 in out:  # several synapses on one segment: keep them apart in order
            k2 = k2 + (0,)
        out[k2] = data[:, j]
    return out


@pytest.mark.bmtk
@pytest.mark.parametrize("np_", [None, 2], ids=["1rank", "mpi2"])
def test_bio_network_matches_bmtk(network, tmp_path, np_):
    base, ref = network
    out = tmp_path / "out"
    run_sonatarun("run", str(base / "config.simulation.json"), "--output-dir", str(out), np=np_, cwd=base)
    expected, actual = read_spikes(ref / "spikes.h5"), read_spikes(out / "spikes.h5")
    assert set(actual) == set(expected) == {"bio"}
    n_e, n_a = len(expected["bio"][0]), len(actual["bio"][0])
    assert abs(n_e - n_a) <= 0.01 * n_e, f"{n_a} spikes, BMTK {n_e}"
    assert _matched_fraction(expected["bio"], actual["bio"], DT) >= 0.99
    assert _matched_fraction(actual["bio"], expected["bio"], DT) >= 0.99

    for name, atol in (("v_soma.h5", 1e-3), ("v_all.h5", 1e-3), ("syn_i.h5", 1e-6)):
        e, a = _report(ref / name), _report(out / name)
        assert sorted(e) == sorted(a), f"{name}: recorded elements differ from BMTK's"
        worst = max(float(np.max(np.abs(e[k] - a[k]))) for k in e)
        assert all(np.allclose(e[k], a[k], rtol=0, atol=atol) for k in e), f"{name}: max |diff| {worst}"


def _build_mixed(base: Path) -> Path:
    """One population mixing detailed and IntFire1 node types, plus virtual inputs, edges both ways."""
    from bmtk.builder import NetworkBuilder

    b = _builder()
    (base / "network").mkdir(parents=True)
    b.write_components(base)
    pn = base / "components" / "point_neuron_models"
    pn.mkdir(parents=True, exist_ok=True)
    (pn / "IntFire1.json").write_text(json.dumps({"tau": 0.010, "refrac": 0.003}))
    (base / "components" / "synaptic_models" / "instExc.json").write_text(json.dumps({"sign": 1}))

    def rule(s, t, p, salt):
        g = np.random.default_rng([salt, s.node_id, t.node_id])
        return int(g.integers(1, 4)) if g.random() < p else 0

    net = NetworkBuilder("bio")
    net.add_nodes(N=4, ei="e", model_type="biophysical", model_template="ctdb:Biophys1.hoc",
                  model_processing="aibs_perisomatic", dynamics_params="exc_perisomatic.json",
                  morphology="Scnn1a_473845048_m.swc")
    net.add_nodes(N=2, ei="i", model_type="biophysical", model_template="ctdb:Biophys1.hoc",
                  model_processing="aibs_allactive", dynamics_params="pvalb_allactive.json",
                  morphology="Pvalb_469628681_m.swc")
    net.add_nodes(N=4, ei="p", model_type="point_process", model_template="nrn:IntFire1",
                  dynamics_params="IntFire1.json")
    net.add_edges(source={"ei": "e"}, target={"ei": ["e", "i"]}, connection_rule=rule,
                  connection_params={"p": 0.5, "salt": 1}, syn_weight=2e-3, delay=2.0,
                  target_sections=["basal", "apical", "somatic"], distance_range=[0.0, 200.0],
                  dynamics_params="AMPA_ExcToExc.json", model_template="exp2syn")
    net.add_edges(source={"ei": "e"}, target={"ei": "p"}, connection_rule=rule,
                  connection_params={"p": 0.8, "salt": 2}, syn_weight=0.4, delay=1.0,
                  dynamics_params="instExc.json", model_template="exp2syn")
    net.add_edges(source={"ei": "p"}, target={"ei": ["e", "i"]}, connection_rule=rule,
                  connection_params={"p": 0.6, "salt": 3}, syn_weight=3e-3, delay=1.5,
                  target_sections=["basal", "somatic"], distance_range=[0.0, 100.0],
                  dynamics_params="AMPA_ExcToInh.json", model_template="exp2syn")
    net.build()
    net.save(output_dir=str(base / "network"))
    lgn = NetworkBuilder("lgn")
    lgn.add_nodes(N=15, model_type="virtual")
    lgn.add_edges(source=lgn.nodes(), target=net.nodes(ei=["e", "i"]), connection_rule=rule,
                  connection_params={"p": 0.4, "salt": 4}, syn_weight=6e-3, delay=2.0,
                  target_sections=["basal", "apical"], distance_range=[0.0, 150.0],
                  dynamics_params="AMPA_ExcToExc.json", model_template="exp2syn")
    lgn.add_edges(source=lgn.nodes(), target=net.nodes(ei="p"), connection_rule=rule,
                  connection_params={"p": 0.4, "salt": 5}, syn_weight=0.3, delay=2.0,
                  dynamics_params="instExc.json", model_template="exp2syn")
    lgn.build()
    lgn.save(output_dir=str(base / "network"))
    ids, ts = b.poisson_trains(15, 20.0, 300.0, 7)
    b.write_spikes(base / "inputs" / "lgn_spikes.h5", "lgn", ids, ts)
    cfg = b.config_dict(300.0, reports=False)
    cfg["components"]["point_neuron_models_dir"] = "$COMPONENTS_DIR/point_neuron_models"
    cfg["reports"] = {"v_soma": {"module": "membrane_report", "cells": "bio", "variable_name": "v",
                                 "sections": "soma", "file_name": "v_soma.h5"}}
    (base / "config.simulation.json").write_text(json.dumps(cfg, indent=2))
    return base / "config.simulation.json"


@pytest.mark.bmtk
def test_mixed_detailed_point_and_virtual_matches_bmtk(tmp_path):
    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) for the parity reference")
    config = _build_mixed(tmp_path / "mixed")
    ref = run_bmtk_bio(config, tmp_path)
    out = tmp_path / "out"
    run_sonatarun("run", str(config), "--output-dir", str(out), cwd=config.parent)
    expected, actual = read_spikes(ref / "spikes.h5"), read_spikes(out / "spikes.h5")
    e_ids, a_ids = expected["bio"][0], actual["bio"][0]
    assert np.count_nonzero(e_ids >= 6) > 10 and np.count_nonzero(e_ids < 6) > 10  # both kinds fire
    assert len(a_ids) == len(e_ids) and _matched_fraction(expected["bio"], actual["bio"], DT) >= 0.99
    e, a = _report(ref / "v_soma.h5"), _report(out / "v_soma.h5")
    assert sorted(e) == sorted(a) and all(np.allclose(e[k], a[k], rtol=0, atol=1e-3) for k in e)
