"""The extracellular potential (ECP) report against BMTK BioNet's ``extracellular`` module.

* BMTK's placement rules for positions and rotation angles, column by column;
* the line-source transfer matrix against BMTK's own ``RecXElectrode`` (every
  ``minimum_distance`` mode);
* a small network of detailed cells with real reconstructions, non-zero positions and
  rotations about all axes (and nodes whose columns are missing): sonatarun's ``ecp.h5``
  and per-cell contributions equal BMTK's, on 1 rank and under ``mpiexec -n 2``;
* checkpoint and resume rewrite the ECP files exactly; bad report entries are refused.

Tolerance of the BMTK comparison: 1e-6 of each channel's peak. What separates the two runs
is float summation order (~1e-13) and the ``extracellular`` mechanism BMTK inserts into every
cell when an ECP report is configured (sonatarun does not; it perturbs the potentials by
~4e-10 of their peak on this network). A wrong geometry, rotation or sample step shows up
as differences of 1e-2 to 1 of the peak.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from tests.bio.ecp_network import ELECTRODES, build
from tests.bmtk_support import read_spikes
from tests.conftest import ROOT, need, run_sonatarun

TSTOP = 40.0
REL_TOL = 1e-6


# -- positions and rotations: BMTK's column rules ------------------------------------------

def test_positions_follow_bmtk_column_rules():
    from sonatarun.circuit.positions import positions, rotation_angles

    nan = np.nan
    table = pd.DataFrame({
        "x": [1.0, 2.0, 3.0, 4.0, nan],
        "y": [10.0, 20.0, nan, nan, 50.0],
        "z": [100.0, nan, nan, 400.0, 500.0],
        "rotation_angle_yaxis": [0.5, nan, 1.5, nan, nan],
    })
    np.testing.assert_array_equal(positions(table), [
        [1, 10, 100],  # x, y, z
        [2, 20, 0],    # x, y: z = 0
        [3, 0, 0],     # x alone
        [4, 0, 0],     # x and z without y: BMTK reads x only
        [0, 0, 0],     # no x: the origin, whatever y and z say
    ])
    np.testing.assert_array_equal(rotation_angles(table), [[0, 0.5, 0], [0, 0, 0], [0, 1.5, 0], [0, 0, 0],
                                                           [0, 0, 0]])
    assert positions(pd.DataFrame({"model_type": ["biophysical"]})).tolist() == [[0.0, 0.0, 0.0]]


# -- the transfer matrix against BMTK's RecXElectrode ------------------------------------------

_TRANSFER_SCRIPT = r"""
import json, sys
import numpy as np
from types import SimpleNamespace
from bmtk.simulator.bionet.modules.ecp import RecXElectrode
from sonatarun.engines.neuron.ecp import transfer_matrix
from sonatarun.engines.neuron.geometry import SegmentGeometry
csv = sys.argv[1]
rng = np.random.default_rng(5)
n = 400
p0 = rng.uniform(-200, 200, (3, n))
p1 = p0 + rng.normal(0, 8, (3, n))
d = rng.uniform(0.3, 4.0, n)
geo = SegmentGeometry(p0, p1, (p0 + p1) / 2, d, np.zeros(3))
electrodes = np.loadtxt(csv, skiprows=1)[:, 1:]
worst = {}
for md in (None, 5.0, "auto"):
    rel = RecXElectrode(csv, md)
    rel.calc_transfer_resistance(0, SimpleNamespace(p0=p0, p1=p1, d=d))
    ref = rel.get_transfer_resistance(0)
    got = transfer_matrix(electrodes, geo, md)
    worst[str(md)] = [list(ref.shape), list(got.shape), float(np.max(np.abs(got - ref) / np.abs(ref)))]
