"""Parity with BMTK BioNet: point-process and virtual-cell networks give the same spikes.

The networks are built fresh in tmp_path by the examples' own builders (bmtk's NetworkBuilder,
seeded): ``ring_intfire`` (one IntFire1 population, two node types, an nsyns-column edge group
and a one-row-per-synapse group with per-edge delays and negative weights, one virtual
population) and ``mixed_populations`` (two internal populations, point_process and
point_neuron, four node types, two virtual populations fed from a SONATA and a CSV file,
seven edge files, sign -1 with positive weights, edge/node type ids repeated across files).
BMTK runs each once (serially; BMTK itself gives identical spikes under mpiexec -n 2), and
sonatarun must reproduce every spike: same populations, node ids, and times to 1e-9 ms,
on 1 rank and on 2 ranks, from the single-file config, the CSV-input config and the split
circuit/simulation pair.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.bmtk_support import compare_spikes, read_spikes, run_bmtk, spike_counts
from tests.conftest import EXAMPLES, need, run_sonatarun


def _load_builder(example: str):
    path = EXAMPLES / example / "build_network.py"
    spec = importlib.util.spec_from_file_location(f"{example}_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _need_bmtk() -> None:
    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) for the parity reference")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Build each network once per module and run BMTK on it once: {name: (dir, spikes)}."""
    _need_bmtk()
    cache: dict[str, tuple[Path, dict]] = {}

    def get(example: str):
        if example not in cache:
            base = tmp_path_factory.mktemp(example)
            _load_builder(example).build(base)
            spikes = run_bmtk(base / "config.simulation.json", base)
            assert sum(spike_counts(spikes).values()) > 100, f"BMTK reference too quiet: {spike_counts(spikes)}"
            cache[example] = (base, spikes)
        return cache[example]

    return get


def _sonatarun_spikes(config: Path, out_dir: Path, np: int | None) -> dict:
    run_sonatarun("run", str(config), "--output-dir", str(out_dir), np=np, cwd=config.parent)
    return read_spikes(out_dir / "spikes.h5")


def _assert_parity(expected: dict, actual: dict, what: str) -> None:
    problems = compare_spikes(expected, actual, atol=1e-9)
    assert not problems, f"{what} differs from BMTK:\n" + "\n".join(problems)


@pytest.mark.parametrize("np", [None, 2], ids=["1rank", "2ranks"])
@pytest.mark.parametrize("example", ["ring_intfire", "mixed_populations"])
def test_spikes_match_bmtk(reference, example, np, tmp_path):
    base, expected = reference(example)
    actual = _sonatarun_spikes(base / "config.simulation.json", tmp_path / "out", np)
    _assert_parity(expected, actual, f"sonatarun ({example}, {np or 1} rank(s))")


@pytest.mark.parametrize("config", ["config.simulation_csv.json", "config.sim.json"])
def test_config_variants_match_bmtk(reference, config, tmp_path):
    """CSV spike input and the split circuit/simulation config describe the same run."""
    base, expected = reference("ring_intfire")
    actual = _sonatarun_spikes(base / config, tmp_path / "out", None)
    _assert_parity(expected, actual, f"sonatarun ({config})")
