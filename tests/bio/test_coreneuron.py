"""`run --coreneuron`: CoreNEURON gives NEURON's results on a biophysical network, and refuses checkpoints.

The bio_network example's builder writes a small network (Allen reconstructions with
``hh``/``pas``/``Ih``, Exp2Syn edges, virtual inputs, IClamp pulses, soma, all-segment and
synapse-current reports). NEURON runs it once; CoreNEURON (mechanisms compiled once per
content in the default cache, shared with later sessions) must give the same spikes within
one dt and the same traces within 1e-6, on 1 rank and under ``mpiexec -n 2``. The example's
``vecevent.mod`` does not compile for CoreNEURON: it is left out with a warning, and a model
that uses its VecStim stops with an error naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.bio.test_parity_bio import DT, _builder, _matched_fraction, _report
from tests.bmtk_support import read_spikes
from tests.conftest import run_sonatarun

REPORTS = ("v_soma.h5", "v_all.h5", "syn_i.h5")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """The network and NEURON's outputs for it (reference); the first --coreneuron use compiles."""
    base = tmp_path_factory.mktemp("bio_core")
    _builder().build(base, n_exc_per_morph=3, n_inh_per_morph=2, n_lgn=20, tstop=300.0)
    cfg = json.loads((base / "config.simulation.json").read_text())
    cfg["inputs"]["pulses"] = {"input_type": "current_clamp", "module": "IClamp", "node_set": "recorded",
                               "amp": [0.3, 0.5, 0.4], "delay": [40.0, 120.0, 200.0], "duration": [30.0, 20.0, 50.0]}
    (base / "config.simulation.json").write_text(json.dumps(cfg, indent=2))
    ref = base / "out_neuron"
    run_sonatarun("run", str(base / "config.simulation.json"), "--output-dir", str(ref), cwd=base)
    assert len(read_spikes(ref / "spikes.h5")["bio"][0]) > 20, "reference too quiet to compare spikes"
    return base, ref


@pytest.mark.parametrize("np_", [None, 2], ids=["1rank", "mpi2"])
def test_coreneuron_matches_neuron(network, tmp_path, np_):
    base, ref = network
    out = tmp_path / "out"
    # under a batch scheduler checkpoints are on by default: with --coreneuron they go off with a warning
    env = {"SLURM_JOB_ID": "1"} if np_ is None else None
    run_sonatarun("run", str(base / "config.simulation.json"), "--output-dir", str(out), "--coreneuron",
                  np=np_, cwd=base, env=env)
    expected, actual = read_spikes(ref / "spikes.h5")["bio"], read_spikes(out / "spikes.h5")["bio"]
    assert len(actual[0]) == len(expected[0])
    assert _matched_fraction(expected, actual, DT) == 1.0
    assert _matched_fraction(actual, expected, DT) == 1.0
    for name in REPORTS:
        e, a = _report(ref / name), _report(out / name)
        assert sorted(e) == sorted(a), f"{name}: recorded elements differ"
        worst = max(float(np.max(np.abs(e[k] - a[k]))) for k in e)
        assert worst <= 1e-6, f"{name}: max |diff| {worst}"
    log = (out / "log.txt").read_text()
    assert "vecevent.mod is not part of the CoreNEURON build" in log
    if env:
        assert "no automatic checkpoints under the batch scheduler" in log
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


