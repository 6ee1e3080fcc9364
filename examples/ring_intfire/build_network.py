"""Build the ring_intfire example: a ring of IntFire1 cells driven by virtual inputs.

Run ``python build_network.py`` in this directory to regenerate every file the example
commits (network/, inputs/, components/, the configs). The build is deterministic: the
same seed gives byte-identical spike inputs and the same edges, so the committed files
and the ones the parity test builds in a temporary directory describe the same network.

The network uses only what BMTK's BioNet 1.2.0 runs out of the box for artificial cells
(see docs/bmtk-semantics.md): ``model_type: point_process`` with ``nrn:IntFire1``
(dynamics_params ``tau``/``refrac`` in *seconds*), edges carrying ``nsyns`` (so BioNet
multiplies ``syn_weight`` by ``nsyns`` and by the ``sign`` of the edge's dynamics_params),
and a ``virtual`` population whose spike trains come from an input file.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
N_RING_SLOW = 30
N_RING_FAST = 10
N_INPUT = 12
TSTOP_MS = 1000.0
INPUT_RATE_HZ = 6.0
SEED = 20261127



def edge_rng(seed: int, *ids: int) -> np.random.Generator:
    """One generator per (source, target) pair so a property never depends on build order."""
    return np.random.default_rng([seed, *[int(i) for i in ids]])


def poisson_trains(n: int, rate_hz: float, tstop_ms: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson spike trains, rounded to 1 us so CSV and h5 hold the very same doubles."""
    rng = np.random.default_rng(seed)
    ids, times = [], []
    for nid in range(n):
        count = rng.poisson(rate_hz * tstop_ms / 1000.0)
        ts = np.sort(np.round(rng.uniform(1.0, tstop_ms, size=count), 3))
        ts = np.unique(ts)
        ids.append(np.full(len(ts), nid, dtype=np.uint64))
        times.append(ts)
    return np.concatenate(ids), np.concatenate(times)


def write_spike_inputs(path_h5: Path, path_csv: Path, population: str, node_ids: np.ndarray,
                       timestamps: np.ndarray) -> None:
    """Write one spike population as SONATA h5 and as BMTK's space-separated CSV (time-sorted)."""
    order = np.lexsort((node_ids, timestamps))
    node_ids, timestamps = node_ids[order], timestamps[order]
    path_h5.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path_h5, "w") as f:
        f.attrs["magic"] = np.uint32(0x0A7A)
        f.attrs["version"] = np.array([0, 1], dtype=np.uint32)
        grp = f.create_group(f"spikes/{population}")
        grp.attrs["sorting"] = "by_time"
        ts = grp.create_dataset("timestamps", data=timestamps.astype(np.float64))
        ts.attrs["units"] = "ms"
        grp.create_dataset("node_ids", data=node_ids.astype(np.uint64))
    with open(path_csv, "w") as f:
        f.write("timestamps population node_ids\n")
        for t, n in zip(timestamps, node_ids):
            f.write(f"{float(t)!r} {population} {int(n)}\n")


def write_components(base: Path) -> None:
    pn = base / "components" / "point_neuron_models"
    syn = base / "components" / "synaptic_models"
    mod = base / "components" / "mechanisms" / "modfiles"
    for d in (pn, syn, mod):
        d.mkdir(parents=True, exist_ok=True)
    # BioNet's IntFire1 loader multiplies tau and refrac by 1000: they are given in seconds.
    (pn / "IntFire1_slow.json").write_text(json.dumps({"tau": 0.024, "refrac": 0.003}, indent=2) + "\n")
    (pn / "IntFire1_fast.json").write_text(json.dumps({"tau": 0.010, "refrac": 0.0015}, indent=2) + "\n")
    # For edges with an nsyns column BioNet uses weight = syn_weight * sign * nsyns.
    (syn / "instantaneousExc.json").write_text(json.dumps({"sign": 1}, indent=2) + "\n")
    (syn / "instantaneousInh.json").write_text(json.dumps({"sign": -1}, indent=2) + "\n")
    # BioNet plays virtual spike trains through h.VecStim, which the NEURON wheel lacks:
    # ship BMTK's own vecevent.mod so `nrnivmodl modfiles` in components/mechanisms builds it.
    import bmtk

    src = Path(bmtk.__file__).parent / "utils" / "scripts" / "bionet" / "mechanisms" / "modfiles" / "vecevent.mod"
    shutil.copyfile(src, mod / "vecevent.mod")


