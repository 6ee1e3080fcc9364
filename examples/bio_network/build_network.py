"""Build the bio_network example: detailed cells with real morphologies, driven by virtual inputs.

Run ``python build_network.py`` here to regenerate what the example commits (network/,
inputs/, components/, configs); ``build(dir, ...)`` does the same elsewhere (the parity
tests and the benchmark build into temporary directories, at other sizes).

* population ``bio``: excitatory cells on three Allen reconstructions (Scnn1a, Rorb,
  Nr5a1) with ``aibs_perisomatic`` and inhibitory cells on two Pvalb reconstructions
  with ``aibs_allactive``; Allen-form JSON parameters using NEURON's built-in ``hh`` and
  ``pas`` plus ``Ih`` from ``components/mechanisms/modfiles/Ih.mod`` (written for this
  example); positions and rotations about y;
* population ``lgn``: virtual cells playing Poisson trains from ``inputs/lgn_spikes.h5``;
* edges ``bio -> bio`` (exc and inh types, ``nsyns`` synapses placed by
  ``target_sections`` + ``distance_range``), ``lgn -> bio`` (same rule) and one
  ``lgn -> bio`` edge type with explicit ``afferent_section_id``/``afferent_section_pos``;
* reports: soma voltage of every ``bio`` cell, all-segment voltage of two cells, and
  the synaptic current ``i`` of the Exp2Syn synapses on two cells.

Deterministic: the same arguments give the same files.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
SHARED_MORPH = HERE.parents[1].parent / "shared" / "data" / "morphologies"
SEED = 4242

EXC_MORPHS = ["Scnn1a_473845048_m.swc", "Rorb_325404214_m.swc", "Nr5a1_471087815_m.swc"]
INH_MORPHS = ["Pvalb_469628681_m.swc", "Pvalb_470522102_m.swc"]


def exc_params() -> dict:
    """Allen perisomatic form: passive per section, a genome of (section, name, value, mechanism)."""
    genome = []
    for sec in ("soma", "axon"):
        genome += [{"section": sec, "name": "gnabar_hh", "value": 0.12, "mechanism": "hh"},
                   {"section": sec, "name": "gkbar_hh", "value": 0.036, "mechanism": "hh"},
                   {"section": sec, "name": "gl_hh", "value": 0.0, "mechanism": "hh"}]
    for sec in ("soma", "dend", "apic"):
        genome.append({"section": sec, "name": "gbar_Ih", "value": 4.0e-5 if sec != "soma" else 1.0e-5,
                       "mechanism": "Ih"})
    for sec, g in (("soma", 3.0e-5), ("axon", 3.0e-5), ("dend", 3.0e-5), ("apic", 3.0e-5)):
        genome.append({"section": sec, "name": "g_pas", "value": g, "mechanism": ""})
    return {
        "passive": [{"ra": 100.0, "e_pas": -70.0,
                     "cm": [{"section": s, "cm": c} for s, c in (("soma", 1.0), ("axon", 1.0), ("dend", 2.0),
                                                                  ("apic", 2.0))]}],
        "conditions": [{"celsius": 34.0, "v_init": -70.0,
                        "erev": [{"section": s, "ena": 50.0, "ek": -77.0} for s in ("soma", "axon")]}],
        "genome": genome,
        "fitting": [{"junction_potential": -14.0, "sweeps": [0]}],
    }


def inh_params() -> dict:
    """Allen all-active form: values per section, hh everywhere except dendritic Na."""
    genome = []
    for sec, gna in (("soma", 0.15), ("axon", 0.2), ("dend", 0.0)):
        genome += [{"section": sec, "name": "gnabar_hh", "value": gna, "mechanism": "hh"},
                   {"section": sec, "name": "gkbar_hh", "value": 0.045, "mechanism": "hh"},
                   {"section": sec, "name": "gl_hh", "value": 0.0, "mechanism": "hh"}]
    for sec in ("soma", "axon", "dend"):
        genome.append({"section": sec, "name": "g_pas", "value": 5.0e-5, "mechanism": ""})
    return {
        "passive": [{"ra": 120.0, "e_pas": -68.0, "cm": [{"section": s, "cm": 1.0} for s in ("soma", "axon",
                                                                                             "dend")]}],
        "conditions": [{"celsius": 34.0, "v_init": -68.0,
                        "erev": [{"section": s, "ena": 53.0, "ek": -85.0} for s in ("soma", "axon", "dend")]}],
        "genome": genome,
    }


def write_components(base: Path) -> None:
    comp = base / "components"
    bio = comp / "biophysical_neuron_models"
    syn = comp / "synaptic_models"
    morph = comp / "morphologies"
    mod = comp / "mechanisms" / "modfiles"
    for d in (bio, syn, morph, mod):
        d.mkdir(parents=True, exist_ok=True)
    (bio / "exc_perisomatic.json").write_text(json.dumps(exc_params(), indent=2) + "\n")
    (bio / "pvalb_allactive.json").write_text(json.dumps(inh_params(), indent=2) + "\n")
    (syn / "AMPA_ExcToExc.json").write_text(json.dumps(
        {"level_of_detail": "exp2syn", "tau1": 1.0, "tau2": 3.0, "erev": 0.0}, indent=2) + "\n")
    (syn / "AMPA_ExcToInh.json").write_text(json.dumps(
        {"level_of_detail": "exp2syn", "tau1": 0.1, "tau2": 0.5, "erev": 0.0}, indent=2) + "\n")
    (syn / "GABA_InhToExc.json").write_text(json.dumps(
        {"level_of_detail": "exp2syn", "tau1": 2.7, "tau2": 15.0, "erev": -70.0}, indent=2) + "\n")
    for name in EXC_MORPHS + INH_MORPHS:
        src = HERE / "components" / "morphologies" / name
        if not src.exists():
            src = SHARED_MORPH / name
        if src.resolve() != (morph / name).resolve():
            shutil.copyfile(src, morph / name)
    for name in ("Ih.mod", "vecevent.mod"):
        src = HERE / "components" / "mechanisms" / "modfiles" / name
        if src.resolve() != (mod / name).resolve():
            shutil.copyfile(src, mod / name)


def poisson_trains(n: int, rate_hz: float, tstop_ms: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids, times = [], []
    for nid in range(n):
        ts = np.unique(np.round(rng.uniform(1.0, tstop_ms, size=rng.poisson(rate_hz * tstop_ms / 1000.0)), 3))
        ids.append(np.full(len(ts), nid, dtype=np.uint64))
        times.append(ts)
    return np.concatenate(ids), np.concatenate(times)


def write_spikes(path: Path, population: str, node_ids: np.ndarray, timestamps: np.ndarray) -> None:
    order = np.lexsort((node_ids, timestamps))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["magic"] = np.uint32(0x0A7A)
        f.attrs["version"] = np.array([0, 1], dtype=np.uint32)
        grp = f.create_group(f"spikes/{population}")
        grp.attrs["sorting"] = "by_time"
        ts = grp.create_dataset("timestamps", data=timestamps[order].astype(np.float64))
        ts.attrs["units"] = "ms"
        grp.create_dataset("node_ids", data=node_ids[order].astype(np.uint64))


def dendrite_sections(swc: Path, processing: str) -> np.ndarray:
    """Section indices of dendrites in the ``all`` order BMTK has after ``processing`` (for
    edges with explicit afferent_section_id)."""
    from sonatarun.engines.neuron.morphology import MorphologyTemplate

    tpl = MorphologyTemplate.read(swc)
    kept = [s for s in tpl.sections if not (s.type == "axon" and processing in ("aibs_perisomatic",
                                                                                  "aibs_allactive"))]
    return np.array([i for i, s in enumerate(kept) if s.type == "dend"])


def config_dict(tstop: float, reports: bool = True) -> dict:
    cfg = {
        "manifest": {"$BASE_DIR": "${configdir}", "$NETWORK_DIR": "$BASE_DIR/network",
                     "$COMPONENTS_DIR": "$BASE_DIR/components", "$INPUT_DIR": "$BASE_DIR/inputs",
                     "$OUTPUT_DIR": "$BASE_DIR/output"},
        "target_simulator": "NEURON",
        "run": {"tstart": 0.0, "tstop": tstop, "dt": 0.025, "dL": 20.0, "spike_threshold": -15.0,
                "nsteps_block": 4000},
        "conditions": {"celsius": 20.0, "v_init": -70.0},
        "inputs": {"lgn_spikes": {"input_type": "spikes", "module": "sonata",
                                  "input_file": "$INPUT_DIR/lgn_spikes.h5", "node_set": "lgn"}},
        "output": {"log_file": "log.txt", "output_dir": "$OUTPUT_DIR", "spikes_file": "spikes.h5",
                   "spikes_sort_order": "time", "overwrite_output_dir": True},
        "reports": {},
        "node_sets": {"recorded": {"population": "bio", "node_id": [0, 7]}},
        "components": {"morphologies_dir": "$COMPONENTS_DIR/morphologies",
                       "biophysical_neuron_models_dir": "$COMPONENTS_DIR/biophysical_neuron_models",
                       "synaptic_models_dir": "$COMPONENTS_DIR/synaptic_models",
                       "mechanisms_dir": "$COMPONENTS_DIR/mechanisms"},
        "networks": {
            "nodes": [{"nodes_file": "$NETWORK_DIR/bio_nodes.h5", "node_types_file": "$NETWORK_DIR/bio_node_types.csv"},
                      {"nodes_file": "$NETWORK_DIR/lgn_nodes.h5", "node_types_file": "$NETWORK_DIR/lgn_node_types.csv"}],
            "edges": [{"edges_file": "$NETWORK_DIR/bio_bio_edges.h5",
                       "edge_types_file": "$NETWORK_DIR/bio_bio_edge_types.csv"},
                      {"edges_file": "$NETWORK_DIR/lgn_bio_edges.h5",
                       "edge_types_file": "$NETWORK_DIR/lgn_bio_edge_types.csv"}],
        },
    }
    if reports:
        cfg["reports"] = {
            "v_soma": {"module": "membrane_report", "cells": "bio", "variable_name": "v", "sections": "soma",
                       "file_name": "v_soma.h5"},
            "v_all": {"module": "membrane_report", "cells": "recorded", "variable_name": "v", "sections": "all",
                      "dt": 0.1, "file_name": "v_all.h5"},
            "syn_i": {"module": "netcon_report", "cells": "recorded", "variable_name": "i",
                      "syn_type": "Exp2Syn", "file_name": "syn_i.h5"},
        }
        cfg["node_sets"]["bio"] = {"population": "bio"}
    else:
        cfg["node_sets"]["bio"] = {"population": "bio"}
    cfg["node_sets"]["lgn"] = {"population": "lgn"}
    return cfg


def build(base: Path, n_exc_per_morph: int = 6, n_inh_per_morph: int = 3, n_lgn: int = 30,
          tstop: float = 400.0, seed: int = SEED, reports: bool = True) -> Path:
    """Write the whole example into ``base`` and return it."""
    from bmtk.builder import NetworkBuilder

    base = Path(base)
    net_dir = base / "network"
    if net_dir.exists():
        shutil.rmtree(net_dir)
    net_dir.mkdir(parents=True)
    write_components(base)
    rng = np.random.default_rng(seed)

    bio = NetworkBuilder("bio")
    for i, m in enumerate(EXC_MORPHS):
        n = n_exc_per_morph
        bio.add_nodes(N=n, pop_name=f"e{i}", ei="e", model_type="biophysical", model_template="ctdb:Biophys1.hoc",
                      model_processing="aibs_perisomatic", dynamics_params="exc_perisomatic.json", morphology=m,
                      x=rng.uniform(-100, 100, n), y=rng.uniform(-100, 100, n), z=rng.uniform(-100, 100, n),
                      rotation_angle_yaxis=rng.uniform(0, 2 * np.pi, n))
    for i, m in enumerate(INH_MORPHS):
        n = n_inh_per_morph
        bio.add_nodes(N=n, pop_name=f"i{i}", ei="i", model_type="biophysical", model_template="ctdb:Biophys1.hoc",
                      model_processing="aibs_allactive", dynamics_params="pvalb_allactive.json", morphology=m,
                      x=rng.uniform(-100, 100, n), y=rng.uniform(-100, 100, n), z=rng.uniform(-100, 100, n),
                      rotation_angle_yaxis=rng.uniform(0, 2 * np.pi, n))

    def pair_rng(s, t, salt):
        return np.random.default_rng([seed, salt, int(s.node_id), int(t.node_id)])

    def sparse(source, target, p, lo, hi, salt):
        if source.node_id == target.node_id:
            return 0
        r = pair_rng(source, target, salt)
        return int(r.integers(lo, hi + 1)) if r.random() < p else 0

    bio.add_edges(source={"ei": "e"}, target={"ei": "e"}, connection_rule=sparse,
                  connection_params={"p": 0.25, "lo": 1, "hi": 4, "salt": 1},
                  syn_weight=1.0e-3, delay=2.0, target_sections=["basal", "apical"], distance_range=[30.0, 150.0],
                  dynamics_params="AMPA_ExcToExc.json", model_template="exp2syn")
    bio.add_edges(source={"ei": "e"}, target={"ei": "i"}, connection_rule=sparse,
                  connection_params={"p": 0.4, "lo": 1, "hi": 3, "salt": 2},
                  syn_weight=6.0e-4, delay=1.5, target_sections=["somatic", "basal"], distance_range=[0.0, 1.0e20],
                  dynamics_params="AMPA_ExcToInh.json", model_template="exp2syn")
    bio.add_edges(source={"ei": "i"}, target={"ei": "e"}, connection_rule=sparse,
                  connection_params={"p": 0.5, "lo": 2, "hi": 5, "salt": 3},
                  syn_weight=8.0e-4, delay=1.0, target_sections=["somatic", "basal"], distance_range=[0.0, 50.0],
                  dynamics_params="GABA_InhToExc.json", model_template="exp2syn")
    bio.build()
    bio.save_nodes(output_dir=str(net_dir))
    bio.save_edges(output_dir=str(net_dir))

    lgn = NetworkBuilder("lgn")
    lgn.add_nodes(N=n_lgn, pop_name="lgn", model_type="virtual")

    def feed(source, target, salt):
        r = pair_rng(source, target, salt)
        return int(r.integers(2, 6)) if r.random() < 0.3 else 0

    lgn.add_edges(source=lgn.nodes(), target=bio.nodes(ei="e"), connection_rule=feed,
                  connection_params={"salt": 4}, syn_weight=6.0e-3, delay=2.0, target_sections=["basal", "apical"],
                  distance_range=[0.0, 150.0], dynamics_params="AMPA_ExcToExc.json", model_template="exp2syn")
    lgn.add_edges(source=lgn.nodes(), target=bio.nodes(ei="i"), connection_rule=feed,
                  connection_params={"salt": 5}, syn_weight=4.0e-3, delay=2.0, target_sections=["somatic", "basal"],
                  distance_range=[0.0, 1.0e20], dynamics_params="AMPA_ExcToInh.json", model_template="exp2syn")

    # one edge type with explicit synapse locations (afferent_section_id/pos): a dendrite chosen per edge
    dend_ix = {m: dendrite_sections(base / "components" / "morphologies" / m, "aibs_perisomatic")
               for m in EXC_MORPHS}

    def one_each(source, target, salt):
        return 1 if pair_rng(source, target, salt).random() < 0.15 else 0

    def place(source, target, salt):
        r = pair_rng(source, target, salt)
        choices = dend_ix[target["morphology"]]
        return [int(choices[r.integers(len(choices))]), float(np.round(r.uniform(0.05, 0.95), 4))]

    cm = lgn.add_edges(source=lgn.nodes(), target=bio.nodes(ei="e"), connection_rule=one_each,
                       connection_params={"salt": 6}, syn_weight=2.0e-3, delay=3.0,
                       dynamics_params="AMPA_ExcToExc.json", model_template="exp2syn")
    cm.add_properties(["afferent_section_id", "afferent_section_pos"], rule=place, rule_params={"salt": 7},
                      dtypes=[np.int64, np.float64])
    lgn.build()
    lgn.save_nodes(output_dir=str(net_dir))
    lgn.save_edges(output_dir=str(net_dir))

    ids, ts = poisson_trains(n_lgn, 20.0, tstop, seed + 1)
    write_spikes(base / "inputs" / "lgn_spikes.h5", "lgn", ids, ts)
    cfg = config_dict(tstop, reports)
    (base / "config.simulation.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return base


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    build(args.out)
    print(f"wrote {args.out}")
