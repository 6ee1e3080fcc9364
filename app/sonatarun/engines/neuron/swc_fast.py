"""Reading an SWC file into section shapes the way Import3d does, without its hoc loops.

Import3d's SWC reader is hoc code that walks the file point by point three times
(parse, mark branches, make sections) and then instantiates sections through one
``execute``d string per 3-d point. For the five-morphology benchmark network that is
the largest part of our build. This module is a line-by-line port of
``Import3d_SWC_read`` (``check_pid``, ``mark_branch``, ``sectionify``,
``neuromorph_3point_soma``, ``mksection``) and of what ``Import3d_GUI.instantiate``
does with its sections (names by type, the ``first`` point skipped for wires, a
one-point section drawn as a sphere, ``pt3dstyle`` of wires, coordinates printed with
``%.8g`` and stored as float by ``pt3dadd``), on plain arrays. Values are read as C's
``%f`` reads them (float32), as hoc's ``sscanf`` does.

Anything this port does not cover (several trees, ids out of order, section types
other than 1-4, sections Import3d's validity
check would remove, unparsable lines) returns ``None`` and the caller falls back to
Import3d itself, which also prints its own messages. Tests compare both paths value
for value on real reconstructions and on files made to hit each rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonatarun.engines.neuron.morphology import SectionShape

TYPE_NAMES = {1: "soma", 2: "axon", 3: "dend", 4: "apic"}


def parse_swc(path: Path) -> np.ndarray | None:
    """The file's data lines as an (n, 7) array, each value as C's ``%f`` reads it (float32),
    the radius column doubled; ``None`` when a line is neither data, comment nor blank."""
    rows: list[str] = []
    with open(path, "r", errors="replace") as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 7:
                return None
            rows.append(" ".join(fields[:7]))
    if not rows:
        return None
    try:
        flat = np.array(" ".join(rows).split(), dtype=np.float64)
    except ValueError:
        return None
    data = flat.reshape(-1, 7).astype(np.float32).astype(np.float64)
    data[:, 5] *= 2.0
    return data


def _g8(values: np.ndarray) -> np.ndarray:
    """Values as hoc's ``sprint("%.8g")`` writes them, read back and stored as float by ``pt3dadd``."""
    flat = np.asarray(values, dtype=np.float64).ravel().tolist()
    out = np.array(["%.8g" % v for v in flat], dtype=np.float64).astype(np.float32).astype(np.float64)
    return out.reshape(np.shape(values))


@dataclass
class _Sec:
    id: int  # first point (Import3d_Section.id)
    cols: list[int]  # file points of the raw columns
    type: int = 0
    parent: int = -1  # index in the sections list
    parentx: float = 1.0
    first: int = 0
    d0: int | None = None  # point whose diameter replaces column 0's (dendrite on soma)


