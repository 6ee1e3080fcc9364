"""Build the small PointNet example network with bmtk.builder (run once; outputs are committed).

Three populations:
- ``cortex`` (internal): 30 ``nest:iaf_psc_alpha`` excitatory cells, 20 Allen-form GLIF cells
  (``nest:glif_lif_asc_psc`` + an Allen ``*_glif_lif_asc_psc.json``, converted to ``glif_psc``)
  and 10 native ``nest:glif_psc`` inhibitory cells;
- ``thal`` (internal): 15 ``nest:iaf_psc_delta`` cells driven by a current clamp;
- ``lgn`` (virtual): 40 Poisson spike trains (off-grid times) in inputs/lgn_spikes.h5.

Edges: static synapses (nsyns > 1, per-edge h5 delays on one type, receptor ports on GLIF
targets) and an ``stdp_synapse`` type between the excitatory iaf cells.

    cd examples/point_nest && python build_network.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from bmtk.builder import NetworkBuilder
from bmtk.utils.reports.spike_trains import PoissonSpikeGenerator

HERE = Path(__file__).resolve().parent


def random_nsyns(source, target, p, nmax):
    """Connect with probability p, 1..nmax synapses (BMTK multiplies syn_weight by nsyns)."""
    if source.node_id == target.node_id and source["pop_name"] == target["pop_name"]:
        return 0
    return int(np.random.randint(1, nmax + 1)) if np.random.rand() < p else 0


def grid_delay(source, target):
    """Per-edge delays on the 0.1 ms grid, stored as an h5 column."""
    return float(np.round(np.random.uniform(1.0, 4.0), 1))


def build(out: Path = HERE / "network") -> None:
    np.random.seed(42)
    out.mkdir(exist_ok=True)

    cortex = NetworkBuilder("cortex")
    cortex.add_nodes(N=30, pop_name="exc", ei="e", model_type="point_neuron",
                     model_template="nest:iaf_psc_alpha", dynamics_params="iaf_exc.json")
    cortex.add_nodes(N=20, pop_name="glif", ei="e", model_type="point_neuron",
                     model_template="nest:glif_lif_asc_psc", dynamics_params="example_glif_lif_asc_psc.json")
    cortex.add_nodes(N=10, pop_name="inh", ei="i", model_type="point_neuron",
                     model_template="nest:glif_psc", dynamics_params="glif_psc_inh.json")

    # recurrent exc -> exc with STDP
    cortex.add_edges(source={"pop_name": "exc"}, target={"pop_name": "exc"},
                     connection_rule=random_nsyns, connection_params={"p": 0.15, "nmax": 2},
                     syn_weight=90.0, delay=1.5, dynamics_params="stdp_exc.json",
                     model_template="stdp_synapse")
    # exc -> glif / inh (static, receptor 1), per-edge delays
    for target in ("glif", "inh"):
        cm = cortex.add_edges(source={"pop_name": "exc"}, target={"pop_name": target},
                              connection_rule=random_nsyns, connection_params={"p": 0.2, "nmax": 3},
                              syn_weight=30.0, dynamics_params="static_glif_exc.json",
                              model_template="static_synapse")
        cm.add_properties("delay", rule=grid_delay, dtypes=float)
    # inh -> exc (static, negative weight)
    cortex.add_edges(source={"pop_name": "inh"}, target={"pop_name": "exc"},
                     connection_rule=random_nsyns, connection_params={"p": 0.3, "nmax": 2},
                     syn_weight=-60.0, delay=1.0, dynamics_params="static_iaf.json",
                     model_template="static_synapse")
    # inh -> glif (receptor 2)
    cortex.add_edges(source={"pop_name": "inh"}, target={"pop_name": "glif"},
                     connection_rule=random_nsyns, connection_params={"p": 0.3, "nmax": 2},
                     syn_weight=-20.0, delay=1.0, dynamics_params="static_glif_inh.json",
                     model_template="static_synapse")
    cortex.build()
    cortex.save(output_dir=str(out))

    thal = NetworkBuilder("thal")
    thal.add_nodes(N=15, pop_name="relay", ei="e", model_type="point_neuron",
                   model_template="nest:iaf_psc_delta", dynamics_params="iaf_delta_thal.json")
    thal.add_edges(target=cortex.nodes(pop_name="exc"), source=thal.nodes(),
                   connection_rule=random_nsyns, connection_params={"p": 0.3, "nmax": 2},
                   syn_weight=60.0, delay=2.0, dynamics_params="static_iaf.json",
                   model_template="static_synapse", weight_function="wmax")
    thal.build()
    thal.save(output_dir=str(out))

    lgn = NetworkBuilder("lgn")
    lgn.add_nodes(N=40, pop_name="lgn", model_type="virtual", ei="e")
    lgn.add_edges(source=lgn.nodes(), target=cortex.nodes(pop_name="exc"),
                  connection_rule=random_nsyns, connection_params={"p": 0.3, "nmax": 3},
                  syn_weight=160.0, delay=2.0, dynamics_params="static_iaf.json",
                  model_template="static_synapse")
    for target in ("glif", "inh"):
        lgn.add_edges(source=lgn.nodes(), target=cortex.nodes(pop_name=target),
                      connection_rule=random_nsyns, connection_params={"p": 0.25, "nmax": 2},
                      syn_weight=30.0, delay=2.0, dynamics_params="static_glif_exc.json",
                      model_template="static_synapse")
    lgn.add_edges(source=lgn.nodes(), target=thal.nodes(),
                  connection_rule=random_nsyns, connection_params={"p": 0.2, "nmax": 2},
                  syn_weight=0.7, delay=1.0, dynamics_params="static_iaf.json",
                  model_template="static_synapse")
    lgn.build()
    lgn.save(output_dir=str(out))

    inputs = HERE / "inputs"
    inputs.mkdir(exist_ok=True)
    psg = PoissonSpikeGenerator(population="lgn", seed=7)
    psg.add(node_ids=list(range(40)), firing_rate=25.0, times=(0.005, 0.5))
    psg.to_sonata(str(inputs / "lgn_spikes.h5"))


if __name__ == "__main__":
    build()
