"""Build the mixed_populations example: several populations, node and edge types, two inputs.

Run ``python build_network.py`` here to regenerate the committed files; the parity test calls
``build(tmp_dir)`` to get the same network in a scratch directory.

What it exercises (each one a place where a reader can silently differ from BMTK):
- two internal populations, ``cortex`` (``point_process``, node types ``exc``/``inh`` with
  dynamics_params JSON files) and ``thalamus`` (``point_neuron`` + ``nrn:IntFire1``, two types);
- two virtual populations, ``lgn`` (SONATA h5 spikes) and ``bkg`` (BMTK CSV spikes);
- edge groups with an ``nsyns`` column (weight = syn_weight * sign * nsyns, including a
  ``sign: -1`` inhibitory type with a positive syn_weight) and edge groups written one row per
  synapse with per-edge delays (weight = syn_weight, no sign);
- edge and node type ids that repeat across files (every builder starts at 100);
- ``weight_function`` (``gaussianLL`` on ``tuning_angle``/``weight_sigma``, ``wmax``) next to
  edge types without one in the same file;
- recurrent edges inside and between populations, delays from the type CSV and from the h5.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 7321
TSTOP_MS = 600.0


def _ring_module():
    """Reuse the ring example's helpers (spike writing, seeded per-pair RNG, vecevent.mod copy)."""
    path = HERE.parent / "ring_intfire" / "build_network.py"
    spec = importlib.util.spec_from_file_location("ring_intfire_build", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def write_components(base: Path) -> None:
    ring = _ring_module()
    ring.write_components(base)  # synaptic sign files and vecevent.mod
    pn = base / "components" / "point_neuron_models"
    for stale in pn.glob("*.json"):
        stale.unlink()
    (pn / "IntFire1_exc.json").write_text(json.dumps({"tau": 0.020, "refrac": 0.004}, indent=2) + "\n")
    (pn / "IntFire1_inh.json").write_text(json.dumps({"tau": 0.008, "refrac": 0.002}, indent=2) + "\n")
    (pn / "IntFire1_relay.json").write_text(json.dumps({"tau": 0.015, "refrac": 0.003}, indent=2) + "\n")
    (pn / "IntFire1_burst.json").write_text(json.dumps({"tau": 0.030, "refrac": 0.0025}, indent=2) + "\n")


def config_dict() -> dict:
    net = "$NETWORK_DIR"
    return {
        "manifest": {
            "$BASE_DIR": "${configdir}",
            "$NETWORK_DIR": "$BASE_DIR/network",
            "$COMPONENTS_DIR": "$BASE_DIR/components",
            "$INPUT_DIR": "$BASE_DIR/inputs",
            "$OUTPUT_DIR": "$BASE_DIR/output",
        },
        "target_simulator": "NEURON",
        "run": {"tstart": 0.0, "tstop": TSTOP_MS, "dt": 0.1, "spike_threshold": -15.0, "nsteps_block": 1000},
        "conditions": {"celsius": 34.0, "v_init": -80.0},
        "inputs": {
            "lgn_spikes": {"input_type": "spikes", "module": "sonata", "input_file": "$INPUT_DIR/lgn_spikes.h5",
                           "node_set": "lgn"},
            "bkg_spikes": {"input_type": "spikes", "module": "csv", "input_file": "$INPUT_DIR/bkg_spikes.csv",
                           "node_set": "bkg"},
        },
        "output": {
            "log_file": "log.txt",
            "output_dir": "$OUTPUT_DIR",
            "spikes_file": "spikes.h5",
            "spikes_file_csv": "spikes.csv",
            "spikes_sort_order": "time",
            "overwrite_output_dir": True,
        },
        "node_sets": {"lgn": {"population": "lgn"}, "bkg": {"population": "bkg"}},
        "components": {
            "point_neuron_models_dir": "$COMPONENTS_DIR/point_neuron_models",
            "synaptic_models_dir": "$COMPONENTS_DIR/synaptic_models",
            "mechanisms_dir": "$COMPONENTS_DIR/mechanisms",
        },
        "networks": {
            "nodes": [
                {"nodes_file": f"{net}/cortex_nodes.h5", "node_types_file": f"{net}/cortex_node_types.csv"},
                {"nodes_file": f"{net}/thalamus_nodes.h5", "node_types_file": f"{net}/thalamus_node_types.csv"},
                {"nodes_file": f"{net}/lgn_nodes.h5", "node_types_file": f"{net}/lgn_node_types.csv"},
                {"nodes_file": f"{net}/bkg_nodes.h5", "node_types_file": f"{net}/bkg_node_types.csv"},
            ],
            "edges": [
                {"edges_file": f"{net}/{src}_{trg}_edges.h5", "edge_types_file": f"{net}/{src}_{trg}_edge_types.csv"}
                for src, trg in [("cortex", "cortex"), ("cortex", "thalamus"), ("thalamus", "cortex"),
                                 ("lgn", "thalamus"), ("lgn", "cortex"), ("bkg", "cortex"), ("bkg", "thalamus")]
            ],
        },
    }


def build(base: Path, seed: int = SEED) -> Path:
    """Write the whole example into ``base`` and return it."""
    from bmtk.builder import NetworkBuilder

    ring = _ring_module()
    base = Path(base)
    net_dir = base / "network"
    if net_dir.exists():
        shutil.rmtree(net_dir)
    net_dir.mkdir(parents=True)

    def prob(p, salt, recurrent=False):
        def rule(source, target):
            if recurrent and source.node_id == target.node_id:
                return 0  # no autapses
            r = ring.edge_rng(seed + salt, source.node_id, target.node_id)
            return int(r.integers(1, 4)) if r.uniform() < p else 0
        return rule

    def jitter(source, target, lo, hi, salt):
        return float(np.round(ring.edge_rng(seed + salt, source.node_id, target.node_id).uniform(lo, hi), 3))

    def tuning(n, salt):
        # preferred orientation (deg), a node attribute read by the gaussianLL weight function
        return np.round(np.random.default_rng([seed, salt]).uniform(0.0, 360.0, n), 2)

    cortex = NetworkBuilder("cortex")
    cortex.add_nodes(N=32, pop_name="exc", ei="e", model_type="point_process", model_template="nrn:IntFire1",
                     dynamics_params="IntFire1_exc.json", tuning_angle=tuning(32, 1))
    cortex.add_nodes(N=10, pop_name="inh", ei="i", model_type="point_process", model_template="nrn:IntFire1",
                     dynamics_params="IntFire1_inh.json", tuning_angle=tuning(10, 2))

    thalamus = NetworkBuilder("thalamus")
    n_thal = 16
    # BMTK 1.2.0 cannot read per-node dynamics_params (an h5 `dynamics_params` subgroup is
    # ignored, see docs/bmtk-semantics.md): parameters come from one JSON per node type.
    thalamus.add_nodes(N=n_thal - 6, pop_name="relay", model_type="point_neuron", model_template="nrn:IntFire1",
                       dynamics_params="IntFire1_relay.json")
    thalamus.add_nodes(N=6, pop_name="burst", model_type="point_neuron", model_template="nrn:IntFire1",
                       dynamics_params="IntFire1_burst.json")

    lgn = NetworkBuilder("lgn")
    lgn.add_nodes(N=20, pop_name="lgn_on", model_type="virtual", tuning_angle=tuning(20, 3))
    bkg = NetworkBuilder("bkg")
    bkg.add_nodes(N=4, pop_name="bkg", model_type="virtual")

    exc, inh = {"ei": "e"}, {"ei": "i"}
    # nsyns column (no per-edge properties): one NetCon, weight syn_weight * sign * nsyns
    cortex.add_edges(source=exc, target=exc, connection_rule=prob(0.12, 1, True), syn_weight=0.15, delay=1.713,
                     dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cortex.add_edges(source=inh, target=exc, connection_rule=prob(0.3, 2, True), syn_weight=0.15, delay=1.127,
                     dynamics_params="instantaneousInh.json", model_template="exp2syn")
    # per-edge delays: one row per synapse, weight syn_weight as is
    cm = cortex.add_edges(source=exc, target=inh, connection_rule=prob(0.25, 3, True), syn_weight=0.3,
                          dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jitter, rule_params={"lo": 0.6, "hi": 2.4, "salt": 4}, dtypes=float)
    cm = cortex.add_edges(source=inh, target=inh, connection_rule=prob(0.2, 5, True), syn_weight=-0.2,
                          dynamics_params="instantaneousInh.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jitter, rule_params={"lo": 0.9, "hi": 1.9, "salt": 6}, dtypes=float)

    cm = cortex.add_edges(source=exc, target=thalamus.nodes(), connection_rule=prob(0.1, 7), syn_weight=0.25,
                          dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jitter, rule_params={"lo": 2.0, "hi": 4.0, "salt": 8}, dtypes=float)
    thalamus.add_edges(source=thalamus.nodes(), target=cortex.nodes(**exc), connection_rule=prob(0.2, 9),
                       syn_weight=0.3, delay=2.531, dynamics_params="instantaneousExc.json", model_template="exp2syn")
    thalamus.add_edges(source=thalamus.nodes(), target=cortex.nodes(**inh), connection_rule=prob(0.3, 10),
                       syn_weight=0.35, delay=1.309, dynamics_params="instantaneousExc.json", model_template="exp2syn")

    cm = lgn.add_edges(source=lgn.nodes(), target=thalamus.nodes(), connection_rule=prob(0.35, 11),
                       syn_weight=0.45, dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jitter, rule_params={"lo": 1.0, "hi": 2.0, "salt": 12}, dtypes=float)
    # weight_function: BMTK computes gaussianLL(edge, source, target) = syn_weight * exp(-(dtuning/weight_sigma)^2),
    # then (nsyns column) multiplies by sign * nsyns; `wmax` returns syn_weight.
    lgn.add_edges(source=lgn.nodes(), target=cortex.nodes(**exc), connection_rule=prob(0.25, 13),
                  syn_weight=0.45, weight_function="gaussianLL", weight_sigma=60.0, delay=3.017,
                  dynamics_params="instantaneousExc.json", model_template="exp2syn")
    lgn.add_edges(source=lgn.nodes(), target=cortex.nodes(**inh), connection_rule=prob(0.2, 17),
                  syn_weight=0.25, weight_function="wmax", delay=2.213,
                  dynamics_params="instantaneousExc.json", model_template="exp2syn")
    bkg.add_edges(source=bkg.nodes(), target=cortex.nodes(), connection_rule=prob(0.5, 14),
                  syn_weight=0.12, delay=0.743, dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cm = bkg.add_edges(source=bkg.nodes(), target=thalamus.nodes(), connection_rule=prob(0.5, 15),
                       syn_weight=0.2, dynamics_params="instantaneousExc.json", model_template="exp2syn")
    cm.add_properties("delay", rule=jitter, rule_params={"lo": 0.5, "hi": 1.5, "salt": 16}, dtypes=float)

    for b in (cortex, thalamus, lgn, bkg):
        b.build()
        b.save(output_dir=str(net_dir))

    ids, ts = ring.poisson_trains(20, 15.0, TSTOP_MS, seed + 100)
    ring.write_spike_inputs(base / "inputs" / "lgn_spikes.h5", base / "inputs" / "lgn_spikes.csv", "lgn", ids, ts)
    ids, ts = ring.poisson_trains(4, 40.0, TSTOP_MS, seed + 200)
    ring.write_spike_inputs(base / "inputs" / "bkg_spikes.h5", base / "inputs" / "bkg_spikes.csv", "bkg", ids, ts)
    write_components(base)
    (base / "config.simulation.json").write_text(json.dumps(config_dict(), indent=2) + "\n")
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE), help="directory to write the example into")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    build(Path(args.output), seed=args.seed)


if __name__ == "__main__":
    main()