def read_swc(path: Path) -> list[SectionShape] | None:
    """Sections of an SWC file in Import3d's ``all`` order; ``None`` when Import3d must read it."""
    data = parse_swc(path)
    if data is None:
        return None
    n = len(data)
    if n < 2:
        return None
    ids = data[:, 0]
    if (ids < 0).any() or (ids != np.round(ids)).any() or len(np.unique(ids)) != n:
        return None
    if not np.isin(data[:, 1], (1, 2, 3, 4)).all():
        return None
    # check_pid: pid < id everywhere (one tree without loops), sorted by id, one root
    if (data[:, 6] >= ids).any():
        return None
    if (np.diff(ids) <= 0).any():
        return None  # Import3d re-sorts such files with a hoc slip (it sorts `d` into `diam`): keep its result
    pid = data[:, 6].copy()
    if int((pid < 0).sum()) != 1 or pid[0] >= 0:
        return None
    id2index = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    id2index[ids.astype(np.int64)] = np.arange(n)
    known = pid >= 0
    if (pid[known] != np.round(pid[known])).any() or (id2index[pid[known].astype(np.int64)] < 0).any():
        return None
    typ = data[:, 1].astype(np.int64).tolist()
    x, y, z, d = data[:, 2], data[:, 3], data[:, 4], data[:, 5]

    def pix(i: int) -> int:
        p = pid[i]
        return -1 if p < 0 else int(id2index[int(p)])

    pix_of = [pix(i) for i in range(n)]
    # mark_branch: children per point, +.01 for non-contiguous children and type changes
    nchild = [0.0] * n
    connect2prox = [0] * n
    for i in range(n):
        p = pix_of[i]
        if p >= 0:
            nchild[p] += 1
            if p != i - 1:
                nchild[p] += .01
                if p > 1:
                    if typ[p] != 1 and typ[pix_of[p]] == 1:
                        connect2prox[i] = 1
                        nchild[p] = 1
                elif p == 0:
                    if typ[p] != 1:
                        connect2prox[i] = 1
                        nchild[p] = 1
            if typ[p] != typ[i]:
                nchild[p] += .01
    # sectionify
    nchild_soma = [0] * n
    nsoma_pts = 1 if typ[0] == 1 else 0
    for i in range(1, n):
        if typ[i] == 1:
            nsoma_pts += 1
            p = pix_of[i]
            if p >= 0 and typ[p] == 1:
                nchild_soma[p] += 1
    soma3geom = False
    if nsoma_pts == 3 and n > 2 and pix_of[1] == 0 and pix_of[2] == 0 and nchild[1] == 0 and nchild[2] == 0 \
            and d[1] == d[0] and d[2] == d[0]:
        length = 0.0
        for i in (1, 2):
            length += float(np.sqrt((x[i] - x[0]) ** 2 + (y[i] - y[0]) ** 2 + (z[i] - z[0]) ** 2))
        if abs(length / d[0] - 1) < .01:
            soma3geom = True
            pid[2] = ids[1]
            pix_of[2] = 1
    for i in range(n - 1):
        if typ[i] == 1 and typ[i + 1] == 1 and pix_of[i + 1] == i:
            if not (i != 0 and nchild_soma[i] > 1):
                nchild[i] = 1
    ends = [i for i in range(n) if nchild[i] != 1]  # sec2point: last point of each section
    point2sec = [0] * n
    si = 0
    for i in range(1, n):
        if i > ends[si]:
            si += 1
        point2sec[i] = si
    # mksections
    secs: list[_Sec] = []

    def mksection(isec: int, first: int, i: int) -> None:
        if isec == 0:
            if soma3geom:
                i = 1
            sec = _Sec(first, list(range(first, i)))
        else:
            pp = pix_of[first]
            sec = _Sec(first, [pp] + list(range(first, i)))
            sec.parent = point2sec[pp]
            psec = secs[sec.parent]
            den_con_soma = psec.type == 1 and typ[first] != 1
            con_soma = psec.type == 1
            handled = False
            if sec.parent == 0:
                handled = True
                if den_con_soma and len(psec.cols) == 1:
                    sec.parentx = 0.5
                    if i - first > 1:
                        sec.first = 1
                elif pp == psec.id:
                    sec.parentx = 0.0
                    if typ[first] != 1 and nchild_soma[pp] > 1:
                        sec.first = 1
                else:
                    handled = False
            if not handled and con_soma:
                offset = -1 if psec.id == 0 else -2
                if pp < psec.id + len(psec.cols) + offset:
                    sec.parentx = 0.5
                    if den_con_soma and i - first > 1:
                        sec.first = 1
                elif i - first > 1 and nchild_soma[pp] > 1:
                    if typ[first] != 1:
                        sec.first = 1
        sec.type = typ[first]
        secs.append(sec)
        if sec.parent >= 0 and secs[sec.parent].type == 1 and sec.type != 1 and len(sec.cols) > 1:
            sec.d0 = sec.cols[1]
        if connect2prox[first]:
            sec.parentx = 0.0

    isec, first = 0, 0
    for i in range(n):
        if point2sec[i] > isec:
            mksection(isec, first, i)
            isec += 1
            first = i
    mksection(isec, first, n)
    return _instantiate(secs, x, y, z, d)


def _instantiate(secs: list[_Sec], x: np.ndarray, y: np.ndarray, z: np.ndarray,
                 d: np.ndarray) -> list[SectionShape] | None:
    """Import3d_GUI.instantiate on the sections: names, order in `all`, points, wires."""
    for k, sec in enumerate(secs):  # chk_valid would remove one-point and zero-length two-point sections
        if k == 0:
            continue
        left = len(sec.cols) - sec.first
        if left <= 1:
            return None
        if left == 2:
            a, b = sec.cols[sec.first], sec.cols[sec.first + 1]
            if x[a] == x[b] and y[a] == y[b] and z[a] == z[b]:
                return None
    index: list[int] = []
    seen: dict[int, int] = {}
    for sec in secs:
        index.append(seen.get(sec.type, 0))
        seen[sec.type] = seen.get(sec.type, 0) + 1
    offset, start = {}, 0
    for t in sorted(seen):  # `all` holds soma[], axon[], dend[], apic[] in creation order
        offset[t] = start
        start += seen[t]
    position = [offset[sec.type] + k for sec, k in zip(secs, index)]
    xyzd = np.column_stack([x, y, z, d])
    stored = _g8(xyzd)  # every file point as pt3dadd stores it
    out: list[SectionShape | None] = [None] * len(secs)
    for k, sec in enumerate(secs):
        cols = sec.cols[sec.first:]
        if len(cols) == 1:  # sphere_rep: a 3-point cylinder along x, length = diameter
            p = xyzd[cols[0]]
            raw = np.array([[p[0] - p[3] / 2, p[1], p[2], p[3]], p, [p[0] + p[3] / 2, p[1], p[2], p[3]]])
            pts = _g8(raw)
        else:
            pts = stored[cols].copy()
        if sec.d0 is not None and sec.first == 0:
            pts[0, 3] = stored[sec.d0, 3]
        logical = None
        if sec.first == 1:
            logical = tuple(float(v) for v in _g8(xyzd[sec.cols[0], :3]))
        parent = position[sec.parent] if sec.parent >= 0 else -1
        out[position[k]] = SectionShape(TYPE_NAMES[sec.type], index[k], parent,
                                        sec.parentx if sec.parent >= 0 else 0.0, 0.0, pts, logical=logical)
    return out  # type: ignore[return-value]
