"""NEST on several MPI ranks, with the MPI build of NEST that .ci/setup-nest-mpi.sh puts in the
parallel venv (Debian's MPICH, parallel h5py): NEST gives the same results for the same number of
virtual processes however they are spread over ranks, so 2 ranks x 1 thread must reproduce
1 rank x 2 threads exactly, each rank recording and writing only the cells NEST placed on it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import need
from tests.io.helpers import MPI_VENV

pytestmark = pytest.mark.mpi


def _mpi_nest_env() -> tuple[Path, str, dict]:
    py = MPI_VENV / "bin" / "python"
    launcher = shutil.which("mpiexec.mpich")
    need(py.exists() and launcher is not None, f"the parallel venv {MPI_VENV} and mpiexec.mpich "
                                               "(.ci/setup-parallel-h5py.sh)")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MPI_LIB_NRN_PATH", None)  # the main venv's MPI (mpich wheel) must not shadow Debian's
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(sys.executable).parent != Path(p))
    probe = subprocess.run([str(py), "-c", "from sonatarun.engines.nest.kernel import nest_has_mpi as f; "
                            "print(f())"], env=env, capture_output=True, text=True, timeout=60)
    need(probe.stdout.strip() == "True", f"NEST built with MPI in {MPI_VENV} (.ci/setup-nest-mpi.sh)")
    return py, str(launcher), env


def _run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _spikes(out: Path) -> np.ndarray:
    with h5py.File(out / "spikes.h5", "r") as f:
        rows = [(pop, int(n), float(t)) for pop in f["spikes"]
                for n, t in zip(f["spikes"][pop]["node_ids"][()], f["spikes"][pop]["timestamps"][()])]
    return np.array(sorted(rows), dtype=object)


def _report(out: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(out.glob("*.h5")):
        if path.name == "spikes.h5":
            continue
        with h5py.File(path, "r") as f:
            for pop in f["report"]:
                g = f["report"][pop]
                found[f"{path.name}/{pop}"] = (g["mapping/node_ids"][()], g["data"][()])
    return found


def _per_node_drive(ex: Path) -> np.ndarray:
    """Give the thalamic cells a per-node bias current (an h5 dynamics_params column): each rank must
    set it on the cells NEST placed there, each cell its own value. Returns the currents (pA)."""
    with h5py.File(ex / "network" / "thal_nodes.h5", "a") as f:
        n = f["nodes/thal/node_id"].shape[0]
        drive = np.linspace(0.0, 600.0, n)  # iaf_psc_delta's defaults fire alone above 375 pA
        f["nodes/thal/0"].create_group("dynamics_params").create_dataset("I_e", data=drive)
    return drive


def test_two_ranks_give_the_spikes_and_reports_of_two_threads(tmp_copy):
    py, launcher, env = _mpi_nest_env()
    ex = tmp_copy("point_nest")
    drive = _per_node_drive(ex)
    cfg = str(ex / "config.simulation.json")
    cli = [str(py), "-m", "sonatarun.cli.main", "run", cfg]
    _run([*cli, "--output-dir", str(ex / "out_threads"), "--threads", "2"], env, ex)
    proc = _run([launcher, "-n", "2", *cli, "--output-dir", str(ex / "out_ranks"), "--threads", "1"], env, ex)
    assert "2 rank(s)" in proc.stdout + proc.stderr

    by_threads, by_ranks = _spikes(ex / "out_threads"), _spikes(ex / "out_ranks")
    assert len(by_threads) > 50  # the example fires: the comparison below compares something
    assert len(by_ranks) == len(by_threads) and (by_ranks == by_threads).all()
    # each rank streaming its own edges in chunks (EdgeChunk: read while NEST connects) changes nothing
    streamed = dict(env, SONATARUN_EDGE_CHUNK="32")
    _run([launcher, "-n", "2", *cli, "--output-dir", str(ex / "out_streamed"), "--threads", "1"], streamed, ex)
    assert json.loads((ex / "out_streamed" / "sonatarun.json").read_text())["engine_stats"]["edge_chunks"] > 5
    by_streamed = _spikes(ex / "out_streamed")
    assert len(by_streamed) == len(by_ranks) and (by_streamed == by_ranks).all()
    # the per-node currents took effect: thalamic cells fire more the stronger their own drive
    thal = np.bincount([n for pop, n, _ in by_ranks if pop == "thal"], minlength=len(drive))
    assert thal[drive > 450].min() > thal[drive < 300].max()
    # and the everyday install (the nest-simulator wheel, one process, 2 threads) agrees as well
    wheel = dict(os.environ, PYTHONUNBUFFERED="1")
    _run([sys.executable, "-m", "sonatarun.cli.main", "run", cfg, "--output-dir", str(ex / "out_wheel"),
          "--threads", "2"], wheel, ex)
    by_wheel = _spikes(ex / "out_wheel")
    assert len(by_wheel) == len(by_ranks) and (by_wheel == by_ranks).all()

    rep_threads, rep_ranks = _report(ex / "out_threads"), _report(ex / "out_ranks")
    assert rep_threads and rep_threads.keys() == rep_ranks.keys()
    for key, (ids, data) in rep_threads.items():
        ids_r, data_r = rep_ranks[key]
        assert list(ids) == list(ids_r), key
        assert data.shape == data_r.shape and data.shape[0] > 1000, key
        np.testing.assert_array_equal(data, data_r, err_msg=key)


def test_two_ranks_resume_by_replay_exactly(tmp_copy):
    """A checkpointed 2-rank NEST run whose files got a killed run's leftovers after the checkpoint
    resumes (replaying to the checkpoint on both ranks) to outputs equal to an uninterrupted run."""
    import json

    from tests.checkpoint.test_resume_reports import datasets

    py, launcher, env = _mpi_nest_env()
    ex = tmp_copy("point_nest")
    cfg_path = ex / "config.simulation.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["run"]["nsteps_block"] = 1000  # 100 ms blocks
    cfg_path.write_text(json.dumps(cfg, indent=2))
    run = [launcher, "-n", "2", str(py), "-m", "sonatarun.cli.main", "run", str(cfg_path), "--threads", "1"]
    _run([*run, "--output-dir", str(ex / "ref")], env, ex)
    _run([*run, "--output-dir", str(ex / "ck"), "--checkpoint-interval", "200"], env, ex)
    with h5py.File(ex / "ck" / "spikes.h5", "a") as f:  # what a kill after the checkpoint leaves behind
        f["spikes/cortex/timestamps"][-5:] = -1.0
    out = _run([*run, "--output-dir", str(ex / "ck"), "--resume"], env, ex)
    assert "replaying 0..400 ms" in out.stdout and "written by 2 rank(s), now 2" in out.stdout
    for name in ["spikes.h5", "membrane_potential.h5"]:
        ref, got = datasets(ex / "ref" / name), datasets(ex / "ck" / name)
        assert ref.keys() == got.keys() and len(ref), name
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{name}:{key}")


def test_weight_recorder_report_is_refused_on_two_ranks_before_any_write(tmp_copy):
    """Its rows follow NEST's per-rank connection order: refused with exit 2 and a fix, nothing written."""
    from tests.nest.test_parity_bmtk import add_weight_recorder_report

    py, launcher, env = _mpi_nest_env()
    ex = tmp_copy("point_nest")
    config = add_weight_recorder_report(ex)
    out = ex / "out_ranks"
    proc = subprocess.run([launcher, "-n", "2", str(py), "-m", "sonatarun.cli.main", "run", str(config),
                           "--output-dir", str(out), "--threads", "1"], env=env, cwd=ex, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "weight_recorder" in proc.stderr and "--threads" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
