"""Resume with membrane and synapse reports: the rewritten tail equals the uninterrupted files."""
from __future__ import annotations

import json

import h5py
import numpy as np

from tests.conftest import run_sonatarun


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_resume_rewrites_reports_exactly(tmp_copy):
    d = tmp_copy("bio_network")
    cfg_path = d / "config.simulation.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["run"].update(tstop=150.0, nsteps_block=2000)  # 50 ms blocks
    cfg_path.write_text(json.dumps(cfg, indent=2))
    run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ref"), cwd=d)
    run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ck"), "--checkpoint-interval", "50", np=2, cwd=d)
    # Resume from the last checkpoint (t = 100 ms), on another rank count: the last block is
    # computed again and written over what the first run wrote.
    with h5py.File(d / "ck" / "v_soma.h5", "a") as f:
        data = f["report/bio/data"]
        data[-10:] = 12345.0  # what a killed run might have left after the checkpoint
    run_sonatarun("run", str(cfg_path), "--output-dir", str(d / "ck"), "--resume", cwd=d)
    reports = [c["file_name"] for c in cfg["reports"].values()]
    assert len(reports) == 3
    for name in ["spikes.h5", *reports]:
        ref, got = datasets(d / "ref" / name), datasets(d / "ck" / name)
        assert ref.keys() == got.keys(), name
        for key in ref:
            if ref[key].dtype.kind == "f":
                np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-6, err_msg=f"{name}:{key}")
            else:
                np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{name}:{key}")
    assert "resumed from the checkpoint at t = 100 ms (written by 2 rank(s), now 1)" in (d / "ck/log.txt").read_text()