def config_dict(input_module: str = "sonata") -> dict:
    input_file = "$INPUT_DIR/input_spikes.h5" if input_module == "sonata" else "$INPUT_DIR/input_spikes.csv"
    return {
        "manifest": {
            "$BASE_DIR": "${configdir}",
            "$NETWORK_DIR": "$BASE_DIR/network",
            "$COMPONENTS_DIR": "$BASE_DIR/components",
            "$INPUT_DIR": "$BASE_DIR/inputs",
            "$OUTPUT_DIR": "$BASE_DIR/output",
        },
        "target_simulator": "NEURON",
        "run": {"tstart": 0.0, "tstop": TSTOP_MS, "dt": 0.1, "spike_threshold": -15.0, "nsteps_block": 2000},
        "conditions": {"celsius": 34.0, "v_init": -80.0},
        "inputs": {
            "input_spikes": {"input_type": "spikes", "module": input_module, "input_file": input_file,
                             "node_set": "input"},
        },
        "output": {
            "log_file": "log.txt",
            "output_dir": "$OUTPUT_DIR",
            "spikes_file": "spikes.h5",
            "spikes_file_csv": "spikes.csv",
            "spikes_sort_order": "time",
            "overwrite_output_dir": True,
        },
        "reports": {},
        "node_sets": {"ring_fast": {"population": "ring", "pop_name": "fast"}},
        "components": {
            "point_neuron_models_dir": "$COMPONENTS_DIR/point_neuron_models",
            "synaptic_models_dir": "$COMPONENTS_DIR/synaptic_models",
            "mechanisms_dir": "$COMPONENTS_DIR/mechanisms",
        },
        "networks": {
            "nodes": [
                {"nodes_file": "$NETWORK_DIR/ring_nodes.h5", "node_types_file": "$NETWORK_DIR/ring_node_types.csv"},
                {"nodes_file": "$NETWORK_DIR/input_nodes.h5", "node_types_file": "$NETWORK_DIR/input_node_types.csv"},
            ],
            "edges": [
                {"edges_file": "$NETWORK_DIR/ring_ring_edges.h5",
                 "edge_types_file": "$NETWORK_DIR/ring_ring_edge_types.csv"},
                {"edges_file": "$NETWORK_DIR/input_ring_edges.h5",
                 "edge_types_file": "$NETWORK_DIR/input_ring_edge_types.csv"},
            ],
        },
    }


