"""`doctor` reports the real engines; `submit --dry-run` writes a runnable script for each scheduler."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import EXAMPLES, run_sonatarun

RING = EXAMPLES / "ring_intfire" / "config.simulation.json"


def test_doctor_reports_engines_and_capabilities():
    out = run_sonatarun("doctor", "--json", check=False)
    report = json.loads(out.stdout)
    assert out.returncode == (0 if report["ok"] else 1)
    probes = report["probes"]
    assert probes["neuron"]["found"] and probes["neuron"]["info"]["version"].startswith("9.")
    assert probes["nest"]["found"] and probes["nest"]["info"]["threads"] is True
    assert isinstance(probes["nest"]["info"]["mpi"], bool)
    assert "MPICH" in probes["mpi4py"]["info"]["library"] or "Open MPI" in probes["mpi4py"]["info"]["library"]
    assert isinstance(probes["h5py"]["info"]["parallel"], bool)
    assert report["topology"]["usable_cores"] >= 1
    text = run_sonatarun("doctor", check=False).stdout
    assert "NEST MPI" in text and "topology" in text


@pytest.mark.parametrize("scheduler,suffix", [("pbs", "pbs"), ("lsf", "bsub"), ("sge", "qsub"), ("slurm", "sbatch")])
def test_submit_dry_run_writes_script_next_to_output(tmp_path, scheduler, suffix):
    out_dir = tmp_path / "my run"
    proc = run_sonatarun("submit", str(RING), "--scheduler", scheduler, "--nodes", "2", "--time", "01:00:00",
                         "--ranks-per-node", "3", "--account", "proj-1", "--dry-run", "--",
                         "--output-dir", str(out_dir))
    script = tmp_path / f"my run-{scheduler}.{suffix}"
    assert script.exists() and proc.stdout == script.read_text()
    assert "proj-1" in proc.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    words = subprocess.run(["bash", str(script)], capture_output=True, check=True,
                           env={"PATH": os.environ["PATH"], "SONATARUN_PRINT_COMMAND": "1"}).stdout.split(b"\0")[:-1]
    cmd = [w.decode() for w in words]
    assert cmd[-4:] == ["run", str(RING), "--output-dir", str(out_dir)]
    if scheduler == "slurm":
        assert cmd[:3] == ["srun", "--mpi=pmi2", "--ntasks=6"]
    else:
        assert cmd[0].endswith("mpiexec") and cmd[1:5] == ["-n", "6", "-ppn", "3"]
    bad = run_sonatarun("submit", str(RING), "--scheduler", scheduler, "--nodes", "1", "--time", "01:00:00",
                        "--partition", "q\n#SBATCH --x", "--dry-run", check=False)
    assert bad.returncode == 2 and "directive" in bad.stderr
