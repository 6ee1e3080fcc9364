"""Exact resume: kill -9 at random moments, SIGUSR1 -> exit 75, rank-count changes, the run lock.

The network is the ring example driven by Poisson inputs that last the whole run, so
every block has spikes and any divergence after a restore shows.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import run_sonatarun, sonatarun_cmd

TSTOP = 8000.0


@pytest.fixture
def long_ring(tmp_copy):
    d = tmp_copy("ring_intfire")
    rng = np.random.default_rng(7)
    ids, times = [], []
    for node in range(12):
        t = np.cumsum(rng.exponential(1000.0 / 40.0, size=int(TSTOP / 1000 * 40 * 1.5)))
        t = t[t < TSTOP]
        ids.append(np.full(len(t), node))
        times.append(t)
    ids, times = np.concatenate(ids), np.concatenate(times)
    with h5py.File(d / "inputs" / "long_input.h5", "w") as f:
        g = f.create_group("spikes/input")
        g["node_ids"] = ids.astype(np.uint64)
        g["timestamps"] = times
    cfg = json.loads((d / "config.simulation.json").read_text())
    cfg["run"].update(tstop=TSTOP, nsteps_block=2500)  # 250 ms blocks
    cfg["inputs"]["input_spikes"]["input_file"] = "$INPUT_DIR/long_input.h5"
    (d / "config.simulation.json").write_text(json.dumps(cfg, indent=2))
    return d


def spikes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f["spikes/ring"]
        ids, ts = g["node_ids"][()], g["timestamps"][()]
    order = np.lexsort((ids, ts))
    return ids[order], ts[order]


def assert_same_spikes(a: Path, b: Path) -> None:
    ia, ta = spikes(a)
    ib, tb = spikes(b)
    assert len(ta) == len(tb), (len(ta), len(tb))
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(ta, tb, rtol=0, atol=1e-9)


@pytest.fixture
def reference(long_ring):
    run_sonatarun("run", str(long_ring / "config.simulation.json"), "--output-dir", str(long_ring / "ref"),
                  cwd=long_ring)
    n = len(spikes(long_ring / "ref/spikes.h5")[0])
    assert n > 1000
    return long_ring / "ref/spikes.h5"


def start(cfg: Path, out: Path, *extra: str, np_: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(sonatarun_cmd("run", str(cfg), "--output-dir", str(out), *extra, np=np_),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(out: Path, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = out / "log.txt"
        if log.exists() and what in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"'{what}' never appeared in {out / 'log.txt'}")


@pytest.mark.parametrize("ranks,resume_ranks", [(1, 1), (2, 2), (1, 2)])
def test_kill9_then_resume_equals_uninterrupted(long_ring, reference, ranks, resume_ranks):
    cfg = long_ring / "config.simulation.json"
    rnd = random.Random(ranks * 10 + resume_ranks)
    for trial in range(2):
        out = long_ring / f"killed-{ranks}-{resume_ranks}-{trial}"
        proc = start(cfg, out, "--checkpoint-interval", "500", np_=ranks)
        wait_for(out, "checkpoint at t = 500 ms")
        time.sleep(rnd.uniform(0.0, 1.5))  # a block boundary or the middle of a block: whatever it hits
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        run_sonatarun("run", str(cfg), "--output-dir", str(out), "--resume", np=resume_ranks, cwd=long_ring)
        assert_same_spikes(reference, out / "spikes.h5")
        assert "resumed from the checkpoint" in (out / "log.txt").read_text()


@pytest.mark.parametrize("ranks", [1, 2])
def test_sigusr1_checkpoints_exits_75_and_resumes(long_ring, reference, ranks):
    cfg = long_ring / "config.simulation.json"
    out = long_ring / f"signalled-{ranks}"
    proc = start(cfg, out, np_=ranks)
    wait_for(out, "t = 1000 / 8000 ms")
    os.killpg(proc.pid, signal.SIGUSR1)  # as Slurm's --signal does to every task
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, output
    assert "stopped by SIGUSR1" in output and "--resume" in output
    latest = json.loads((out / "checkpoint/latest.json").read_text())
    assert 1000.0 <= latest["t"] < TSTOP
    run_sonatarun("run", str(cfg), "--output-dir", str(out), "--resume", np=ranks, cwd=long_ring)
    assert_same_spikes(reference, out / "spikes.h5")


def test_live_run_holds_the_output_dir_and_a_killed_one_does_not(long_ring):
    cfg = long_ring / "config.simulation.json"
    out = long_ring / "locked"
    proc = start(cfg, out, "--checkpoint-interval", "250")
    wait_for(out, "checkpoint at t = 250 ms")
    second = run_sonatarun("run", str(cfg), "--output-dir", str(out), check=False)
    assert second.returncode == 2
    assert "in use by a running simulation" in second.stderr and f"pid {proc.pid}" in second.stderr
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    third = run_sonatarun("run", str(cfg), "--output-dir", str(out), "--resume")
    assert "spikes" in third.stdout


def test_resume_without_checkpoint_is_a_clear_error(long_ring):
    out = long_ring / "fresh"
    proc = run_sonatarun("run", str(long_ring / "config.simulation.json"), "--output-dir", str(out), "--resume",
                         check=False)
    assert proc.returncode == 2 and "no complete checkpoint to resume from" in proc.stderr
