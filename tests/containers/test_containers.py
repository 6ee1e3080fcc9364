"""The Docker image, the Singularity recipe and the AppDir run the same sonatarun as the host.

Each test builds nothing twice: the image and the AppDir are keyed by the content of the build
context (see dockerlib.py), so the first container test of a session pays for the build (~5 min
cold on 2 cores) and the others reuse it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bmtk_support import read_spikes
from tests.conftest import ROOT, need, run_sonatarun
from tests.containers import dockerlib

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXAMPLE = "ring_intfire"
CONFIG = "config.simulation.json"


@pytest.fixture(scope="module")
def image() -> str:
    need(dockerlib.client() is not None, "a reachable Docker engine (bash .ci/setup-docker.sh)")
    return dockerlib.ensure_image()


@pytest.fixture
def workdir(tmp_copy):
    """The example copied into a tmp dir the container's non-root user can write to."""
    example = tmp_copy(EXAMPLE)
    for path in [example.parent, *example.parent.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return example.parent


@pytest.fixture
def host_spikes(workdir):
    """Spikes of the host run (1 and 2 ranks), the reference every packaging must reproduce."""
    out = {}
    for np_ in (1, 2):
        run_sonatarun("run", str(workdir / EXAMPLE / CONFIG), "--output-dir", str(workdir / f"host{np_}"),
                      np=np_ if np_ > 1 else None)
        out[np_] = read_spikes(workdir / f"host{np_}" / "spikes.h5")
    assert out[1] and sum(len(ids) for ids, _ in out[1].values()) > 0
    return out


def assert_same_spikes(got: dict, want: dict, what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: populations {sorted(got)} != {sorted(want)}"
    for pop in want:
        np.testing.assert_array_equal(got[pop][0], want[pop][0], err_msg=f"{what}: node_ids of {pop}")
        np.testing.assert_array_equal(got[pop][1], want[pop][1], err_msg=f"{what}: timestamps of {pop}")


def docker_run(image: str, workdir: Path, *args: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return dockerlib.docker("run", "--rm", "-v", f"{workdir}:/data", *extra, image, *args)


def test_singularity_def_is_generated_from_dockerfile_and_parses():
    sys.path.insert(0, str(ROOT / "containers"))
    try:
        import gen_singularity
    finally:
        sys.path.pop(0)
    from spython.main.parse.parsers import SingularityParser

    committed = (ROOT / "Singularity.def").read_text()
    assert committed == gen_singularity.render(), \
        "Singularity.def is stale: run python containers/gen_singularity.py"
    recipe = SingularityParser(str(ROOT / "Singularity.def")).recipe
    stage = next(iter(recipe.values()))
    assert stage.fromHeader == "sonatarun:latest"
    env = "\n".join(stage.environ)
    assert "MPI_LIB_NRN_PATH=/opt/sonatarun/mpi/lib/libmpi.so.12" in env
    environment = committed.split("%environment", 1)[1].split("\n%", 1)[0]
    assert ". /opt/sonatarun/bin/mpi-env.sh" in environment  # spython keeps only the exports
    assert stage.test and any("sonatarun run" in line for line in stage.install), stage.install  # %test
    assert "Bootstrap: docker-daemon" in committed and "%help" in committed and "%runscript" in committed


def test_image_runs_example_like_host_at_1_and_2_ranks_as_non_root(image, workdir, host_spikes):
    uid = docker_run(image, workdir, "id", "-u").stdout.strip()
    assert uid.isdigit() and int(uid) != 0, f"container user is root ({uid})"

    docker_run(image, workdir, "run", f"/data/{EXAMPLE}/{CONFIG}", "--output-dir", "/data/docker1")
    assert_same_spikes(read_spikes(workdir / "docker1" / "spikes.h5"), host_spikes[1], "docker, 1 rank")

    docker_run(image, workdir, "mpiexec", "-n", "2", "sonatarun", "run", f"/data/{EXAMPLE}/{CONFIG}",
               "--output-dir", "/data/docker2")
    assert_same_spikes(read_spikes(workdir / "docker2" / "spikes.h5"), host_spikes[2], "docker, 2 ranks")


@pytest.fixture(scope="module")
def mpi_nest_image() -> str:
    need(dockerlib.client() is not None, "a reachable Docker engine (bash .ci/setup-docker.sh)")
    return dockerlib.ensure_image(nest_from_source=True)


def test_mpi_nest_image_runs_nest_on_two_ranks_like_two_threads(mpi_nest_image, tmp_copy):
    """The image variant with NEST compiled with MPI (NEST_FROM_SOURCE=1: what the engine's refusal
    of several ranks with the NEST wheel points to): the point example on 2 ranks x 1 thread in the
    container gives the spikes of the host's NEST wheel on 2 threads (the same virtual processes)."""
    example = tmp_copy("point_nest")
    for path in [example.parent, *example.parent.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    workdir = example.parent
    run_sonatarun("run", str(example / CONFIG), "--output-dir", str(workdir / "host_t2"), "--threads", "2")
    docker_run(mpi_nest_image, workdir, "mpiexec", "-n", "2", "sonatarun", "run", f"/data/point_nest/{CONFIG}",
               "--output-dir", "/data/mpi2", "--threads", "1")
    record = json.loads((workdir / "mpi2" / "sonatarun.json").read_text())
    assert record["engine"] == "nest" and record["ranks"] == 2 and record["threads"] == 1
    want = read_spikes(workdir / "host_t2" / "spikes.h5")
    assert sum(len(ids) for ids, _ in want.values()) > 50
    assert_same_spikes(read_spikes(workdir / "mpi2" / "spikes.h5"), want, "MPI NEST image, 2 ranks")


def test_doctor_in_image_lists_both_engines(image, workdir):
    proc = docker_run(image, workdir, "doctor", extra=("-e", "COLUMNS=200"))
    text = (proc.stdout + proc.stderr).lower()
    if "invalid choice: 'doctor'" in text:
        pytest.skip("this build of sonatarun has no doctor command yet")
    versions = docker_run(image, workdir, "python", "-c",
                          "import neuron, nest; print(neuron.__version__, nest.__version__)").stdout.split()
    assert "neuron" in text and "nest" in text, proc.stdout
    assert versions[0] in text, f"doctor does not show NEURON {versions[0]}:\n{proc.stdout}"
    assert versions[-1] in text, f"doctor does not show NEST {versions[-1]}:\n{proc.stdout}"
    # the C helpers were compiled into the image: the (non-root) user loads them, no compile
    probe = docker_run(image, workdir, "python", "-c",
                       "from sonatarun.io import run_copy; from sonatarun.engines.nest import locality; "
                       "print('C helpers', run_copy.load() is not None, locality.load() is not None)")
    assert "C helpers True True" in probe.stdout, probe.stdout + probe.stderr


def test_host_mpi_library_swapped_in_gives_same_spikes(image, workdir, host_spikes):
    host_lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
    need(host_lib.exists(), f"the mpich wheel's {host_lib} (pip install mpich)")
    # The library's own dependencies sit next to it (RUNPATH $ORIGIN/mpich): bind the directory.
    extra = ("-v", f"{host_lib.parent}:/opt/host-mpi:ro", "-e", "MPI_LIB_NRN_PATH=/opt/host-mpi/libmpi.so.12")
    version = docker_run(image, workdir, "python", "-c",
                         "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])",
                         extra=extra).stdout
    default = docker_run(image, workdir, "python", "-c",
                         "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])").stdout
    assert version != default, f"the host library was not loaded: {version!r} vs the image's {default!r}"
    docker_run(image, workdir, "mpiexec", "-n", "2", "sonatarun", "run", f"/data/{EXAMPLE}/{CONFIG}",
               "--output-dir", "/data/swap2", extra=extra)
    assert_same_spikes(read_spikes(workdir / "swap2" / "spikes.h5"), host_spikes[2], "host MPI swapped in")


def test_appdir_runs_outside_any_container_from_another_directory(image, workdir, host_spikes, tmp_path):
    appdir = dockerlib.ensure_appdir()
    moved = tmp_path / "elsewhere" / "sonatarun.AppDir"
    shutil.copytree(appdir, moved, symlinks=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # A bare environment: nothing from the test's venv (python, mpiexec, libmpi) may leak in.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    cmd = [str(moved / "AppRun"), "mpiexec", "-n", "2", "sonatarun", "run", str(workdir / EXAMPLE / CONFIG),
           "--output-dir", str(workdir / "appdir2")]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert_same_spikes(read_spikes(workdir / "appdir2" / "spikes.h5"), host_spikes[2], "AppDir, 2 ranks")
    packed = shutil.which("appimagetool")
    if packed:  # only where the tool is installed; it cannot be downloaded here
        out = tmp_path / "sonatarun-x86_64.AppImage"
        subprocess.run([packed, str(moved), str(out)], env={**os.environ, "ARCH": "x86_64"}, check=True,
                       capture_output=True)
        assert out.stat().st_size > 0
