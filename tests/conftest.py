"""Shared test plumbing.

Tests use the real engines, MPI, Slurm and Docker. Outside CI a missing piece
skips the test with the reason; with ``CI=true`` it fails, because ``.ci/run``
installs and starts everything the suite needs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MORPHOLOGIES = SHARED / "data" / "morphologies"
EXAMPLES = ROOT / "examples"
VENV_BIN = Path(sys.executable).parent


def need(condition: bool, what: str) -> None:
    """Skip (locally) or fail (under CI=true) when a real dependency is missing."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required: .ci/run must install and start it")
    pytest.skip(what)


def mpiexec() -> str:
    exe = VENV_BIN / "mpiexec"
    found = str(exe) if exe.exists() else shutil.which("mpiexec")
    need(found is not None, "mpiexec (pip install mpich)")
    return found  # type: ignore[return-value]


def sonatarun_cmd(*args: str, np: int | None = None) -> list[str]:
    """The command line that runs sonatarun with this interpreter, optionally under mpiexec."""
    base = [sys.executable, "-m", "sonatarun.cli.main", *args]
    if np:
        return [mpiexec(), "-n", str(np), *base]
    return base


def run_sonatarun(*args: str, np: int | None = None, cwd: Path | None = None, env: dict | None = None,
                  timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    proc = subprocess.run(sonatarun_cmd(*args, np=np), cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"sonatarun {' '.join(args)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


@pytest.fixture
def tmp_copy(tmp_path):
    """Copy an example directory into tmp_path so a test never writes into the checkout."""

    def _copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(EXAMPLES / name, dst, ignore=shutil.ignore_patterns("output*", "x86_64"))
        return dst

    return _copy
