"""NEST resume: NEST cannot save its state, so sonatarun replays up to the checkpoint.

The replay is exact for the same seed, threads and ranks; anything else is refused.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from tests.checkpoint.test_resume_reports import datasets
from tests.conftest import run_sonatarun


def test_nest_resume_by_replay_is_exact_and_refuses_other_threads(tmp_copy):
    d = tmp_copy("point_nest")
    cfg_path = d / "config.simulation.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["run"]["nsteps_block"] = 1000  # 100 ms blocks
    cfg_path.write_text(json.dumps(cfg, indent=2))
    run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ref"), cwd=d)
    run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ck"), "--checkpoint-interval", "200", cwd=d)
    with h5py.File(d / "ck" / "spikes.h5", "a") as f:  # a killed run's leftovers after the checkpoint
        ts = f["spikes/cortex/timestamps"]
        ts[-5:] = -1.0
    refused = run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ck"), "--resume", "--threads", "2",
                            cwd=d, check=False)
    assert refused.returncode == 2 and "written with threads = 1, this run has 2" in refused.stderr
    out = run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ck"), "--resume", cwd=d)
    assert "replaying 0..400 ms" in out.stdout
    reports = [c.get("file_name", f"{name}.h5") for name, c in cfg["reports"].items()]
    for name in ["spikes.h5", *reports]:
        ref, got = datasets(d / "ref" / name), datasets(d / "ck" / name)
        assert ref.keys() == got.keys(), name
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{name}:{key}")