print(json.dumps(worst))
"""


@pytest.mark.bmtk
def test_transfer_matrix_equals_bmtk(tmp_path):
    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) for the reference")
    from tests.bio.ecp_network import write_electrodes

    # electrodes among the segments too, where minimum_distance matters
    xyz = np.concatenate([ELECTRODES, np.random.default_rng(1).uniform(-150, 150, (20, 3))])
    csv = write_electrodes(tmp_path / "electrodes.csv", xyz)
    proc = subprocess.run([sys.executable, "-c", _TRANSFER_SCRIPT, str(csv)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "NEURON_MODULE_OPTIONS": "-nogui"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    worst = json.loads(proc.stdout.strip().splitlines()[-1])
    for md, (ref_shape, shape, rel) in worst.items():
        assert ref_shape == shape == [len(xyz), 400], md
        assert rel < 1e-12, f"minimum_distance={md}: max relative difference {rel}"


# -- the network, BMTK's reference and sonatarun's runs ---------------------------------------

@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) builds the test network")
    base = tmp_path_factory.mktemp("ecp_network")
    return build(base, tstop=TSTOP, nsteps_block=400, minimum_distance="auto")


@pytest.fixture(scope="module")
def reference(network) -> Path:
    from tests.bio.test_parity_bio import run_bmtk_bio

    out = run_bmtk_bio(network, network.parent)
    assert len(read_spikes(out / "spikes.h5").get("bio", ([],))[0]) >= 3, "BMTK reference too quiet"
    return out


def _ecp(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {"data": f["ecp/data"][()], "time": f["ecp/time"][()], "channel_id": f["ecp/channel_id"][()],
                "units": f["ecp/data"].attrs["units"], "time_units": f["ecp/time"].attrs["units"],
                "magic": f.attrs.get("magic"), "version": f.attrs.get("version")}


def _contributions(directory: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(directory.glob("*.h5")):
        with h5py.File(p, "r") as f:
            out[p.name] = f["ecp/data"][()]
    return out


def _assert_close(expected: np.ndarray, actual: np.ndarray, what: str) -> None:
    assert expected.shape == actual.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    peak = np.abs(expected).max(axis=0)
    assert np.all(peak > 0), f"{what}: a channel is flat in the reference"
    rel = np.abs(actual - expected).max(axis=0) / peak
    assert np.all(rel < REL_TOL), f"{what}: max difference / channel peak = {rel.max():.3g}"


@pytest.mark.bmtk
@pytest.mark.parametrize("np_, extra", [(None, ()), (2, ()), (None, ("--threads", "2"))],
                         ids=["1rank", "mpi2", "threads2"])
def test_ecp_matches_bmtk(network, reference, tmp_path, np_, extra):
    out = tmp_path / "out"
    proc = run_sonatarun("run", str(network), "--output-dir", str(out), *extra, np=np_, cwd=network.parent)
    assert "potentials summed natively every step" in proc.stdout
    e, a = _ecp(reference / "ecp.h5"), _ecp(out / "ecp.h5")
    n_steps = int(round(TSTOP / 0.025))
    assert a["data"].shape == e["data"].shape == (n_steps, len(ELECTRODES))
    assert a["data"].dtype == e["data"].dtype == np.float64
    np.testing.assert_array_equal(a["time"], e["time"])
    np.testing.assert_array_equal(a["channel_id"], e["channel_id"])
    assert (a["units"], a["time_units"], int(a["magic"]), list(a["version"])) == \
        (e["units"], e["time_units"], int(e["magic"]), list(e["version"]))
    _assert_close(e["data"], a["data"], "ecp.h5")
    ec, ac = _contributions(reference / "ecp_contributions"), _contributions(out / "ecp_contributions")
    assert sorted(ac) == sorted(ec) == [f"{g}.h5" for g in range(5)]
    for name in ec:
        _assert_close(ec[name], ac[name], f"ecp_contributions/{name}")
    (e_ids, e_ts), (a_ids, a_ts) = read_spikes(reference / "spikes.h5")["bio"], read_spikes(out / "spikes.h5")["bio"]
    assert a_ids.tolist() == e_ids.tolist()
    np.testing.assert_allclose(a_ts, e_ts, rtol=0, atol=1e-6)


@pytest.mark.bmtk
def test_many_electrodes_take_the_buffered_path(network, reference, tmp_path):
    """More electrodes x cells than segments: currents are buffered and multiplied at block ends
    (the other native path); the first channels still equal BMTK's."""
    from tests.bio.ecp_network import write_electrodes

    extra = np.random.default_rng(3).uniform(-300, 300, (200, 3))
    write_electrodes(network.parent / f"many_{tmp_path.name}.csv", np.concatenate([ELECTRODES, extra]))
    cfg = json.loads(network.read_text())
    cfg["reports"]["ecp"]["electrode_positions"] = f"$BASE_DIR/many_{tmp_path.name}.csv"
    cfg["reports"]["ecp"].pop("contributions_dir")
    path = network.parent / f"many_{tmp_path.name}.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = run_sonatarun("run", str(path), "--output-dir", str(out), cwd=network.parent)
    assert "207 electrodes on this rank; membrane currents buffered" in proc.stdout
    data = _ecp(out / "ecp.h5")["data"]
    assert data.shape[1] == 207 and np.isfinite(data).all()
    _assert_close(_ecp(reference / "ecp.h5")["data"], data[:, :len(ELECTRODES)], "ecp.h5 (buffered path)")


