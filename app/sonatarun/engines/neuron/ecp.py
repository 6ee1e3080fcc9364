"""The extracellular potential (ECP) at electrodes, from membrane currents, as BMTK computes it.

BMTK's ``bionet/modules/ecp.py`` turns on ``cvode.use_fast_imem`` and after every time step
multiplies each cell's segment currents ``i_membrane_`` (nA) by a transfer matrix
(electrodes x segments, the line-source approximation with sigma = 0.3 S/m) in Python.
Here nothing runs in Python per step; one of two native paths is chosen per report and
rank, whichever buffers fewer values per step:

* fewer electrodes than segments (the usual case): one ``SonataEcp`` per cell
  (``mod/sonataecp.mod``) multiplies the cell's transfer matrix by its ``i_membrane_`` in
  C++ after every step and appends one value per electrode to a block buffer;
* otherwise one ``SonataRecorder`` per cell copies ``i_membrane_`` of all segments into the
  buffer and each block end is one float64 matrix product per cell (numpy).

Both sample where BMTK's post-``fadvance`` hook reads (AFTER SOLVE, right before NEURON's
``Vector.record``). The rank's partial sum goes to the report writer, which sums over ranks.

BMTK also inserts the ``extracellular`` mechanism into every biophysical cell when an ECP
report is configured (``BioCell.setup_ecp``), which ``i_membrane_`` does not need. With its
defaults (xg = xraxial = 1e9) it moves the potentials by ~1e-10 of their size, but it makes
NEURON integrate an extra layer: on the test network the run took 5-10x the CPU time with
it. sonatarun does not insert it; the ECP agrees with BMTK's to ~1e-9 (relative to each
channel's peak), see tests/bio/test_ecp.py.

Memory: the buffers hold ``nsteps_block`` samples of min(electrodes x cells, segments)
values (8 bytes each) per rank; above 2 GB a warning suggests a smaller ``run.nsteps_block``.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from sonatarun.engines.base import ProbeSpec, RunSettings
from sonatarun.engines.neuron.geometry import GeometryCache, SegmentGeometry
from sonatarun.engines.neuron.probes import _RecordingProbe, _as_slice, _ref
from sonatarun.errors import EngineError

SIGMA = 0.3  # S/m: BMTK's fixed extracellular conductivity
_CHUNK_VALUES = 1 << 21  # electrodes x segments per temporary in transfer_matrix (~16 MB each)
BUFFER_WARN_BYTES = 2 << 30  # block buffers above this per rank get a warning


def transfer_matrix(electrodes: np.ndarray, geo: SegmentGeometry, minimum_distance: Any = None) -> np.ndarray:
    """(n_electrodes, nseg): potential at each electrode per nA of each segment's membrane current.

    BMTK's ``RecXElectrode.calc_transfer_resistance``, vectorised over electrodes as well:
    a segment is a line source from ``p0`` to ``p1``; ``minimum_distance`` (a number, or
    'auto' for each segment's radius) bounds the perpendicular distance from below where the
    electrode's projection is within that distance of the segment.
    """
    electrodes = np.asarray(electrodes, dtype=np.float64).reshape(-1, 3)
    r05 = (geo.p0 + geo.p1) / 2
    dl = geo.p1 - geo.p0
    dlmag = np.linalg.norm(dl, axis=0)
    rm = geo.d / 2 if minimum_distance == "auto" else minimum_distance
    nseg = r05.shape[1]
    out = np.empty((len(electrodes), nseg))
    step = max(1, _CHUNK_VALUES // max(nseg, 1))
    with np.errstate(divide="ignore", invalid="ignore"):  # on-axis electrodes: reported by the caller
        for e0 in range(0, len(electrodes), step):
            _line_source(electrodes[e0:e0 + step].T, r05, dl, dlmag, minimum_distance, rm, out[e0:e0 + step])
    out *= 1 / (4 * math.pi * SIGMA)
    return out


def _line_source(pos: np.ndarray, r05: np.ndarray, dl: np.ndarray, dlmag: np.ndarray, minimum_distance: Any,
                 rm: Any, out: np.ndarray) -> None:
    """BMTK's formula for electrodes `pos` (3, k) into `out` (k, nseg), before the 1/(4 pi sigma) factor."""
    rel_05 = pos[:, :, None] - r05[:, None, :]  # (3, k, nseg)
    r2 = np.einsum("ijk,ijk->jk", rel_05, rel_05)
    rlldl = np.einsum("ijk,ik->jk", rel_05, dl)
    rll = abs(rlldl / dlmag)
    rT2 = r2 - rll ** 2
    up = rll + dlmag / 2
    low = rll - dlmag / 2
    if minimum_distance:
        np.fmax(rT2, rm * rm, out=rT2, where=low < rm)
    num = up + np.sqrt(up ** 2 + rT2)
    den = low + np.sqrt(low ** 2 + rT2)
    out[:] = np.log(num / den) / dlmag


class EcpProbe(_RecordingProbe):
    """One ECP report on this rank: every local detailed cell of the spec, placed and recorded.

    ``drain()`` returns ``{"v": (n_rows, n_electrodes)}``, the sum over local cells, and with
    ``contributions`` also ``{"contributions": (n_rows, n_cells * n_electrodes)}``, each
    cell's own potentials in ``node_ids`` order.
    """

    def __init__(self, spec: ProbeSpec, cells: dict[int, Any], settings: RunSettings,
                 geometry: GeometryCache | None = None) -> None:
        from neuron import h

        self.spec = spec
        self._setup_times(spec, settings)
        opts = spec.options
        self.electrodes = np.asarray(opts["electrodes"], dtype=np.float64).reshape(-1, 3)
        self.n_electrodes = len(self.electrodes)
        self.contributions = bool(opts.get("contributions"))
        positions = np.asarray(opts["positions"], dtype=np.float64).reshape(-1, 3)
        angles = np.asarray(opts["rotations"], dtype=np.float64).reshape(-1, 3)
        h.cvode.use_fast_imem(1)  # i_membrane_ becomes a range variable (nA, whole segment)
        geometry = geometry or GeometryCache()
        node_ids, gids, counts, groups, self._transfers = [], [], [], [], []
        for i, (gid, nid) in enumerate(zip(np.asarray(spec.gids).tolist(), np.asarray(spec.node_ids).tolist())):
            cell = cells.get(int(gid))
            if cell is None or getattr(cell, "segment_table", None) is None:
                continue  # another rank's cell, or not a detailed one (BMTK: biophysical cells only)
            try:
                geo = geometry.get(cell).placed(positions[i], angles[i])
            except ValueError as exc:
                raise EngineError(f"cell {cell.population}:{cell.node_id}: {exc}", key=f"reports.{spec.name}.cells",
                                  fix="give the cell's sections 3-d points (a morphology file)") from None
            tr = transfer_matrix(self.electrodes, geo, opts.get("minimum_distance"))
            if not np.all(np.isfinite(tr)):
                bad = sorted(set(np.nonzero(~np.isfinite(tr))[0].tolist()))
                logging.getLogger("sonatarun").warning(
                    "extracellular report '%s': electrode(s) %s lie on the axis of a segment of cell %s:%s, where "
                    "the line-source potential is infinite (BMTK gives the same non-finite values); set "
                    "minimum_distance (e.g. \"auto\") or move the electrode", spec.name, bad, cell.population,
                    cell.node_id)
            self._transfers.append(tr)
            segs = [seg for sec in cell.sections for seg in sec]  # BMTK's set_im_ptr order
            node_ids.append(int(nid))
            gids.append(int(gid))
            counts.append(len(segs))
            groups.append((cell, segs))
        self.node_ids = np.asarray(node_ids, dtype=np.uint64)
        self.gids = np.asarray(gids, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.element_ids = np.zeros(0, dtype=np.uint32)
        self.element_pos = np.zeros(0, dtype=np.float64)
        self.units = "mV"
        for cell, segs in groups:  # fail early, naming the report, if fast imem were unavailable
            _ref(segs[0], "i_membrane_", spec.name)
        # per step and cell, buffer either the potentials (reduced in C) or the currents (numpy at
        # block end), whichever is fewer values: electrodes vs segments
        n_segments = int(self.counts.sum())
        self._reduced = hasattr(h, "SonataEcp") and self.n_electrodes * len(groups) < n_segments
        per_step = self.n_electrodes * len(groups) if self._reduced else n_segments
        buffered = self._block_steps * per_step * 8
        if buffered > BUFFER_WARN_BYTES:
            logging.getLogger("sonatarun").warning(
                "extracellular report '%s': %.1f GB of block buffers on this rank (run.nsteps_block %d x %d values "
                "x 8 bytes); lower run.nsteps_block to use less", spec.name, buffered / 1e9, self._block_steps,
                per_step)
        logging.getLogger("sonatarun").info(
            "extracellular report '%s': %d cells, %d segments, %d electrodes on this rank; %s", spec.name,
            len(groups), n_segments, self.n_electrodes,
            "potentials summed natively every step" if self._reduced else
            "membrane currents buffered, one matrix product per cell at block ends")
        if self._reduced:
            self._attach_reduced(groups)
        else:
            self._attach(groups, ["i_membrane_"])

    def _attach_reduced(self, groups: list[tuple[Any, list[Any]]]) -> None:
        """One ``SonataEcp`` per cell: the transfer matrix times ``i_membrane_`` after every step, in C."""
        from neuron import h

        self._variables = ["i_membrane_"]
        self._native = True
        self._groups, self._slots, self._vectors = [], [], {}
        for (cell, segs), tr in zip(groups, self._transfers):
            buf = h.Vector()
            rec = h.SonataEcp(cell.soma(0.5))
            rec.setup(buf, h.Vector(np.ascontiguousarray(tr).ravel()), self.n_electrodes)
            for seg in segs:
                rec.add(seg._ref_i_membrane_)
            buf.resize(self._block_steps * self.n_electrodes)  # one block's room, once
            buf.resize(0)
            self._groups.append((rec, buf, self.n_electrodes))
            self._slots.append(float(rec.slot))
        self._transfers = []  # the recorders hold their copies
        self._seen = 1  # like SonataRecorder, no sample of the initial state

    def _per_cell(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(kept row indices, each cell's (n_kept, nseg) currents, or (n_kept, n_electrodes) potentials
        when reduced natively) since the last drain (views into NEURON's buffers: use them before emptying)."""
        if self._native:
            n_new = self._steps_now() + 1 - self._seen
            if self._groups:
                _rec, buf, nseg = self._groups[0]
                n_new = int(buf.size()) // max(1, nseg)
            rows = self._select(max(n_new, 0))
            pick = _as_slice(rows)
            out = []
            for _rec, buf, nseg in self._groups:
                out.append(buf.as_numpy().reshape(-1, nseg)[pick])
            return rows, out
        vecs = self._vectors["i_membrane_"]
        n_new = int(vecs[0].size()) if vecs else self._steps_now() + 1 - self._seen
        rows = self._select(max(n_new, 0))
        pick = _as_slice(rows)
        out, c0 = [], 0
        for n in self.counts.tolist():
            out.append(np.stack([v.as_numpy()[pick] for v in vecs[c0:c0 + n]], axis=1) if n else
                       np.zeros((len(rows), 0)))
            c0 += n
        return rows, out

    def drain(self) -> dict[str, np.ndarray]:
        rows, currents = self._per_cell()
        n = len(rows)
        total = np.zeros((n, self.n_electrodes))
        contrib = np.empty((n, len(currents) * self.n_electrodes)) if self.contributions else None
        for j, im in enumerate(currents):
            if self._reduced:
                ecp = im  # already the potentials
            else:
                with np.errstate(invalid="ignore", over="ignore"):  # non-finite columns were warned about
                    ecp = im @ self._transfers[j].T  # (n, n_electrodes)
            total += ecp
            if contrib is not None:
                contrib[:, j * self.n_electrodes:(j + 1) * self.n_electrodes] = ecp
        self._empty_buffers()
        out = {"v": total}
        if contrib is not None:
            out["contributions"] = contrib
        return out

    def _empty_buffers(self) -> None:
        if self._native:
            for _rec, buf, _n in self._groups:
                buf.resize(0)
        else:
            for v in self._vectors["i_membrane_"]:
                v.resize(0)
