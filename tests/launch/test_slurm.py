"""On a real Slurm (started by .ci/setup-slurm.sh): submit runs under srun, and a job signalled
mid-run checkpoints, requeues itself, resumes and ends with the uninterrupted run's spikes."""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, need, run_sonatarun
from tests.launch.helpers import long_ring, read_spikes

pytestmark = pytest.mark.slurm
RING = EXAMPLES / "ring_intfire"
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED"}


def slurm_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture
def slurm():
    need(slurm_up(), "a running Slurm with an idle node (bash .ci/setup-slurm.sh)")
    jobs: list[str] = []
    yield jobs
    for j in jobs:  # a failed test leaves no job behind
        subprocess.run(["scancel", j], capture_output=True)


def job_info(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=20).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def steps_alive(job: str) -> bool:
    """Whether a slurmstepd of this job (its batch step or a job step) still runs here."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return f"slurmstepd: [{job}." in ps


def wait_job(job: str, timeout: float = 300, release_requeued: bool = False) -> dict[str, str]:
    """Poll until the job ends. A requeued job waits ~2 minutes before it is eligible again (Slurm's
    fixed requeue delay, which lets the old incarnation's step daemons finish); with release_requeued
    the test makes it eligible as soon as they are gone, instead. Releasing it earlier makes the new
    incarnation's steps collide with the old ones (same step ids: PMI2 and batch-step failures)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = job_info(job)
        state = info.get("JobState", "")
        if state in FINAL:
            return info
        if release_requeued and state == "PENDING" and info.get("Reason") == "BeginTime" and not steps_alive(job):
            time.sleep(1)
            if not steps_alive(job):
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not finish in {timeout} s: {job_info(job)}")


def submit(config: Path, out: Path, jobs: list[str], *extra: str) -> tuple[str, Path]:
    proc = run_sonatarun("submit", str(config), "--nodes", "1", "--time", "00:05:00", "--ranks-per-node", "2",
                         *extra, "--", "--output-dir", str(out), cwd=config.parent)
    m = re.search(r"submitted slurm job (\d+): script (.+), log (.+)$", proc.stdout.strip())
    assert m, proc.stdout
    jobs.append(m.group(1))
    return m.group(1), Path(m.group(3).replace("%j", m.group(1)))


def test_submit_runs_under_srun_with_the_local_spikes(slurm, tmp_path):
    config = RING / "config.simulation.json"
    job, log = submit(config, tmp_path / "slurm", slurm)
    info = wait_job(job)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text
    assert "srun --mpi=pmi2 --ntasks=2" in text and "2 rank(s)" in text
    run_sonatarun("run", str(config), "--output-dir", str(tmp_path / "local"))
    assert read_spikes(tmp_path / "slurm") == read_spikes(tmp_path / "local")
    assert len(read_spikes(tmp_path / "local")) > 100


def test_preempted_job_checkpoints_requeues_and_finishes(slurm, tmp_path):
    tstop = 30000
    config = long_ring(tmp_path / "ring", tstop)
    job, log = submit(config, tmp_path / "pre", slurm)
    # Wait until the run is simulating, then send what Slurm sends before a walltime (--signal=B:USR1).
    end = time.monotonic() + 120
    while time.monotonic() < end and not re.search(rf"t = [1-9]\d{{3,}} / {tstop} ms", log.read_text()
                                                   if log.exists() else ""):
        assert job_info(job).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), log.read_text()
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    info = wait_job(job, release_requeued=True)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text
    assert info["Restarts"] == "1", text
    stop = re.search(r"stopped by SIGUSR1 at t = ([\d.]+) ms", text)
    assert stop and 0 < float(stop.group(1)) < tstop, text  # it really stopped mid-run
    assert "exit 75" in text and "resuming from the last checkpoint" in text and "--resume" in text
    assert f"resumed from the checkpoint at t = {stop.group(1)}" in text  # not a rerun from zero
    run_sonatarun("run", str(config), "--output-dir", str(tmp_path / "whole"))
    whole = read_spikes(tmp_path / "whole")
    assert len(whole) > 2500
    assert read_spikes(tmp_path / "pre") == whole


def test_submit_runs_nest_on_two_ranks_with_an_mpi_nest(slurm, tmp_path):
    """With a NEST built with MPI (the parallel venv), `submit --ranks-per-node 2 --threads 1` runs
    the point-neuron example on 2 Slurm tasks (srun, PMI2), with the spikes of one process on 2
    threads (the same NEST virtual processes)."""
    from tests.nest.test_mpi_nest import _mpi_nest_env

    py, _, env = _mpi_nest_env()
    ex = tmp_path / "point_nest"
    shutil.copytree(EXAMPLES / "point_nest", ex, ignore=shutil.ignore_patterns("output*"))
    config = ex / "config.simulation.json"
    proc = subprocess.run([str(py), "-m", "sonatarun.cli.main", "submit", str(config), "--nodes", "1", "--time",
                           "00:05:00", "--ranks-per-node", "2", "--threads", "1", "--", "--output-dir",
                           str(ex / "slurm")], cwd=ex, env=env, capture_output=True, text=True, timeout=300)
    m = re.search(r"submitted slurm job (\d+): script (.+), log (.+)$", proc.stdout.strip())
    assert proc.returncode == 0 and m, proc.stdout + proc.stderr
    slurm.append(m.group(1))
    info = wait_job(m.group(1))
    text = Path(m.group(3).replace("%j", m.group(1))).read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text
    assert "srun --mpi=pmi2 --ntasks=2" in text and "2 rank(s)" in text and "placed by nest on 2 ranks" in text
    run_sonatarun("run", str(config), "--output-dir", str(ex / "local"), "--threads", "2")
    local = read_spikes(ex / "local")
    assert len(local) > 100 and read_spikes(ex / "slurm") == local
