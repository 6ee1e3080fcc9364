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
circuit/simulation pair, and with a variant that moves properties between the h5 and the
type CSVs and stresses the run settings (see test_format_variants_match_bmtk).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy
import pandas as pd
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


def _types_csv_set(path: Path, type_id: int, **values) -> None:
    table = pd.read_csv(path, sep=" ", keep_default_na=False, dtype=str)
    key = "edge_type_id" if "edge_type_id" in table else "node_type_id"
    for col, val in values.items():
        if col not in table:
            table[col] = "NULL"
        table.loc[table[key] == str(type_id), col] = str(val)
    table.to_csv(path, sep=" ", index=False)


def _h5_group_add(path: Path, population: str, group: str, column: str, make) -> None:
    with h5py.File(path, "r+") as f:
        n = int((f[f"edges/{population}/edge_group_id"][()] == int(group)).sum())
        f[f"edges/{population}/{group}"].create_dataset(column, data=make(n))


def test_format_variants_match_bmtk(tmp_path):
    """One ring build with every "same meaning, other layout" change BMTK accepts, all at once.

    - input edges: ``nsyns`` in the types CSV (not the h5) -> weight * sign * nsyns; a per-edge
      ``syn_weight`` in the h5 overriding the CSV's; ``delay`` in both (the h5 wins);
    - ring excitatory group: an ``afferent_section_id`` column, which turns the nsyns/sign rule off;
    - ring inhibitory type: ``weight_function: wmax``, the other type NULL in the same column;
    - CSV spike input, unsorted, with spikes at 0, just under, at and beyond tstop;
    - run: tstart 100 (BioNet ignores it), dt 0.025, nsteps_block 777, tstop not a multiple of dt.
    """
    _need_bmtk()
    base = _load_builder("ring_intfire").build(tmp_path / "variant")
    net = base / "network"
    _types_csv_set(net / "input_ring_edge_types.csv", 100, nsyns=2, delay=5.0)
    _h5_group_add(net / "input_ring_edges.h5", "input_to_ring", "0", "syn_weight",
                  lambda n: numpy.round(numpy.linspace(0.4, 0.55, n), 4))
    _h5_group_add(net / "ring_ring_edges.h5", "ring_to_ring", "0", "afferent_section_id",
                  lambda n: numpy.zeros(n, dtype=numpy.int32))
    _types_csv_set(net / "ring_ring_edge_types.csv", 101, weight_function="wmax")
    _types_csv_set(net / "ring_ring_edge_types.csv", 100, syn_weight=1.1)  # no nsyns rule: 1.1 as is

    spikes = pd.read_csv(base / "inputs" / "input_spikes.csv", sep=" ")
    extra = pd.DataFrame({"timestamps": [0.0, 999.95, 999.97, 1200.0], "population": "input",
                          "node_ids": [0, 1, 2, 3]})
    pd.concat([extra, spikes]).iloc[::-1].to_csv(base / "inputs" / "input_spikes.csv", sep=" ", index=False)

    cfg_path = base / "config.simulation_csv.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["run"].update(tstart=100.0, dt=0.025, nsteps_block=777, tstop=999.97)
    cfg_path.write_text(json.dumps(cfg, indent=2))

    expected = run_bmtk(cfg_path, base)
    assert sum(spike_counts(expected).values()) > 100, spike_counts(expected)
    actual = _sonatarun_spikes(cfg_path, tmp_path / "out", None)
    _assert_parity(expected, actual, "sonatarun (format variants)")
