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

pytestmark = pytest.mark.bmtk


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


@pytest.mark.parametrize("np", [None, pytest.param(2, marks=pytest.mark.mpi)], ids=["1rank", "2ranks"])
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


def _build_artificial(base: Path, seed: int = 99) -> Path:
    """IntFire2, IntFire4 and IntFire1 (point_neuron) cells in one population, driven by a virtual one.

    Recurrent excitation (nsyns column, sign +1), inhibition from the IntFire4 cells (nsyns
    column, sign -1: negative NetCon weights, IntFire4's inhibitory path). Weights stay small:
    IntFire2/4 have no refractory period, and strong recurrent excitation explodes the event count.
    """
    from bmtk.builder import NetworkBuilder

    ring = _load_builder("ring_intfire")
    base = Path(base)
    net = base / "network"
    net.mkdir(parents=True, exist_ok=True)
    ring.write_components(base)
    pn = base / "components" / "point_neuron_models"
    (pn / "IntFire2.json").write_text(json.dumps({"taum": 8.0, "taus": 15.0, "ib": 0.6}))
    (pn / "IntFire4.json").write_text(json.dumps({"taue": 3.0, "taui1": 6.0, "taui2": 12.0, "taum": 25.0}))

    art = NetworkBuilder("art")
    art.add_nodes(N=12, pop_name="if2", model_type="point_process", model_template="nrn:IntFire2",
                  dynamics_params="IntFire2.json")
    art.add_nodes(N=12, pop_name="if4", model_type="point_process", model_template="nrn:IntFire4",
                  dynamics_params="IntFire4.json")
    art.add_nodes(N=6, pop_name="if1", model_type="point_neuron", model_template="nrn:IntFire1",
                  dynamics_params="IntFire1_slow.json")
    drive = NetworkBuilder("drive")
    drive.add_nodes(N=10, pop_name="poisson", model_type="virtual")

    def rule(p, salt):
        def connect(source, target):
            if source.node_id == target.node_id:
                return 0
            r = ring.edge_rng(seed + salt, source.node_id, target.node_id)
            return int(r.integers(1, 3)) if r.uniform() < p else 0
        return connect

    art.add_edges(source=art.nodes(), target=art.nodes(), connection_rule=rule(0.15, 1), syn_weight=0.08,
                  delay=1.37, dynamics_params="instantaneousExc.json")
    art.add_edges(source={"pop_name": "if4"}, target=art.nodes(), connection_rule=rule(0.2, 2), syn_weight=0.3,
                  delay=0.93, dynamics_params="instantaneousInh.json")
    drive.add_edges(source=drive.nodes(), target=art.nodes(), connection_rule=rule(0.4, 3), syn_weight=0.5,
                    delay=1.11, dynamics_params="instantaneousExc.json")
    for builder in (art, drive):
        builder.build()
        builder.save(output_dir=str(net))
    ids, ts = ring.poisson_trains(10, 20.0, 500.0, seed)
    ring.write_spike_inputs(base / "inputs" / "drive.h5", base / "inputs" / "drive.csv", "drive", ids, ts)

    cfg = ring.config_dict("sonata")
    cfg["run"]["tstop"] = 500.0
    cfg["inputs"] = {"drive": {"input_type": "spikes", "module": "sonata", "input_file": "$INPUT_DIR/drive.h5",
                               "node_set": "drive"}}
    cfg["node_sets"] = {}
    cfg["networks"] = {
        "nodes": [{"nodes_file": f"$NETWORK_DIR/{p}_nodes.h5", "node_types_file": f"$NETWORK_DIR/{p}_node_types.csv"}
                  for p in ("art", "drive")],
        "edges": [{"edges_file": f"$NETWORK_DIR/{p}_art_edges.h5",
                   "edge_types_file": f"$NETWORK_DIR/{p}_art_edge_types.csv"} for p in ("art", "drive")],
    }
    (base / "config.simulation.json").write_text(json.dumps(cfg, indent=2))
    return base


@pytest.mark.parametrize("np", [None, pytest.param(2, marks=pytest.mark.mpi)], ids=["1rank", "2ranks"])
def test_intfire2_intfire4_match_bmtk(tmp_path, np):
    """BioNet knows only nrn:IntFire1; for IntFire2/IntFire4 a BMTK user registers a loader. The
    reference registers the obvious one (every dynamics_params key set verbatim, NEURON units),
    which is the rule sonatarun applies to any nrn:<ArtificialCell> other than IntFire1."""
    _need_bmtk()
    base = _build_artificial(tmp_path / "artificial")
    expected = run_bmtk(base / "config.simulation.json", base, verbatim_templates=("IntFire2", "IntFire4"),
                        timeout=300)
    ids = expected["art"][0]
    assert min((ids < 12).sum(), ((ids >= 12) & (ids < 24)).sum(), (ids >= 24).sum()) > 20, spike_counts(expected)
    actual = _sonatarun_spikes(base / "config.simulation.json", tmp_path / "out", np)
    _assert_parity(expected, actual, f"sonatarun (IntFire2/4, {np or 1} rank(s))")
