"""`launch` passes a walltime-style signal through mpiexec to every rank: the run checkpoints and
exits 75, and launching again with --resume ends with the uninterrupted run's spikes."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from tests.conftest import mpiexec, run_sonatarun, sonatarun_cmd
from tests.launch.helpers import long_ring, read_spikes


def test_launch_forwards_usr1_and_resumes(tmp_path):
    mpiexec()
    tstop = 30000
    config = long_ring(tmp_path / "ring", tstop)
    out = tmp_path / "out"
    log = (tmp_path / "launch.log").open("w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(sonatarun_cmd("launch", str(config), "--np", "2", "--", "--output-dir", str(out)),
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        end = time.monotonic() + 120
        text = ""
        while time.monotonic() < end and proc.poll() is None:
            text = (tmp_path / "launch.log").read_text()
            if re.search(rf"t = [1-9]\d{{3,}} / {tstop} ms", text):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGUSR1)  # to `sonatarun launch` only, as a batch shell's trap would
        assert proc.wait(timeout=120) == 75, (tmp_path / "launch.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "launch.log").read_text()
    stop = re.search(r"stopped by SIGUSR1 at t = ([\d.]+) ms", text)
    assert stop and float(stop.group(1)) < tstop, text
    run_sonatarun("launch", str(config), "--np", "2", "--", "--output-dir", str(out), "--resume")
    run_sonatarun("run", str(config), "--output-dir", str(tmp_path / "whole"))
    assert read_spikes(out) == read_spikes(tmp_path / "whole")
