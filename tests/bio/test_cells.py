"""Detailed cells against BMTK, cell by cell: the same sections, nseg, areas and synapse candidates.

Runs in a subprocess (NEURON state stays out of pytest): every shipped morphology is built by
BMTK (``Biophys1`` + its ``aibs_perisomatic``/``aibs_allactive`` + ``set_segment_dl``) and by
sonatarun's builder, and the segment tables (section ids, x, type, area, path distance) must be
equal (BMTK caches them per (file, total nseg), as sonatarun does; its ``area`` column is
computed for the currently accessed section, not the segment's, so it is not compared); a ``hoc:`` template built from the same file must equal the cached-morphology cell, and a
voltage clamp must hold its cell.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from tests.conftest import EXAMPLES, need

SCRIPT = r'''
import json, os, sys
import numpy as np, pandas as pd
from pathlib import Path
from neuron import h
import bmtk.simulator.bionet as bn
from bmtk.simulator.bionet.morphology import Morphology
from bmtk.simulator.bionet.default_setters.cell_models import aibs_perisomatic, aibs_allactive
from sonatarun.engines.base import CellBatch, RunSettings, VoltageClamp
from sonatarun.engines.neuron.cells.biophysical import BiophysicalBuilder
from sonatarun.engines.neuron import stimuli

ex = Path(sys.argv[1]); tmpl_dir = Path(sys.argv[2])
h.load_file("stdrun.hoc"); h.load_file("import3d.hoc")
h.load_file(os.path.join(os.path.dirname(bn.__file__), "default_templates", "Biophys1.hoc"))
h.load_file(str(tmpl_dir / "MyCell.hoc"))
mdir = ex / "components" / "morphologies"
models = ex / "components" / "biophysical_neuron_models"
dyn = {"aibs_perisomatic": json.loads((models / "exc_perisomatic.json").read_text()),
       "aibs_allactive": json.loads((models / "pvalb_allactive.json").read_text())}
settings = RunSettings(dL=20.0, components={"templates_dir": tmpl_dir})
report = {"checked": 0, "mismatch": []}
gid = 0
for swc in sorted(mdir.glob("*.swc")):
    for proc, fn in (("aibs_perisomatic", aibs_perisomatic), ("aibs_allactive", aibs_allactive)):
        hobj = h.Biophys1(str(swc))
        fn(hobj, None, dyn[proc])
        ref = Morphology.load(hobj=hobj, morphology_file=str(swc), cache_seg_props=True)
        ref.set_segment_dl(20.0)
        rp = ref.seg_props
        batch = CellBatch(population="p", node_type_id=1, model_type="biophysical",
                          model_template="ctdb:Biophys1.hoc", node_ids=np.array([gid]), gids=np.array([gid]),
                          attributes={"morphology": np.array([swc.name], dtype=object)}, dynamics=dyn[proc],
                          model_processing=proc, morphology_dir=mdir)
        cell = BiophysicalBuilder().build(batch, settings)[0]
        gid += 1
        t = cell.segment_table
        for name, a, b in (("sec_id", rp.sec_id, t.sec_id), ("x", rp.x, t.x), ("type", rp.type, t.type),
                           ("dist", rp.dist, t.dist), ("length", rp.length, t.length)):
            if len(a) != len(b) or not np.array_equal(a, b):
                report["mismatch"].append(f"{swc.name} {proc} {name}")
        for key in ((["basal", "apical"], [30.0, 150.0]), (["somatic", "basal"], [0.0, 50.0])):
            ia, pa = ref.find_sections(key[0], key[1], cache=False)
            ib, pb = t.find(key[0], key[1])
            if not (np.array_equal(ia, ib) and np.array_equal(pa, pb)):
                report["mismatch"].append(f"{swc.name} {proc} find_sections {key}")
        report["checked"] += 1
        del hobj

# hoc: template == cached morphology; a voltage clamp holds the soma
swc = sorted(mdir.glob("*.swc"))[0]
cells = {}
for i, tmpl in enumerate(("hoc:MyCell", "ctdb:Biophys1.hoc")):
    b = CellBatch(population="q", node_type_id=2, model_type="biophysical", model_template=tmpl,
                  node_ids=np.array([i]), gids=np.array([100 + i]), attributes={"morphology": np.array([swc.name], dtype=object)},
                  dynamics=dyn["aibs_perisomatic"], model_processing="aibs_perisomatic", morphology_dir=mdir)
    cells[100 + i] = BiophysicalBuilder().build(b, settings)[0]
same = [np.array_equal(cells[100].segment_table.area, cells[101].segment_table.area)]
keep = stimuli.apply(VoltageClamp("vc", np.array([101]), [float("nan"), -40.0], [20.0, 30.0], rs=0.01), cells, settings)
# sampled by hand each step (a test, not a run): an intermittent NEURON 9 glitch left a 0.0 in a
# Vector.record of this script now and then, which is not what this test is about
h.dt = 0.025; h.celsius = 20; h.finitialize(-70)
vh, vc = [cells[100].soma(0.5).v], [cells[101].soma(0.5).v]
while h.t < 60 - h.dt / 2:
    h.fadvance()
    vh.append(cells[100].soma(0.5).v); vc.append(cells[101].soma(0.5).v)
vh, vc = np.array(vh), np.array(vc)
report["hoc_equal"] = bool(same[0] and np.allclose(vh[:790], vc[:790]))
report["clamped"] = float(vc[int(45 / 0.025)])
report["released_differs"] = float(abs(vc[-1] - vh[-1]))
print("RESULT " + json.dumps(report))
'''

TEMPLATE = """begintemplate MyCell
public init, soma, dend, apic, axon, all, somatic, basal, apical, axonal
objref all, somatic, basal, apical, axonal, this, nl, i3d
create soma[1], dend[1], apic[1], axon[1]
proc init() {
    all = new SectionList()
    somatic = new SectionList()
    basal = new SectionList()
    apical = new SectionList()
    axonal = new SectionList()
    forall delete_section()
    nl = new Import3d_SWC_read()
    nl.quiet = 1
    nl.input($s1)
    i3d = new Import3d_GUI(nl, 0)
    i3d.instantiate(this)
}
endtemplate MyCell
"""


def test_cells_match_bmtk_segment_by_segment(tmp_path):
    need(importlib.util.find_spec("bmtk") is not None, "bmtk (pip install bmtk) for the reference cells")
    (tmp_path / "MyCell.hoc").write_text(TEMPLATE)
    ex = EXAMPLES / "bio_network"
    mech = ex / "components" / "mechanisms"
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui", SONATARUN_CACHE=str(tmp_path / "cache"))
    # the Ih channel of the example's JSON must be loaded in the child: compile it through sonatarun's cache
    script = ("from pathlib import Path\nfrom sonatarun.engines.neuron.mechanisms import load_mechanisms\n"
              f"load_mechanisms(Path({str(mech)!r}))\n" + SCRIPT)
    proc = subprocess.run([sys.executable, "-c", script, str(ex), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert res["checked"] == 10 and res["mismatch"] == []
    assert res["hoc_equal"]
    assert abs(res["clamped"] + 40.0) < 0.1
    assert res["released_differs"] > 0.0


ASC_SCRIPT = r'''
import sys
import numpy as np
from sonatarun.engines.neuron.morphology import MorphologyTemplate

def swc_to_asc(swc, out):
    """A Neurolucida tree for an SWC file: soma as a 16-point contour, each neurite as nested branches."""
    rows = np.loadtxt(swc, comments="#")
    ids, typ, pid = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 6].astype(int)
    xyz, r = rows[:, 2:5], rows[:, 5]
    idx = {i: k for k, i in enumerate(ids)}
    children = {i: [] for i in ids}
    for i, p in zip(ids, pid):
        if p != -1:
            children[p].append(i)
    soma = [i for i in ids if typ[idx[i]] == 1]
    s0 = idx[soma[0]]
    lines = ['("CellBody"', "  (Color Red)", "  (CellBody)"]
    for a in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        x, y, z = xyz[s0] + [r[s0] * np.cos(a), r[s0] * np.sin(a), 0]
        lines.append(f"  ( {x:.4f} {y:.4f} {z:.4f} 0.1)")
    lines.append(")  ;  End of contour")

    def emit(i, ind):
        while True:
            k = idx[i]
            lines.append(f"{ind}( {xyz[k, 0]:.4f} {xyz[k, 1]:.4f} {xyz[k, 2]:.4f} {2 * r[k]:.4f})")
            if len(children[i]) != 1:
                break
            i = children[i][0]
        if children[i]:
            lines.append(ind + "(")
            for j, c in enumerate(children[i]):
                if j:
                    lines.append(ind + "|")
                emit(c, ind + "  ")
            lines.append(ind + ")  ;  End of split")

    for root in [c for s in soma for c in children[s] if typ[idx[c]] != 1]:
        lines += ["( (Color Yellow)", "  (" + {2: "Axon", 3: "Dendrite", 4: "Apical"}[typ[idx[root]]] + ")"]
        emit(root, "  ")
        lines.append(")  ;  End of tree")
    open(out, "w").write("\n".join(lines) + "\n")

swc, asc = sys.argv[1], sys.argv[2]
swc_to_asc(swc, asc)
a, b = MorphologyTemplate.read(asc), MorphologyTemplate.read(swc)
def length(t, kind):
    return sum(np.linalg.norm(np.diff(s.points[:, :3], axis=0), axis=1).sum() for s in t.sections if s.type == kind)

same = a.counts == b.counts and all(abs(length(a, k) - length(b, k)) < 1e-3 * length(b, k) for k in ("dend", "axon"))
print("RESULT", a.counts, same)
'''


def test_neurolucida_asc_reads_like_the_swc(tmp_path):
    swc = EXAMPLES / "bio_network" / "components" / "morphologies" / "Pvalb_469628681_m.swc"
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui")
    proc = subprocess.run([sys.executable, "-c", ASC_SCRIPT, str(swc), str(tmp_path / "cell.asc")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][0]
    assert "'dend': 40" in line and line.endswith("True")
