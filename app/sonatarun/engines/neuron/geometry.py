"""Segment coordinates of detailed cells, placed and rotated as BMTK BioNet places them.

BMTK (``bionet/morphology.py``, ``_LazySegmentCoords`` and ``Morphology.move_and_rotate``)
describes each segment by its start ``p0``, end ``p1`` and centre ``p05``: the section's
3-d points, shifted so the mean of the soma's 3-d points is the origin, interpolated at
``seg.x -/+ 0.5/nseg`` along the normalised arc length (``arc3d / L``). A cell is then
rotated about its soma by ``Rx(rotation_angle_xaxis) . Ry(...) . Rz(...)`` and moved so
its soma sits at the node's position.

Here the unplaced coordinates are computed once per morphology (every cell that shares a
segment table shares them: same file, same processing, same ``dL``), reading NEURON's
3-d points once; placing a cell is a few vectorised numpy operations over its segments.
The arithmetic is BMTK's, operation for operation, so the coordinates agree to the last
bits, not merely within a tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def rotation_matrix(axis: Sequence[float], theta: float) -> np.ndarray:
    """BMTK's ``morphology.rotation_matrix``: counterclockwise rotation about `axis` by `theta` radians."""
    axis = np.asarray(axis)
    theta = np.asarray(theta)
    axis = axis / np.sqrt(np.dot(axis, axis))
    a = np.cos(theta / 2.0)
    b, c, d = -axis * np.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([
        [aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
        [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
        [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc],
    ])


def rotation_xyz(angles: Sequence[float]) -> np.ndarray:
    """The matrix BMTK applies for (rotation_angle_xaxis, _yaxis, _zaxis): Rx . (Ry . Rz)."""
    rx = rotation_matrix([1, 0, 0], angles[0])
    ry = rotation_matrix([0, 1, 0], angles[1])
    rz = rotation_matrix([0, 0, 1], angles[2])
    return np.dot(rx, ry.dot(rz))


@dataclass(frozen=True)
class SegmentGeometry:
    """Start, end and centre of every segment (``all`` order), each (3, nseg), plus diameters.

    ``soma_pos`` is the mean of the soma's 3-d points in the same frame (about zero before
    placement: BMTK keeps the rounding residue and so do we).
    """

    p0: np.ndarray
    p1: np.ndarray
    p05: np.ndarray
    d: np.ndarray
    soma_pos: np.ndarray

    @property
    def nseg(self) -> int:
        return int(self.p0.shape[1])

    @classmethod
    def from_sections(cls, sections: Sequence[Any], soma_sections: Sequence[Any]) -> "SegmentGeometry":
        """Read NEURON's 3-d points of one cell (once per morphology) into BMTK's soma-centred frame."""
        pts = [_points(sec) for sec in sections]
        soma_pts = [_points(sec) for sec in soma_sections]
        soma_xyz = np.concatenate([p[0] for p in soma_pts], axis=1) if soma_pts else np.zeros((3, 0))
        if soma_xyz.shape[1] == 0:
            raise ValueError("the cell's soma has no 3-d points: its segments have no coordinates")
        soma_pos = _sequential_mean(soma_xyz)
        nsegs = [int(sec.nseg) for sec in sections]
        total = int(sum(nsegs))
        p0, p1, p05 = np.zeros((3, total)), np.zeros((3, total)), np.zeros((3, total))
        diam = np.empty(total)
        ix = 0
        for sec, (xyz, arc), nseg in zip(sections, pts, nsegs):
            if xyz.shape[1] == 0:
                raise ValueError(f"section {sec.name()} has no 3-d points: its segments have no coordinates")
            p3d = xyz - soma_pos[:, None]
            l3d = arc / sec.L
            x = (np.arange(nseg) + 0.5) / nseg  # NEURON's seg.x
            half = 0.5 * 1 / nseg
            for out, at in ((p0, x - half), (p1, x + half), (p05, x)):
                for k in range(3):
                    out[k, ix:ix + nseg] = np.interp(at, l3d, p3d[k])
            diam[ix:ix + nseg] = [seg.diam for seg in sec]
            ix += nseg
        residue = _sequential_mean(soma_xyz - soma_pos[:, None])
        return cls(p0, p1, p05, diam, residue)

    def placed(self, position: Sequence[float], angles: Sequence[float]) -> "SegmentGeometry":
        """BMTK's ``move_and_rotate(soma_coords=position, rotation_angles=angles)``.

        Rotation is about the soma (always applied, even for zero angles, as BMTK does), then
        the cell is translated by ``position - soma_pos``.
        """
        soma = self.soma_pos.reshape((3, 1))
        rot = rotation_xyz(angles)
        p0 = np.dot(rot, self.p0 - soma) + soma
        p1 = np.dot(rot, self.p1 - soma) + soma
        p05 = np.dot(rot, self.p05 - soma) + soma
        target = np.asarray(position, dtype=np.float64).reshape(3)
        shift = (target - self.soma_pos).reshape((3, 1))
        p0 += shift
        p1 += shift
        p05 += shift
        return SegmentGeometry(p0, p1, p05, self.d, target.copy())


def _points(sec: Any) -> tuple[np.ndarray, np.ndarray]:
    """(xyz (3, n3d), arc3d (n3d,)) of one section: NEURON gives them one point at a time."""
    n = int(sec.n3d())
    xyz = np.empty((3, n))
    arc = np.empty(n)
    for i in range(n):
        xyz[0, i], xyz[1, i], xyz[2, i], arc[i] = sec.x3d(i), sec.y3d(i), sec.z3d(i), sec.arc3d(i)
    return xyz, arc


def _sequential_mean(xyz: np.ndarray) -> np.ndarray:
    """Mean over points summed in order, as BMTK's loop does (numpy's pairwise sum may round differently)."""
    acc = np.zeros(3)
    for i in range(xyz.shape[1]):
        acc += xyz[:, i]
    return acc / max(xyz.shape[1], 1)


class GeometryCache:
    """Unplaced geometry per segment table: cells built from the same file, processing and dL
    share a table (``BiophysicalBuilder``), so they share the geometry too."""

    def __init__(self) -> None:
        self._by_table: dict[int, tuple[Any, SegmentGeometry]] = {}

    def get(self, cell: Any) -> SegmentGeometry:
        table = getattr(cell, "segment_table", None)
        key = id(table) if table is not None else id(cell)
        hit = self._by_table.get(key)
        if hit is None or hit[0] is not (table if table is not None else cell):
            if any(int(sec.n3d()) == 0 for sec in cell.sections):
                from neuron import h

                h.define_shape()  # stylised sections (hoc templates) get NEURON's default layout
            geo = SegmentGeometry.from_sections(cell.sections, cell.cell.of_type("soma"))
            hit = (table if table is not None else cell, geo)
            self._by_table[key] = hit
        return hit[1]