@pytest.mark.parametrize("option", [["--resume"], ["--checkpoint-interval", "100"]])
def test_checkpoint_options_refused(network, tmp_path, option):
    base, _ = network
    out = tmp_path / "out"
    proc = run_sonatarun("run", str(base / "config.simulation.json"), "--output-dir", str(out), "--coreneuron",
                         *option, cwd=base, check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert option[0] in line and "--coreneuron" in line
    assert not out.exists()


def test_model_using_excluded_mechanism_names_the_file(network, tmp_path):
    base, _ = network
    copy = tmp_path / "model"
    copy.mkdir()
    for sub in ("network", "components", "inputs"):
        (copy / sub).symlink_to(base / sub)
    cfg = json.loads((base / "config.simulation.json").read_text())
    types = base / "network" / "lgn_node_types.csv"
    (tmp_path / "lgn_node_types.csv").write_text(
        "node_type_id pop_name model_type model_template\n100 lgn point_process nrn:VecStim\n")
    for spec in cfg["networks"]["nodes"]:
        if Path(spec["node_types_file"]).name == types.name:
            spec["node_types_file"] = str(tmp_path / "lgn_node_types.csv")
    cfg["inputs"] = {}
    (copy / "config.simulation.json").write_text(json.dumps(cfg))
    proc = run_sonatarun("run", str(copy / "config.simulation.json"), "--output-dir", str(tmp_path / "out"),
                         "--coreneuron", cwd=copy, check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "VecStim" in line and "vecevent.mod" in line and "CoreNEURON" in line


def test_mechanisms_build_coreneuron_reports_left_out_file(network):
    base, _ = network
    proc = run_sonatarun("mechanisms", "build", str(base / "components" / "mechanisms"), "--coreneuron")
    assert "vecevent.mod does not compile for CoreNEURON" in proc.stdout
    assert "for CoreNEURON: Ih" in proc.stdout
    lib = Path(proc.stdout.strip().splitlines()[-1].split("library: ")[1])
    assert (lib.parent / "libcorenrnmech.so").exists()


def test_ecp_report_matches_neuron(tmp_path):
    """The ECP report works under CoreNEURON (membrane currents via Vector.record: SonataEcp is not in
    the CoreNEURON build) and equals NEURON's up to summation order."""
    import importlib.util

    import h5py

    from tests.bio.ecp_network import build
    from tests.conftest import need

    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) for the network builder")
    cfg = build(tmp_path / "ecp", tstop=40.0, nsteps_block=400, minimum_distance="auto", contributions=False)
    outs = {}
    for label, extra in (("neuron", []), ("coreneuron", ["--coreneuron"])):
        outs[label] = tmp_path / f"out_{label}"
        run_sonatarun("run", str(cfg), "--output-dir", str(outs[label]), *extra, cwd=cfg.parent)
    with h5py.File(outs["neuron"] / "ecp.h5") as f, h5py.File(outs["coreneuron"] / "ecp.h5") as g:
        e, a = f["ecp/data"][()], g["ecp/data"][()]
    assert e.shape == a.shape and np.abs(e).max() > 0
    assert np.abs(e - a).max() <= 1e-9 * np.abs(e).max()
    assert "membrane currents buffered" in (outs["coreneuron"] / "log.txt").read_text()


def test_config_key_turns_coreneuron_on(network, tmp_path):
    """`run.coreneuron: true` is the config form of --coreneuron (here its checkpoint refusal shows it)."""
    base, _ = network
    cfg = json.loads((base / "config.simulation.json").read_text())
    cfg["run"]["coreneuron"] = True
    cfg["run"]["checkpoint_interval"] = 100.0
    path = base / "config.core.json"
    path.write_text(json.dumps(cfg))
    proc = run_sonatarun("run", str(path), "--output-dir", str(tmp_path / "out"), cwd=base, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "run.checkpoint_interval" in proc.stderr.strip().splitlines()[-1]
    # and --checkpoint-interval 0 from the command line (no checkpoints) lets it run
    cfg["run"]["tstop"] = 20.0
    path.write_text(json.dumps(cfg))
    run_sonatarun("run", str(path), "--output-dir", str(tmp_path / "out"), "--checkpoint-interval", "0", cwd=base)
    assert "vecevent.mod is not part of the CoreNEURON build" in (tmp_path / "out" / "log.txt").read_text()


def test_reports_with_uneven_blocks(network, tmp_path):
    """Blocks that end a step late (psolve to a float time: with 3-step blocks the second one takes 4
    steps) still give NEURON's report rows: the CoreNEURON column recorders index rows by step count."""
    base, _ = network
    cfg = json.loads((base / "config.simulation.json").read_text())
    cfg["run"]["tstop"], cfg["run"]["nsteps_block"] = 15.0, 3
    path = base / "config.short_blocks.json"
    path.write_text(json.dumps(cfg))
    outs = {}
    for label, extra in (("neuron", []), ("coreneuron", ["--coreneuron"])):
        outs[label] = tmp_path / label
        run_sonatarun("run", str(path), "--output-dir", str(outs[label]), *extra, cwd=base)
    for name in REPORTS:
        e, a = _report(outs["neuron"] / name), _report(outs["coreneuron"] / name)
        assert sorted(e) == sorted(a) and all(e[k].shape == a[k].shape for k in e), name
        worst = max(float(np.max(np.abs(e[k] - a[k]))) for k in e)
        assert worst <= 1e-6, f"{name}: max |diff| {worst}"
