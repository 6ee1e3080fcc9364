"""Generate SONATA point-neuron networks of a given size for the NEST benchmark.

The files are written with numpy/h5py in one pass (bmtk.builder needs hours for
10M edges). Each network is a balanced random network BMTK PointNet can run:

- population ``net``: 80% excitatory, 20% inhibitory ``nest:iaf_psc_alpha`` (two node types,
  parameters from point_neuron_models_dir JSON files);
- population ``ext``: virtual cells (N/10) with Poisson spike trains (SONATA spikes file);
- edges ``net -> net``: fixed in-degree, per-edge ``syn_weight`` and ``delay`` h5 columns,
  ``nsyns`` column, one edge type per source type, sorted by target with SONATA indices.
  Like ``bmtk.builder`` output, a (source, target) pair has one edge, its multiplicity in
  ``nsyns``; ``--multapses`` draws sources with replacement instead, so some pairs repeat
  (NEST then must keep the file order of those connections, see docs/nest.md);
- edges ``ext -> net``: 10 per target cell, static synapses.

    python benchmarks/gen_point_network.py --cells 1000 --edges 100000 --out benchmarks/generated/n1k
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

EXT_PER_CELL = 10
TSTOP = 500.0
DT = 0.1
EXT_RATE_HZ = 15.0

IAF = {"C_m": 250.0, "tau_m": 10.0, "t_ref": 2.0, "E_L": -70.0, "V_m": -70.0, "V_th": -55.0, "V_reset": -70.0,
       "tau_syn_ex": 2.0, "tau_syn_in": 2.0}


def _write_nodes(path: Path, pop: str, type_ids: np.ndarray) -> None:
    n = len(type_ids)
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.array([0, 1], dtype=np.uint32)
        f.attrs["magic"] = np.uint32(0x0A7A)
        g = f.create_group(f"nodes/{pop}")
        g.create_dataset("node_id", data=np.arange(n, dtype=np.uint64))
        g.create_dataset("node_type_id", data=type_ids.astype(np.uint64))
        g.create_dataset("node_group_id", data=np.zeros(n, dtype=np.uint32))
        g.create_dataset("node_group_index", data=np.arange(n, dtype=np.uint64))
        g.create_group("0")


def _index(grp: h5py.Group, name: str, ids: np.ndarray, n_nodes: int) -> None:
    """Index datasets (node_id_to_range, range_to_edge_id) for edges already sorted by `ids`."""
    idx = grp.create_group(f"indices/{name}")
    starts = np.searchsorted(ids, np.arange(n_nodes), side="left")
    ends = np.searchsorted(ids, np.arange(n_nodes), side="right")
    has = ends > starts
    n2r = np.zeros((n_nodes, 2), dtype=np.uint64)
    n2r[has, 0] = np.cumsum(has)[has] - 1
    n2r[has, 1] = n2r[has, 0] + 1
    idx.create_dataset("node_id_to_range", data=n2r)  # BMTK's name (SONATA: node_id_to_ranges)
    idx.create_dataset("range_to_edge_id", data=np.stack([starts[has], ends[has]], axis=1).astype(np.uint64))


def _write_edges(path: Path, name: str, src_pop: str, tgt_pop: str, src: np.ndarray, tgt: np.ndarray,
                 type_ids: np.ndarray, columns: dict[str, np.ndarray], n_tgt_nodes: int) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.array([0, 1], dtype=np.uint32)
        f.attrs["magic"] = np.uint32(0x0A7A)
        g = f.create_group(f"edges/{name}")
        s = g.create_dataset("source_node_id", data=src.astype(np.uint64))
        s.attrs["node_population"] = src_pop
        t = g.create_dataset("target_node_id", data=tgt.astype(np.uint64))
        t.attrs["node_population"] = tgt_pop
        g.create_dataset("edge_type_id", data=type_ids.astype(np.uint32))
        g.create_dataset("edge_group_id", data=np.zeros(len(src), dtype=np.uint32))
        g.create_dataset("edge_group_index", data=np.arange(len(src), dtype=np.uint64))
        grp = g.create_group("0")
        for col, values in columns.items():
            grp.create_dataset(col, data=values)
        _index(g, "target_to_source", tgt, n_tgt_nodes)


GENERATOR = 3  # bumped when the same arguments give other files (the benchmark then regenerates)


def distinct_sources(rng: np.random.Generator, n_targets: int, k: int, n_sources: int) -> np.ndarray:
    """k different sources per target (rows sorted), drawn uniformly: duplicates are redrawn."""
    src = rng.integers(0, n_sources, size=(n_targets, k), dtype=np.int64)
    while True:
        src.sort(axis=1)
        dup = np.zeros(src.shape, dtype=bool)
        dup[:, 1:] = src[:, 1:] == src[:, :-1]
        if not dup.any():
            return src
        src[dup] = rng.integers(0, n_sources, size=int(dup.sum()), dtype=np.int64)


def generate(out: Path, n_cells: int, n_edges: int, seed: int = 1, tstop: float = TSTOP,
             multapses: bool = False) -> Path:
    """Write the network, components, input spikes and config.simulation.json; return the config path."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    net_dir, comp, inputs = out / "network", out / "components", out / "inputs"
    for d in (net_dir, comp / "point_neuron_models", comp / "synaptic_models", inputs):
        d.mkdir(parents=True, exist_ok=True)
    (comp / "point_neuron_models" / "iaf_exc.json").write_text(json.dumps(dict(IAF, I_e=180.0)))
    (comp / "point_neuron_models" / "iaf_inh.json").write_text(json.dumps(dict(IAF, I_e=180.0, tau_m=8.0)))
    (comp / "synaptic_models" / "static.json").write_text("{}")

    n_exc = int(round(0.8 * n_cells))
    node_types = np.where(np.arange(n_cells) < n_exc, 100, 101)
    _write_nodes(net_dir / "net_nodes.h5", "net", node_types)
    (net_dir / "net_node_types.csv").write_text(
        "node_type_id model_type model_template dynamics_params pop_name\n"
        "100 point_neuron nest:iaf_psc_alpha iaf_exc.json exc\n"
        "101 point_neuron nest:iaf_psc_alpha iaf_inh.json inh\n")
    n_ext = max(1, n_cells // 10)
    _write_nodes(net_dir / "ext_nodes.h5", "ext", np.full(n_ext, 100))
    (net_dir / "ext_node_types.csv").write_text("node_type_id model_type pop_name\n100 virtual ext\n")

    # recurrent: fixed in-degree, sorted by target then source
    k = max(1, n_edges // n_cells - EXT_PER_CELL)
    tgt = np.repeat(np.arange(n_cells, dtype=np.int64), k)
    if multapses:
        src = rng.integers(0, n_cells, size=len(tgt), dtype=np.int64)
    else:
        src = distinct_sources(rng, n_cells, min(k, n_cells), n_cells).ravel()
        tgt = np.repeat(np.arange(n_cells, dtype=np.int64), min(k, n_cells))
    order = np.lexsort((src, tgt))
    src, tgt = src[order], tgt[order]
    is_inh = src >= n_exc
    etype = np.where(is_inh, 101, 100)
    # balanced-ish: inhibition 4x stronger than excitation, scaled with in-degree
    j_exc = 20.0 * 100.0 / k
    weights = np.where(is_inh, -5.0 * j_exc, j_exc) * rng.uniform(0.8, 1.2, size=len(src))
    delays = np.round(rng.uniform(1.0, 3.0, size=len(src)), 1)
    nsyns = rng.integers(1, 3, size=len(src)).astype(np.uint16)
    weights = weights / nsyns
    _write_edges(net_dir / "net_net_edges.h5", "net_to_net", "net", "net", src, tgt, etype,
                 {"syn_weight": weights.astype(np.float64), "delay": delays.astype(np.float64),
                  "nsyns": nsyns}, n_cells)
    (net_dir / "net_net_edge_types.csv").write_text(
        "edge_type_id model_template dynamics_params\n"
        "100 static_synapse static.json\n"
        "101 static_synapse static.json\n")

    etgt = np.repeat(np.arange(n_cells, dtype=np.int64), EXT_PER_CELL)
    if multapses:
        esrc = np.sort(rng.integers(0, n_ext, size=len(etgt)))
    else:
        esrc = distinct_sources(rng, n_cells, EXT_PER_CELL, n_ext).ravel()
    eorder = np.lexsort((esrc, etgt))
    esrc, etgt = esrc[eorder], etgt[eorder]
    _write_edges(net_dir / "ext_net_edges.h5", "ext_to_net", "ext", "net", esrc, etgt,
                 np.full(len(esrc), 100), {}, n_cells)
    (net_dir / "ext_net_edge_types.csv").write_text(
        "edge_type_id model_template dynamics_params syn_weight delay\n"
        "100 static_synapse static.json 90.0 1.5\n")

    # Poisson inputs, off-grid times (BMTK plays them with precise_times)
    n_spk = rng.poisson(EXT_RATE_HZ * tstop / 1000.0, size=n_ext)
    ids = np.repeat(np.arange(n_ext), n_spk)
    times = rng.uniform(1.0, tstop, size=len(ids))
    order = np.lexsort((times, ids))
    with h5py.File(inputs / "ext_spikes.h5", "w") as f:
        g = f.create_group("spikes/ext")
        g.attrs["sorting"] = "by_id"
        g.create_dataset("node_ids", data=ids[order].astype(np.uint64))
        ts = g.create_dataset("timestamps", data=times[order])
        ts.attrs["units"] = "ms"

    config = {
        "manifest": {"$BASE_DIR": "${configdir}"},
        "target_simulator": "NEST",
        "run": {"tstart": 0.0, "tstop": tstop, "dt": DT},
        "node_sets": {"ext_cells": {"population": "ext"}},
        "inputs": {"ext_spikes": {"input_type": "spikes", "module": "sonata",
                                  "input_file": "$BASE_DIR/inputs/ext_spikes.h5", "node_set": "ext_cells"}},
        "output": {"output_dir": "$BASE_DIR/output", "log_file": "log.txt", "spikes_file": "spikes.h5",
                   "overwrite_output_dir": True},
        "components": {"point_neuron_models_dir": "$BASE_DIR/components/point_neuron_models",
                       "synaptic_models_dir": "$BASE_DIR/components/synaptic_models"},
        "networks": {
            "nodes": [{"nodes_file": "$BASE_DIR/network/net_nodes.h5",
                       "node_types_file": "$BASE_DIR/network/net_node_types.csv"},
                      {"nodes_file": "$BASE_DIR/network/ext_nodes.h5",
                       "node_types_file": "$BASE_DIR/network/ext_node_types.csv"}],
            "edges": [{"edges_file": "$BASE_DIR/network/net_net_edges.h5",
                       "edge_types_file": "$BASE_DIR/network/net_net_edge_types.csv"},
                      {"edges_file": "$BASE_DIR/network/ext_net_edges.h5",
                       "edge_types_file": "$BASE_DIR/network/ext_net_edge_types.csv"}],
        },
    }
    path = out / "config.simulation.json"
    path.write_text(json.dumps(config, indent=2))
    (out / "SIZE").write_text(json.dumps({"cells": n_cells, "virtual": n_ext, "edges": int(len(src) + len(esrc)),
                                          "generator": GENERATOR, "multapses": multapses}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, required=True)
    ap.add_argument("--edges", type=int, required=True, help="total edges (recurrent + 10 external per cell)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tstop", type=float, default=TSTOP)
    ap.add_argument("--multapses", action="store_true", help="sources drawn with replacement (pairs may repeat)")
    args = ap.parse_args()
    print(generate(args.out, args.cells, args.edges, args.seed, args.tstop, args.multapses))


if __name__ == "__main__":
    main()
