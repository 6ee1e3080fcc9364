"""Circuit reading: the node-type join, several groups, indices, node-set queries."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from sonatarun.circuit import Circuit, resolve_node_set
from sonatarun.circuit.edges import EdgePopulation, ranges_to_ids
from sonatarun.config.model import EdgeFiles, NodeFiles
from sonatarun.errors import CircuitError, ConfigError


@pytest.fixture
def circuit_files(tmp_path):
    """Two populations in one nodes file, two node groups, an h5 dynamics_params subgroup."""
    nodes = tmp_path / "nodes.h5"
    with h5py.File(nodes, "w") as f:
        a = f.create_group("nodes/A")
        a["node_type_id"] = np.array([1, 2, 1, 2, 1])
        a["node_group_id"] = np.array([0, 1, 0, 1, 0])
        a["node_group_index"] = np.array([0, 0, 1, 1, 2])
        a["0/x"] = np.array([10.0, 11.0, 12.0])
        a["0/pop_name"] = np.array([b"e", b"e2", b"e"])  # h5 column wins over the CSV's
        a["1/y"] = np.array([5.0, 6.0])
        a["1/dynamics_params/tau"] = np.array([0.5, 0.7])
        b = f.create_group("nodes/B")
        b["node_type_id"] = np.array([3, 3])
        b["node_group_id"] = np.array([0, 0])
        b["node_group_index"] = np.array([0, 1])
        b.create_group("0")
    types = tmp_path / "node_types.csv"
    types.write_text("node_type_id model_type pop_name model_template\n"
                     "1 point_process csv_e nrn:IntFire1\n2 point_process csv_i nrn:IntFire1\n3 virtual input NONE\n")
    edges = tmp_path / "edges.h5"
    src = np.array([0, 1, 0, 1, 1, 0])
    tgt = np.array([4, 0, 2, 2, 4, 0])
    with h5py.File(edges, "w") as f:
        g = f.create_group("edges/B_to_A")
        g["source_node_id"] = src
        g["source_node_id"].attrs["node_population"] = "B"
        g["target_node_id"] = tgt
        g["target_node_id"].attrs["node_population"] = "A"
        g["edge_type_id"] = np.full(6, 7)
        g["edge_group_id"] = np.zeros(6, int)
        g["edge_group_index"] = np.arange(6)
        g["0/syn_weight"] = np.arange(6) * 0.5
        # target_to_source index: per target node, ranges into range_to_edge_id
        order = np.argsort(tgt, kind="stable")
        r2e, n2r = [], np.zeros((5, 2), dtype=np.uint64)
        for node in range(5):
            ids = np.sort(np.nonzero(tgt == node)[0])
            start = len(r2e)
            for e in ids:  # one range per edge: enough to exercise the expansion
                r2e.append([e, e + 1])
            n2r[node] = [start, len(r2e)]
        g["indices/target_to_source/node_id_to_ranges"] = n2r
        g["indices/target_to_source/range_to_edge_id"] = np.array(r2e, dtype=np.uint64)
        del order
    etypes = tmp_path / "edge_types.csv"
    etypes.write_text("edge_type_id delay dynamics_params\n7 1.5 exc.json\n")
    return tmp_path, nodes, types, edges, etypes


def test_node_table_joins_types_and_groups(circuit_files):
    _, nodes, types, edges, etypes = circuit_files
    c = Circuit.open([NodeFiles(nodes, types)], [EdgeFiles(edges, etypes)])
    assert list(c.nodes) == ["A", "B"] and c.offsets == {"A": 0, "B": 5}
    t = c.nodes["A"].table
    assert t["model_type"].tolist() == ["point_process"] * 5
    assert t["pop_name"].tolist() == ["e", "csv_i", "e2", "csv_i", "e"]
    np.testing.assert_array_equal(t["x"].to_numpy()[[0, 2, 4]], [10, 11, 12])
    assert np.isnan(t["x"].to_numpy()[[1, 3]]).all()
    dyn = c.nodes["A"].node_dynamics(np.array([1, 2, 3]))
    np.testing.assert_allclose(dyn["tau"], [0.5, np.nan, 0.7])
    pop_idx, nid = c.population_of_gids(np.array([0, 4, 5, 6]))
    assert pop_idx.tolist() == [0, 0, 1, 1] and nid.tolist() == [0, 4, 0, 1]


def test_edges_for_owned_targets_use_the_index(circuit_files):
    _, nodes, types, edges, etypes = circuit_files
    (epop,) = EdgePopulation.open_all(edges, etypes)
    ids = epop.edge_ids_for_targets(np.array([0, 4]))
    assert ids.tolist() == [0, 1, 4, 5]
    frame = epop.read(ids)
    assert frame["target_node_id"].tolist() == [4, 0, 4, 0]
    np.testing.assert_allclose(frame["syn_weight"], [0.0, 0.5, 2.0, 2.5])
    # without the index, the same answer from a scan
    with h5py.File(edges, "a") as f:
        del f["edges/B_to_A/indices"]
    assert epop.edge_ids_for_targets(np.array([0, 4])).tolist() == [0, 1, 4, 5]
    assert ranges_to_ids(np.array([[3, 5], [9, 9], [0, 2]])).tolist() == [3, 4, 0, 1]


def test_node_set_queries(circuit_files):
    _, nodes, types, edges, etypes = circuit_files
    c = Circuit.open([NodeFiles(nodes, types)], [])
    named = {"exc": {"population": "A", "pop_name": "e"}, "both": ["exc", "B"], "few": [1, 3]}
    assert resolve_node_set("exc", c, named)["A"].tolist() == [0, 4]
    both = resolve_node_set("both", c, named)
    assert both["A"].tolist() == [0, 4] and both["B"].tolist() == [0, 1]
    assert resolve_node_set({"population": "A", "pop_name": ["e", "csv_i"], "node_id": [0, 1, 9]}, c,
                            named)["A"].tolist() == [0, 1]
    assert resolve_node_set({"model_type": "virtual"}, c, named) == {"B": pytest.approx([0, 1])}
    assert resolve_node_set("few", c, named)["A"].tolist() == [1, 3]
    with pytest.raises(ConfigError, match="unknown node set 'nope'.*use one of: A, B, both, exc, few"):
        resolve_node_set("nope", c, named)
    with pytest.raises(ConfigError, match="population 'A' has no attribute 'color'"):
        resolve_node_set({"population": "A", "color": "red"}, c, named)


def test_edge_population_naming_an_undefined_node_population(circuit_files):
    _, nodes, types, edges, etypes = circuit_files
    with h5py.File(edges, "a") as f:
        f["edges/B_to_A/source_node_id"].attrs["node_population"] = "C"
    with pytest.raises(CircuitError, match="source node population 'C' that no nodes file defines"):
        Circuit.open([NodeFiles(nodes, types)], [EdgeFiles(edges, etypes)])


def test_gaussian_ll_equals_bmtk_for_any_angles():
    """BMTK's formula wraps |t - s| % 360 before subtracting from 180 (operator precedence)."""
    import pandas as pd
    from bmtk.simulator.bionet.default_setters.synaptic_weights import gaussianLL

    from sonatarun.weights import gaussian_ll

    rng = np.random.default_rng(3)
    src, tgt = rng.uniform(-720, 720, 200), rng.uniform(-720, 720, 200)
    edges = pd.DataFrame({"syn_weight": rng.uniform(0.1, 2, 200), "weight_sigma": rng.uniform(10, 90, 200)})
    ours = gaussian_ll(edges, pd.DataFrame({"tuning_angle": src}), pd.DataFrame({"tuning_angle": tgt}))
    theirs = [gaussianLL(e, {"tuning_angle": s}, {"tuning_angle": t})
              for e, s, t in zip(edges.to_dict("records"), src, tgt)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_types_table_reads_as_pandas_does(tmp_path):
    """The types CSV reader (no pandas, for start-up time) gives the values and dtypes that
    pandas.read_csv gives the same file: quoted values with spaces, missing values, int
    columns with gaps (float), floats, bools, strings; bad files fail with the file named."""
    import pandas as pd

    from sonatarun.circuit.types_table import read_types_table

    path = tmp_path / "types.csv"
    path.write_text('node_type_id  model_type pop_name nsyns syn_weight flag  dynamics_params\n'
                    '1 point_process "exc L4" 2 1.5e-3 True a.json\n'
                    '2 virtual NONE NULL -0.5 False "b c.json"\n'
                    '\n'
                    '30 biophysical null 7 NaN True None\n')
    ours = read_types_table(path, "node_type_id")
    theirs = pd.read_csv(path, sep=" ", skipinitialspace=True, keep_default_na=False,
                         na_values=["NONE", "NULL", "None", "null", "NaN", ""])
    assert ours.names == list(theirs.columns)
    for col in theirs.columns:
        want = theirs[col]
        got = ours.columns[col]
        if want.dtype.kind in "iufb":
            assert got.dtype.kind == want.dtype.kind, col
            np.testing.assert_array_equal(got, want.to_numpy(), err_msg=col)
        else:
            assert [None if pd.isna(v) else v for v in want.tolist()] == got.tolist(), col
    assert ours.row(2) == {"node_type_id": 2, "model_type": "virtual", "pop_name": None, "nsyns": None,
                           "syn_weight": -0.5, "flag": False, "dynamics_params": "b c.json"}
    assert 30 in ours and 4 not in ours and ours.missing(np.array([1, 4, 30, 5])) == [4, 5]
    np.testing.assert_array_equal(ours.take(np.array([30, 1, 30]))["nsyns"], [7.0, 2.0, 7.0])

    path.write_text("node_type_id model_type\n1 virtual\n1 biophysical\n")
    with pytest.raises(CircuitError, match="node_type_id 1 appears twice") as err:
        read_types_table(path, "node_type_id")
    assert str(path) in err.value.render()
    path.write_text("node_type_id model_type\n1 virtual extra\n")
    with pytest.raises(CircuitError, match="line 2 has 3 values for 2 columns"):
        read_types_table(path, "node_type_id")
    path.write_text("edge_type_id model_type\n1 virtual\n")
    with pytest.raises(CircuitError, match="no 'node_type_id' column"):
        read_types_table(path, "node_type_id")


def test_weight_functions_run_only_where_they_change_a_weight(circuit_files, tmp_path):
    """BMTK's built-ins return syn_weight: a batch naming only them gets its weights without a
    DataFrame or a call per edge; a user function (per-edge, BMTK's signature) named on some
    edges of the same batch is called for exactly those, with the node attributes joined."""
    import pandas as pd

    from sonatarun.weights import apply_weight_functions

    _, nodes, types, edges, etypes = circuit_files
    c = Circuit.open([NodeFiles(nodes, types)], [EdgeFiles(edges, etypes)])
    (epop,) = c.edges

    class Config:  # what apply_weight_functions reads of a SimulationConfig
        components: dict = {"weight_functions": tmp_path / "wf.py"}
        raw: dict = {}

    (tmp_path / "wf.py").write_text("def double_if_e(edge, src, tgt):\n"
                                    "    return edge['syn_weight'] * (2 if tgt['pop_name'] == 'e' else 3)\n")
    w = np.array([1.0, 2.0, 3.0])
    frame_calls = []

    def frame():
        frame_calls.append(1)
        return pd.DataFrame({"source_node_id": [0, 1, 0], "target_node_id": [0, 1, 4], "syn_weight": w})

    row = {"edge_type_id": 7, "delay": 1.5}
    for builtin in ("wmax", "set_syn_weight", "default_weight_fnc"):
        np.testing.assert_array_equal(apply_weight_functions(Config, c, builtin, frame, row, epop, w), w)
    mixed = np.array(["wmax", "double_if_e", None], dtype=object)
    np.testing.assert_array_equal(apply_weight_functions(Config, c, mixed, frame, row, epop, w), [1.0, 6.0, 3.0])
    assert frame_calls == [1]  # built the DataFrame once, for the user function only
    every = np.array(["double_if_e"] * 3, dtype=object)
    np.testing.assert_array_equal(apply_weight_functions(Config, c, every, frame, row, epop, w), [2.0, 6.0, 6.0])
    with pytest.raises(ConfigError, match="weight_function 'nope' is not defined"):
        apply_weight_functions(Config, c, "nope", frame, row, epop, w)