@pytest.mark.bmtk
def test_ecp_resume_rewrites_the_files_exactly(network, tmp_path):
    ref, ck = tmp_path / "ref", tmp_path / "ck"
    run_sonatarun("run", str(network), "--output-dir", str(ref), cwd=network.parent)
    run_sonatarun("run", str(network), "--output-dir", str(ck), "--checkpoint-interval", "10", np=2,
                  cwd=network.parent)
    # what a run killed after its last checkpoint (t = 30 ms) might have left behind
    for path in (ck / "ecp.h5", ck / "ecp_contributions" / "2.h5"):
        with h5py.File(path, "a") as f:
            f["ecp/data"][-50:] = 12345.0
    run_sonatarun("run", str(network), "--output-dir", str(ck), "--resume", cwd=network.parent)
    assert "resumed from the checkpoint at t = 30 ms (written by 2 rank(s), now 1)" in (ck / "log.txt").read_text()
    _assert_close(_ecp(ref / "ecp.h5")["data"], _ecp(ck / "ecp.h5")["data"], "resumed ecp.h5")
    rc, kc = _contributions(ref / "ecp_contributions"), _contributions(ck / "ecp_contributions")
    assert sorted(rc) == sorted(kc)
    for name in rc:
        _assert_close(rc[name], kc[name], f"resumed ecp_contributions/{name}")


@pytest.mark.bmtk
@pytest.mark.parametrize("change, key", [
    ({"electrode_positions": None}, "reports.ecp.electrode_positions"),
    ({"electrode_positions": "$BASE_DIR/missing.csv"}, "reports.ecp.electrode_positions"),
    ({"file_name_nwb": "ecp.nwb"}, "reports.ecp.file_name_nwb"),
    ({"dt": 0.1}, "reports.ecp.dt"),
])
def test_bad_ecp_report_is_refused(network, tmp_path, change, key):
    cfg = json.loads(network.read_text())
    for k, v in change.items():
        if v is None:
            cfg["reports"]["ecp"].pop(k)
        else:
            cfg["reports"]["ecp"][k] = v
    bad = network.parent / f"bad_{tmp_path.name}.json"
    bad.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = run_sonatarun("run", str(bad), "--output-dir", str(out), cwd=network.parent, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"key '{key}'" in proc.stderr + proc.stdout
    assert not out.exists()


@pytest.mark.bmtk
def test_electrode_on_a_segment_axis_is_named(network, tmp_path):
    """Electrode 2 sits at the origin, on the soma of the node with no position columns: without
    minimum_distance the line-source potential there is infinite (in BMTK too); the run says so."""
    cfg = json.loads(network.read_text())
    cfg["reports"]["ecp"].pop("minimum_distance")
    cfg["reports"]["ecp"].pop("contributions_dir")
    path = network.parent / f"axis_{tmp_path.name}.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = run_sonatarun("run", str(path), "--output-dir", str(out), cwd=network.parent)
    assert "extracellular report 'ecp': electrode(s) [2] lie on the axis of a segment of cell bio:3" in proc.stdout
    assert "set minimum_distance" in proc.stdout
    data = _ecp(out / "ecp.h5")["data"]
    finite = np.isfinite(data).all(axis=0)
    assert finite.tolist() == [i != 2 for i in range(len(ELECTRODES))]
