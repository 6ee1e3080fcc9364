"""A small detailed network for the extracellular (ECP) report tests, built into a directory.

Five biophysical cells on four real reconstructions, chosen to cover BMTK's placement
rules: two cells with x, y, z and all three rotation angles, one with x, y, z and only
``rotation_angle_zaxis``, one with x and y only (BMTK puts it at z = 0) and a y rotation,
and one with no position or rotation columns at all (at the origin, unrotated). Each
combination is its own node group, as BMTK's builder writes them. Virtual inputs make the
cells fire; electrodes stand in a column through the cells and one sits near a soma.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from tests.conftest import EXAMPLES

ELECTRODES = np.array([[0.0, y, 0.0] for y in (-200.0, -100.0, 0.0, 100.0, 200.0, 300.0)] +
                      [[55.0, -35.0, 20.0]])


def bio_builder():
    spec = importlib.util.spec_from_file_location("bio_network_build", EXAMPLES / "bio_network" / "build_network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def write_electrodes(path: Path, xyz: np.ndarray = ELECTRODES) -> Path:
    """BMTK's electrode file: space separated, x_pos y_pos z_pos (plus a channel column BMTK ignores)."""
    lines = ["channel x_pos y_pos z_pos"] + [f"{i} {x!r} {y!r} {z!r}" for i, (x, y, z) in enumerate(xyz.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


def build(base: Path, tstop: float = 40.0, nsteps_block: int = 400, minimum_distance=None,
          contributions: bool = True) -> Path:
    """Write the network, inputs, electrodes and config into `base`; return the config path."""
    from bmtk.builder import NetworkBuilder

    b = bio_builder()
    base = Path(base)
    (base / "network").mkdir(parents=True, exist_ok=True)
    b.write_components(base)
    common = dict(model_type="biophysical", model_template="ctdb:Biophys1.hoc")
    peri = dict(common, model_processing="aibs_perisomatic", dynamics_params="exc_perisomatic.json")
    bio = NetworkBuilder("bio")
    bio.add_nodes(N=2, ei="e", morphology="Scnn1a_473845048_m.swc", x=[40.0, -60.0], y=[-20.0, 30.0],
                  z=[10.0, -25.0], rotation_angle_xaxis=[0.3, -1.1], rotation_angle_yaxis=[2.0, 0.7],
                  rotation_angle_zaxis=[-0.5, 1.3], **peri)
    bio.add_nodes(N=1, ei="i", morphology="Pvalb_469628681_m.swc", x=[70.0], y=[-40.0], z=[25.0],
                  rotation_angle_zaxis=[0.9], model_processing="aibs_allactive",
                  dynamics_params="pvalb_allactive.json", **common)
    bio.add_nodes(N=1, ei="e", morphology="Rorb_325404214_m.swc", **peri)
    bio.add_nodes(N=1, ei="e", morphology="Nr5a1_471087815_m.swc", x=[-30.0], y=[80.0],
                  rotation_angle_yaxis=[-2.4], **peri)

    def pairs(source, target, p, salt):
        if source.node_id == target.node_id:
            return 0
        r = np.random.default_rng([salt, int(source.node_id), int(target.node_id)])
        return int(r.integers(1, 3)) if r.random() < p else 0

    bio.add_edges(source={"ei": "e"}, target={"ei": "i"}, connection_rule=pairs,
                  connection_params={"p": 0.8, "salt": 1}, syn_weight=2.0e-3, delay=1.5,
                  target_sections=["somatic", "basal"], distance_range=[0.0, 1.0e20],
                  dynamics_params="AMPA_ExcToInh.json", model_template="exp2syn")
    bio.add_edges(source={"ei": "i"}, target={"ei": "e"}, connection_rule=pairs,
                  connection_params={"p": 0.8, "salt": 2}, syn_weight=1.0e-3, delay=1.0,
                  target_sections=["somatic", "basal"], distance_range=[0.0, 50.0],
                  dynamics_params="GABA_InhToExc.json", model_template="exp2syn")
    bio.build()
    bio.save(output_dir=str(base / "network"))

    lgn = NetworkBuilder("lgn")
    lgn.add_nodes(N=12, model_type="virtual")

    def feed(source, target, salt):
        r = np.random.default_rng([salt, int(source.node_id), int(target.node_id)])
        return int(r.integers(2, 5)) if r.random() < 0.5 else 0

    lgn.add_edges(source=lgn.nodes(), target=bio.nodes(), connection_rule=feed, connection_params={"salt": 3},
                  syn_weight=8.0e-3, delay=2.0, target_sections=["basal", "apical", "somatic"],
                  distance_range=[0.0, 150.0], dynamics_params="AMPA_ExcToExc.json", model_template="exp2syn")
    lgn.build()
    lgn.save(output_dir=str(base / "network"))
    ids, ts = b.poisson_trains(12, 60.0, tstop, 11)
    b.write_spikes(base / "inputs" / "lgn_spikes.h5", "lgn", ids, ts)
    write_electrodes(base / "electrodes.csv")

    cfg = b.config_dict(tstop, reports=False)
    cfg["run"]["nsteps_block"] = nsteps_block
    ecp = {"module": "extracellular", "electrode_positions": "$BASE_DIR/electrodes.csv", "file_name": "ecp.h5",
           "cells": "bio", "variable_name": "v"}
    if minimum_distance is not None:
        ecp["minimum_distance"] = minimum_distance
    if contributions:
        ecp["contributions_dir"] = "ecp_contributions"
    cfg["reports"] = {"ecp": ecp}
    path = base / "config.simulation.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path
