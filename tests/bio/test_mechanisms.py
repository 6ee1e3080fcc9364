"""Mechanism compilation: `sonatarun mechanisms build` caches by content; a missing mechanism is a clear error."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import EXAMPLES, run_sonatarun


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the example's mechanisms compile once for both tests."""
    return tmp_path_factory.mktemp("mech_cache")


def test_build_caches_by_content(tmp_path, cache):
    env = {"SONATARUN_CACHE": str(cache)}
    mech = tmp_path / "mech"
    shutil.copytree(EXAMPLES / "bio_network" / "components" / "mechanisms" / "modfiles", mech / "modfiles")
    first = run_sonatarun("mechanisms", "build", str(mech), env=env)
    assert "compiled: Ih, VecStim" in first.stdout
    lib = first.stdout.strip().splitlines()[-1].split("library: ")[1]
    assert lib.startswith(str(cache / "mechanisms")) and lib.endswith("libnrnmech.so")
    again = run_sonatarun("mechanisms", "build", str(mech), env=env)
    assert "already compiled" in again.stdout and lib in again.stdout
    # new content -> new cache entry
    (mech / "modfiles" / "Ih.mod").write_text((mech / "modfiles" / "Ih.mod").read_text() + "\n: edited\n")
    third = run_sonatarun("mechanisms", "build", str(mech), env=env)
    assert "already compiled" not in third.stdout and lib not in third.stdout


def test_unloaded_mechanism_is_named(tmp_copy, tmp_path, cache):
    base = tmp_copy("bio_network")
    params = base / "components" / "biophysical_neuron_models" / "exc_perisomatic.json"
    dyn = json.loads(params.read_text())
    dyn["genome"].append({"section": "soma", "name": "gbar_Kv3_1", "value": 0.01, "mechanism": "Kv3_1"})
    params.write_text(json.dumps(dyn))
    proc = run_sonatarun("run", str(base / "config.simulation.json"), "--output-dir", str(tmp_path / "out"),
                         cwd=base, check=False, env={"SONATARUN_CACHE": str(cache)})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "Kv3_1" in line and "mechanisms_dir" in line
