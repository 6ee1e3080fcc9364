"""The array SWC reader gives exactly what NEURON's Import3d gives.

Every shipped reconstruction, files written to hit each of Import3d's SWC rules (one-,
three- and many-point somata, branched somata, dendrites on the soma's interior,
branches off a wire's first point, type changes inside a tree, id offsets, comments,
extra columns, float32 rounding of long decimals) and a batch of random trees are read
both ways in one NEURON process; every section's name, parent, attachment point, 3-d
points (bit for bit), wire point and the axon stub diameters must be equal, and the
files the port does not cover must come back from Import3d itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import MORPHOLOGIES, need

SCRIPT = r'''
import glob, json, sys
import numpy as np
from pathlib import Path
from sonatarun.engines.neuron import swc_fast
from sonatarun.engines.neuron.morphology import MorphologyTemplate, load_hoc_support

load_hoc_support()
out = Path(sys.argv[2])

def write(name, rows, header=("# made by test_swc_fast",), extra=""):
    p = out / f"{name}.swc"
    lines = list(header)
    for r in rows:
        i, t, x, y, z, rad, parent = r
        lines.append(f"{i} {t} {x!r} {y!r} {z!r} {rad!r} {parent}{extra}")
    p.write_text("\n".join(lines) + "\n")
    return p

def chain(start, parent, t, n, origin, step, rad, rng=None):
    rows, x = [], np.array(origin, dtype=float)
    for k in range(n):
        x = x + step + (rng.normal(0, 0.7, 3) if rng is not None else 0)
        rows.append((start + k, t, *map(float, np.round(x, 4)), rad, parent if k == 0 else start + k - 1))
    return rows

files = sorted(glob.glob(sys.argv[1] + "/*.swc"))
soma1 = [(1, 1, 0.0, 0.0, 0.0, 6.0, -1)]
d1 = chain(2, 1, 3, 5, (0, 6, 0), (0, 4, 0), 0.5)
d2 = chain(7, 1, 3, 4, (0, -6, 0), (0, -4, 0), 0.4)
ax = chain(11, 1, 2, 6, (6, 0, 0), (5, 0, 0), 0.3)
files.append(write("one_point_soma", soma1 + d1 + d2 + ax))
# neuromorpho's 3-point soma: middle point the root, two points one radius away, same radius
soma3 = [(1, 1, 0.0, 0.0, 0.0, 5.0, -1), (2, 1, 0.0, -5.0, 0.0, 5.0, 1), (3, 1, 0.0, 5.0, 0.0, 5.0, 1)]
files.append(write("three_point_soma", soma3 + chain(4, 1, 3, 5, (0, 0, 0), (4, 1, 0), 0.5)
                   + chain(9, 1, 4, 5, (0, 0, 0), (-4, 1, 0), 0.6)))
# many-point soma chain with dendrites on its first, interior and last points, a branched soma
somaN = [(1, 1, 0.0, 0.0, 0.0, 4.0, -1)] + [(k, 1, 0.0, 2.0 * (k - 1), 0.0, 4.0 + k / 10, k - 1) for k in range(2, 7)]
somaN.append((7, 1, 2.0, 4.0, 0.0, 3.0, 3))  # second soma child of point 3: the soma branches
files.append(write("many_point_soma", somaN + chain(8, 1, 3, 4, (0, 0, 0), (-3, -1, 0), 0.5)
                   + chain(12, 4, 3, 4, (0, 6, 0), (-3, 0, 1), 0.5) + chain(16, 6, 4, 4, (0, 10, 0), (0, 3, 0), 0.7)
                   + chain(20, 3, 3, 3, (0, 4, 0), (3, 0, 0), 0.4) + chain(23, 7, 2, 3, (2, 4, 0), (2, 2, 0), 0.2)))
# a dendrite wired to a one-point soma with another branch starting at its first point (connect2prox),
# an axon growing out of a dendrite (type change inside a tree), branches at interior points
rows = soma1 + chain(2, 1, 3, 6, (0, 6, 0), (0, 4, 0), 0.5)
rows += chain(8, 2, 3, 3, (0, 10, 0), (3, 3, 0), 0.4)  # parent = first point of the wired dendrite
rows += chain(11, 4, 2, 3, (0, 18, 0), (3, 0, 0), 0.2)
rows += chain(14, 5, 3, 2, (0, 22, 0), (-3, 0, 0), 0.3)
files.append(write("wires_and_type_changes", rows))
# ids offset from 1000, a header, blank lines, extra columns, long decimals (float32 rounding)
rows = [(1000 + i - 1, t, x + 0.123456789012, y, z, r, (p + 999 if p > 0 else -1)) for i, t, x, y, z, r, p
        in soma1 + d1 + d2 + ax]
p = write("offset_ids", rows, header=("# header", "", "#  more"), extra=" 0.5 extra")
files.append(p)
rng = np.random.default_rng(7)
for k in range(12):  # random trees: type per subtree, random branching
    rows = [(1, 1, 0.0, 0.0, 0.0, float(rng.uniform(3, 8)), -1)]
    if k % 3 == 1:
        rows += [(2, 1, 0.0, 3.0, 0.0, 4.0, 1), (3, 1, 0.0, 6.0, 0.0, 3.5, 2)]
    nxt = len(rows) + 1
    for stem in range(int(rng.integers(2, 6))):
        t = int(rng.choice([2, 3, 4]))
        tips = [int(rng.integers(1, len(rows) + 1)) if k % 3 == 1 else 1]
        for _ in range(int(rng.integers(1, 5))):
            parent = tips[int(rng.integers(len(tips)))]
            base = next(r for r in rows if r[0] == parent)[2:5]
            seg = chain(nxt, parent, t, int(rng.integers(2, 8)), base, rng.normal(0, 3, 3), float(rng.uniform(.1, 1)), rng)
            rows += seg
            nxt += len(seg)
            tips.append(seg[int(rng.integers(len(seg)))][0])
    files.append(write(f"random_{k}", rows))
# files the port leaves to Import3d: ids out of order (Import3d itself fails on them), a zero-length
# two-point section, type 7
rows = soma1 + d1 + d2
files_fallback = [write("unsorted", [rows[0], rows[2], rows[1]] + rows[3:]),
                  write("zero_length", soma1 + [(2, 3, 0.0, 6.0, 0.0, 0.5, 1), (3, 3, 0.0, 6.0, 0.0, 0.5, 2)] + d2[:2]),
                  write("custom_type", soma1 + [(2, 7, 0.0, 6.0, 0.0, 0.5, 1), (3, 7, 0.0, 9.0, 0.0, 0.5, 2)] + d2)]

def compare(f):
    from sonatarun.errors import CircuitError
    try:
        a = MorphologyTemplate.read(f, fast=False)
    except CircuitError as exc:  # Import3d cannot read it: neither may we
        try:
            MorphologyTemplate.read(f)
        except CircuitError:
            return []
        return [f"Import3d fails ({exc.message}) but the port reads it"]
    b = MorphologyTemplate.read(f)
    probs = []
    if len(a.sections) != len(b.sections):
        return [f"{len(a.sections)} vs {len(b.sections)} sections"]
    for i, (x, y) in enumerate(zip(a.sections, b.sections)):
        for k in ("type", "index", "parent", "parent_x", "child_x", "logical"):
            if getattr(x, k) != getattr(y, k):
                probs.append(f"section {i} {k}: {getattr(x, k)} vs {getattr(y, k)}")
        if x.points.shape != y.points.shape or not np.array_equal(x.points, y.points):
            probs.append(f"section {i} points differ")
    if a.axon_diams != b.axon_diams or a.counts != b.counts:
        probs.append(f"axon/counts {a.axon_diams} {a.counts} vs {b.axon_diams} {b.counts}")
    return probs

result = {"fast": {}, "fallback": {}}
for f in files:
    result["fast"][Path(f).stem] = {"ported": swc_fast.read_swc(Path(f)) is not None, "problems": compare(f)}
for f in files_fallback:
    result["fallback"][Path(f).stem] = {"ported": swc_fast.read_swc(Path(f)) is not None, "problems": compare(f)}
sec = {Path(f).stem: len(MorphologyTemplate.read(f).sections) for f in files}
result["sections"] = sec
made = [s for f in files[5:] for s in MorphologyTemplate.read(f).sections]
result["wires"] = sum(s.logical is not None for s in made)
result["parent_x"] = sorted({s.parent_x for s in made if s.parent >= 0})
print("RESULT " + json.dumps(result))
'''


def test_swc_port_equals_import3d(tmp_path):
    need(MORPHOLOGIES.exists(), "../shared/data/morphologies")
    env = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(MORPHOLOGIES), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert len(res["fast"]) == 5 + 5 + 12
    for name, r in res["fast"].items():
        assert r["ported"], f"{name} fell back to Import3d"
        assert r["problems"] == [], (name, r["problems"][:5])
    for name, r in res["fallback"].items():
        assert not r["ported"], f"{name} should be left to Import3d"
        assert r["problems"] == [], (name, r["problems"][:5])
    # the made-up files really exercise branching: several sections each
    assert all(n >= 3 for n in res["sections"].values()), str(res["sections"])
    assert res["wires"] > 0 and res["parent_x"] == [0.0, 0.5, 1.0], (res["wires"], res["parent_x"])
