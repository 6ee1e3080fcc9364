"""Every bad input: one line naming file, key and fix; exit 2; no traceback; nothing on disk changed."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import run_sonatarun


def snapshot(root: Path) -> dict[str, tuple[str, float]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        else:
            out[str(p.relative_to(root))] = ("dir", 0.0)
    return out


def edit(cfg: Path, fn) -> None:
    data = json.loads(cfg.read_text())
    fn(data)
    cfg.write_text(json.dumps(data, indent=2))


def _missing_nodes_file(d: Path, cfg: Path):
    edit(cfg, lambda c: c["networks"]["nodes"][0].update(nodes_file="$NETWORK_DIR/nope_nodes.h5"))
    return ["nope_nodes.h5", "networks.nodes[0].nodes_file", "fix:"]


def _malformed_json(d: Path, cfg: Path):
    text = cfg.read_text().replace('"tstop": 1000.0,', '"tstop": 1000.0,,', 1)
    cfg.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "1000.0,," in l)
    return [str(cfg), f"line {line}, column", "malformed JSON"]


def _unknown_node_set(d: Path, cfg: Path):
    edit(cfg, lambda c: c["inputs"]["input_spikes"].update(node_set="inptu"))
    return ["unknown node set 'inptu'", "inputs.input_spikes.node_set", "use one of:"]


def _unknown_input_module(d: Path, cfg: Path):
    edit(cfg, lambda c: c["inputs"]["input_spikes"].update(module="sonta"))
    return ["unknown input type/module 'spikes/sonta'", "inputs.input_spikes.module", "spikes/sonata"]


def _unknown_report_module(d: Path, cfg: Path):
    edit(cfg, lambda c: c.update(reports={"v": {"module": "membrane_reprot", "variable_name": "v"}}))
    return ["unknown report module 'membrane_reprot'", "reports.v.module", "membrane_report"]


def _unknown_model_template(d: Path, cfg: Path):
    csv = d / "network" / "ring_node_types.csv"
    csv.write_text(csv.read_text().replace("nrn:IntFire1", "nrn:IntFire9", 1))
    return ["unknown model_template 'nrn:IntFire9'", "population 'ring'", "mechanisms_dir"]


def _input_ids_out_of_range(d: Path, cfg: Path):
    with h5py.File(d / "inputs" / "input_spikes.h5", "a") as f:
        grp = next(g for g in f["spikes"].values())
        ids = grp["node_ids"][()]
        ids[0] = 500
        grp["node_ids"][...] = ids
    return ["node id 500 is out of range for population 'input'", "input_spikes.h5", "node ids must be 0..11"]


def _undefined_edge_population(d: Path, cfg: Path):
    with h5py.File(d / "network" / "input_ring_edges.h5", "a") as f:
        f["edges/input_to_ring/source_node_id"].attrs["node_population"] = "thalamus"
    return ["source node population 'thalamus' that no nodes file defines", "input_ring_edges.h5",
            "add the nodes file of 'thalamus'"]


def _overwrite_refused(d: Path, cfg: Path):
    edit(cfg, lambda c: c["output"].update(overwrite_output_dir=False))
    return ["output directory is not empty and overwrite_output_dir is false", "output", "--output-dir"]


CASES = [_missing_nodes_file, _malformed_json, _unknown_node_set, _unknown_input_module, _unknown_report_module,
         _unknown_model_template, _input_ids_out_of_range, _undefined_edge_population, _overwrite_refused]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_bad_input_is_one_clear_line_and_touches_nothing(tmp_copy, case):
    d = tmp_copy("ring_intfire")
    cfg = d / "config.simulation.json"
    out = d / "output"
    out.mkdir()
    (out / "spikes.h5").write_bytes(b"results of an earlier run")
    expected = case(d, cfg)
    before = snapshot(d)
    proc = run_sonatarun("run", str(cfg), cwd=d, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sonatarun: error: ") and "Traceback" not in proc.stderr
    for piece in expected:
        assert piece in lines[0], (piece, lines[0])
    assert snapshot(d) == before
    # --debug shows where it came from
    proc = run_sonatarun("run", str(cfg), "--debug", cwd=d, check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert snapshot(d) == before
