"""End to end on the flagship example: CLI and Python API, 1 and 2 ranks, outputs as BMTK writes them."""
from __future__ import annotations

import h5py
import numpy as np
import pandas as pd

from sonatarun import __version__
from tests.conftest import run_sonatarun


def read_spikes(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["magic"] == 0x0A7A
        return {pop: (g["node_ids"][()], g["timestamps"][()], sorting(g)) for pop, g in f["spikes"].items()}


def sorting(group) -> str:
    """The `sorting` attribute as a name, whether written as a string (BMTK) or an enum (libsonata)."""
    value = group.attrs["sorting"]
    if isinstance(value, (bytes, str)):
        return value.decode() if isinstance(value, bytes) else value
    mapping = h5py.check_enum_dtype(group.attrs.get_id("sorting").dtype) or {"none": 0, "by_id": 1, "by_time": 2}
    return {v: k for k, v in mapping.items()}[int(value)]


def test_version_and_validate(tmp_copy):
    assert run_sonatarun("--version").stdout.strip() == f"sonatarun {__version__}"
    d = tmp_copy("ring_intfire")
    out = run_sonatarun("validate", str(d / "config.simulation.json")).stdout
    assert "engine      NEURON" in out
    assert "ring                        40 nodes   point_process x40" in out
    assert any(l.split() == ["input_to_ring", "36", "edges", "input", "->", "ring"] for l in out.splitlines())
    assert "input_spikes (spikes/sonata)" in out and "problems    none" in out
    assert not (d / "output").exists()  # validate writes nothing


def test_run_one_and_two_ranks_give_the_same_spikes(tmp_copy):
    d = tmp_copy("ring_intfire")
    cfg = str(d / "config.simulation.json")
    one = run_sonatarun("run", cfg, "--output-dir", str(d / "out1"), cwd=d)
    two = run_sonatarun("run", cfg, "--output-dir", str(d / "out2"), np=2, cwd=d)
    s1, s2 = read_spikes(d / "out1/spikes.h5"), read_spikes(d / "out2/spikes.h5")
    assert list(s1) == ["ring"]  # virtual inputs are not reported, as in BMTK
    ids, ts, sorting = s1["ring"]
    assert sorting == "by_time" and np.all(np.diff(ts) >= 0) and len(ts) > 100
    np.testing.assert_array_equal(s2["ring"][0], ids)
    np.testing.assert_array_equal(s2["ring"][1], ts)
    csv = pd.read_csv(d / "out2/spikes.csv", sep=" ")
    assert list(csv.columns) == ["timestamps", "population", "node_ids"]
    np.testing.assert_allclose(csv["timestamps"], ts)
    log = (d / "out2/log.txt").read_text()
    assert "2 rank(s)" in log and "t = 1000 / 1000 ms (100%)" in log and "~" in log
    # one progress line per block (nsteps_block 2000 x dt 0.1 = 200 ms -> 5 blocks), on rank 0 only
    assert two.stdout.count("] t = ") == 5 and one.stdout.count("] t = ") == 5
    summary = run_sonatarun("summary", str(d / "out2")).stdout
    row = next(l.split() for l in summary.splitlines() if l.split()[:1] == ["ring"])
    assert row[:3] == ["ring", str(len(ids)), "40"] and "NEURON on 2 rank(s)" in summary


def test_python_api(tmp_copy, monkeypatch):
    import sonatarun

    d = tmp_copy("ring_intfire")
    monkeypatch.chdir(d)
    sim = sonatarun.Simulation.from_config(d / "config.simulation.json", output_dir=d / "api")
    assert sim.engine_name == "neuron"
    result = sim.run()
    assert result.n_spikes == len(read_spikes(d / "api/spikes.h5")["ring"][0]) > 100


def test_spikes_open_in_bmtk_and_libsonata(tmp_copy):
    d = tmp_copy("ring_intfire")
    run_sonatarun("run", str(d / "config.simulation.json"), "--output-dir", str(d / "out"), np=2, cwd=d)
    ids, ts, _ = read_spikes(d / "out/spikes.h5")[("ring")]
    from bmtk.utils.reports.spike_trains import SpikeTrains

    frame = SpikeTrains.load(str(d / "out/spikes.h5")).to_dataframe()
    np.testing.assert_allclose(np.sort(frame["timestamps"].to_numpy()), np.sort(ts))
    import libsonata

    pop = libsonata.SpikeReader(str(d / "out/spikes.h5"))["ring"]
    got = np.array(pop.get())
    assert pop.sorting == "by_time" and len(got) == len(ts)
    np.testing.assert_allclose(got[:, 1], ts)
