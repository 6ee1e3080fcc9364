"""Config reading: manifest resolution, split configs, path rules, unknown keys and type errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sonatarun.config import SimulationConfig
from sonatarun.config.loader import load_config
from sonatarun.errors import ConfigError
from tests.conftest import EXAMPLES

RING = EXAMPLES / "ring_intfire"


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return path


def test_nested_manifest_and_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path / "sub" / "c.json", {
        "manifest": {"$OUTPUT_DIR": "$BASE_DIR/out", "$BASE_DIR": "${configdir}", "$N": 3, "RUN": "${workingdir}/x"},
        "run": {"tstop": "$N", "note": "$OUTPUT_DIR/${N}/$UNKNOWN"},
        "output": {"output_dir": "$OUTPUT_DIR", "log_file": "log.txt", "spikes_file": "/abs/s.h5"},
    })
    conf = load_config(cfg)
    base = str(tmp_path / "sub")
    assert conf["run"]["tstop"] == 3  # a lone non-string variable keeps its type
    assert conf["run"]["note"] == f"{base}/out/3/$UNKNOWN"  # unknown variables are left alone, as in BMTK
    assert conf["manifest"]["RUN"] == f"{tmp_path}/x"
    assert conf["output"]["log_file"] == f"{base}/out/log.txt"
    assert conf["output"]["spikes_file"] == "/abs/s.h5"


def test_manifest_cycle_is_an_error(tmp_path):
    cfg = write(tmp_path / "c.json", {"manifest": {"$A": "$B/x", "$B": "$A/y"}})
    with pytest.raises(ConfigError, match=r"cannot resolve manifest variables \$A, \$B"):
        load_config(cfg)


@pytest.mark.parametrize("top", ["network", "simulation"])
def test_split_configs_either_direction(tmp_path, top):
    """The example's split pair loads the same whichever file the user names."""
    sim = json.loads((RING / "config.simulation.json").read_text())
    circuit_keys = {"networks", "components"}
    net_part = {"manifest": sim["manifest"], **{k: v for k, v in sim.items() if k in circuit_keys}}
    sim_part = {"manifest": sim["manifest"], **{k: v for k, v in sim.items() if k not in circuit_keys | {"manifest"}}}
    d = tmp_path / "ring"
    import shutil
    shutil.copytree(RING / "network", d / "network")
    shutil.copytree(RING / "components", d / "components", ignore=shutil.ignore_patterns("x86_64"))
    shutil.copytree(RING / "inputs", d / "inputs")
    if top == "network":
        write(d / "circuit.json", net_part)
        main = write(d / "sim.json", {**sim_part, "network": "circuit.json"})
    else:
        write(d / "sim.json", sim_part)
        main = write(d / "circuit.json", {**net_part, "simulation": "sim.json"})
    cfg = SimulationConfig.from_file(main)
    assert [n.nodes_file.name for n in cfg.nodes] == ["ring_nodes.h5", "input_nodes.h5"]
    assert cfg.run.tstop == 1000.0 and cfg.output.spikes_sort_order == "by_time"
    assert cfg.inputs["input_spikes"]["input_file"] == str(d / "inputs" / "input_spikes.h5")
    assert cfg.source_of("networks").name == "circuit.json"
    assert cfg.source_of("run").name == "sim.json"


def test_relative_paths_follow_bmtk_then_config_dir(tmp_path, monkeypatch):
    """BMTK leaves relative paths to the working directory; we also find them beside the config."""
    d = tmp_path / "net"
    write(d / "c.json", {"run": {"tstop": 10}, "networks": {"nodes": [
        {"nodes_file": "n.h5", "node_types_file": "t.csv"}]}, "output": {"output_dir": "out"}})
    (d / "n.h5").write_bytes(b"")
    (d / "t.csv").write_text("node_type_id\n1\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = SimulationConfig.from_file(d / "c.json")
    assert cfg.nodes[0].nodes_file == d / "n.h5"  # fell back to the config's directory
    assert cfg.output.output_dir == elsewhere / "out"  # outputs go where BMTK puts them
    (elsewhere / "n.h5").write_bytes(b"")
    cfg = SimulationConfig.from_file(d / "c.json")
    assert cfg.nodes[0].nodes_file == elsewhere / "n.h5"  # the working directory wins, as in BMTK


def test_unknown_keys_warn_once_and_types_fail(tmp_path):
    base = {"run": {"tstop": 10, "tstpo": 5}, "outptu": {}, "networks": {"nodes": [
        {"nodes_file": str(RING / "network/ring_nodes.h5"),
         "node_types_file": str(RING / "network/ring_node_types.csv")}]}}
    cfg = SimulationConfig.from_file(write(tmp_path / "c.json", base))
    assert any("'run.tstpo'" in w for w in cfg.warnings) and any("'outptu'" in w for w in cfg.warnings)
    assert len(cfg.warnings) == 2
    bad = dict(base, run={"tstop": "ten"})
    with pytest.raises(ConfigError, match=r"key 'run.tstop': must be a number, got 'ten'"):
        SimulationConfig.from_file(write(tmp_path / "c2.json", bad))
    missing = dict(base, run={"dt": 0.1})
    with pytest.raises(ConfigError, match=r"key 'run.tstop': required key is missing"):
        SimulationConfig.from_file(write(tmp_path / "c3.json", missing))


def test_malformed_json_names_line_and_column(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{\n  "run": {"tstop": 10,}\n}\n')
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(p) in str(err.value) and "line 2, column 23" in str(err.value)