def write_configs(base: Path) -> None:
    """The single-file config, a CSV-input variant, and a circuit/simulation split pair."""
    cfg = config_dict("sonata")
    (base / "config.simulation.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (base / "config.simulation_csv.json").write_text(json.dumps(config_dict("csv"), indent=2) + "\n")

    circuit = {"manifest": {k: v for k, v in cfg["manifest"].items() if k in ("$BASE_DIR", "$NETWORK_DIR",
                                                                              "$COMPONENTS_DIR")},
               "components": cfg["components"], "networks": cfg["networks"]}
    sim = {k: v for k, v in cfg.items() if k not in ("components", "networks")}
    sim["manifest"] = {k: v for k, v in cfg["manifest"].items() if k in ("$BASE_DIR", "$INPUT_DIR", "$OUTPUT_DIR")}
    sim["network"] = "config.circuit.json"
    (base / "config.circuit.json").write_text(json.dumps(circuit, indent=2) + "\n")
    (base / "config.sim.json").write_text(json.dumps(sim, indent=2) + "\n")


def build(base: Path, seed: int = SEED) -> Path:
    """Write the whole example into ``base`` and return it."""
    from bmtk.builder import NetworkBuilder

    base = Path(base)
    net_dir = base / "network"
    if net_dir.exists():
        shutil.rmtree(net_dir)
    net_dir.mkdir(parents=True)

    n_ring = N_RING_SLOW + N_RING_FAST
    angle = 2 * np.pi * np.arange(n_ring) / n_ring

    ring = NetworkBuilder("ring")
    ring.add_nodes(N=N_RING_SLOW, pop_name="slow", model_type="point_process", model_template="nrn:IntFire1",
                   dynamics_params="IntFire1_slow.json",
                   x=100 * np.cos(angle[:N_RING_SLOW]), y=100 * np.sin(angle[:N_RING_SLOW]),
                   z=np.zeros(N_RING_SLOW))
    ring.add_nodes(N=N_RING_FAST, pop_name="fast", model_type="point_process", model_template="nrn:IntFire1",
                   dynamics_params="IntFire1_fast.json",
                   x=100 * np.cos(angle[N_RING_SLOW:]), y=100 * np.sin(angle[N_RING_SLOW:]),
                   z=np.zeros(N_RING_FAST))

    def next_in_ring(source, target):
        # Two synapses from each cell onto its successor: 2 * 0.6 = 1.2 fires it unless recent
        # inhibition (below) holds it under -0.2, so waves run, stall and restart with the inputs.
        return 2 if target.node_id == (source.node_id + 1) % n_ring else 0

    def skip_inhibition(source, target):
        if target.node_id != (source.node_id + 7) % n_ring:
            return 0
        return int(edge_rng(seed, source.node_id, target.node_id).integers(1, 4))

    def jittered_delay(source, target, lo, hi):
        return float(np.round(edge_rng(seed + 1, source.node_id, target.node_id).uniform(lo, hi), 3))

    # Edge type without per-edge properties: BMTK's builder stores an `nsyns` column, and BioNet
    # turns it into ONE NetCon of weight syn_weight * sign * nsyns (= 0.6 * 1 * 2 = 1.2).
    ring.add_edges(source=ring.nodes(), target=ring.nodes(), connection_rule=next_in_ring,
                   syn_weight=0.6, delay=2.0, dynamics_params="instantaneousExc.json", model_template="exp2syn")
    # Edge type with a per-edge property (delay): the builder writes one ROW per synapse and no
    # `nsyns` column, so BioNet makes one NetCon per row with weight syn_weight as is (no sign):
    # inhibition therefore needs a negative syn_weight.
    cm = ring.add_edges(source=ring.nodes(), target=ring.nodes(), connection_rule=skip_inhibition,
                        syn_weight=-0.12, dynamics_params="instantaneousInh.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jittered_delay, rule_params={"lo": 0.8, "hi": 3.0}, dtypes=float)
    ring.build()
    ring.save(output_dir=str(net_dir))

    inputs = NetworkBuilder("input")
    inputs.add_nodes(N=N_INPUT, pop_name="poisson", model_type="virtual")

    def fan_out(source, target):
        # input j drives ring cells 3j, 3j+1, 3j+2 (mod ring size); one spike alone stays sub-threshold.
        return 1 if (target.node_id - 3 * source.node_id) % n_ring < 3 else 0

    cm = inputs.add_edges(source=inputs.nodes(), target=ring.nodes(), connection_rule=fan_out,
                          syn_weight=0.7, dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jittered_delay, rule_params={"lo": 1.0, "hi": 2.0}, dtypes=float)
    inputs.build()
    inputs.save(output_dir=str(net_dir))

    node_ids, timestamps = poisson_trains(N_INPUT, INPUT_RATE_HZ, TSTOP_MS, seed)
    write_spike_inputs(base / "inputs" / "input_spikes.h5", base / "inputs" / "input_spikes.csv", "input",
                       node_ids, timestamps)
    write_components(base)
    write_configs(base)
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE), help="directory to write the example into")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    build(Path(args.output), seed=args.seed)


if __name__ == "__main__":
    main()
