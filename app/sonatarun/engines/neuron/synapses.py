"""Synapses on detailed cells: models, and where they go on the dendrites.

Placement follows BMTK BioNet exactly, because which segment a synapse lands
on changes the voltages:

* edges with ``afferent_section_id``/``afferent_section_pos`` (or the older
  ``sec_id``/``sec_x``) get one synapse there;
* otherwise ``nsyns`` synapses are drawn among the segments of the
  ``target_sections`` types that overlap ``distance_range`` (path distance from
  the soma), with probability proportional to the overlapping length, by
  ``numpy.random.RandomState(gid).choice`` — one generator per target cell,
  consumed edge after edge in BMTK's order (edge populations in config order,
  recurrent ones before those fed by spike inputs; within a population, edges
  by id). ``RandomState.choice(a, n, p)`` draws ``n`` uniforms and searches the
  cumulative ``p``, so the same stream can be consumed in any order once each
  edge knows its offset: :func:`plan_placement` computes those offsets for all
  edges of a cell, vectorised, so connections can be made batch by batch.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from sonatarun.engines.base import ConnectionBatch
from sonatarun.errors import CircuitError, ConfigError, EngineError

SEC_TYPE_SWC = {"soma": 1, "somatic": 1, "axon": 2, "axonal": 2, "dend": 3, "basal": 3, "apic": 4, "apical": 4}


# -- segment table (BMTK's Morphology.seg_props) ------------------------------

@dataclass
class SegmentTable:
    """Coordinate-free properties of every segment of a cell, in ``all`` order."""

    sec_id: np.ndarray
    x: np.ndarray
    type: np.ndarray
    area: np.ndarray
    length: np.ndarray
    dist: np.ndarray
    _targets: dict = field(default_factory=dict, repr=False)

    @property
    def dist0(self) -> np.ndarray:
        return self.dist - self.length / 2.0

    @property
    def dist1(self) -> np.ndarray:
        return self.dist + self.length / 2.0

    @classmethod
    def from_sections(cls, sections: Sequence[Any], types: Sequence[str], soma: Any) -> "SegmentTable":
        """Computed once per morphology (and nseg), then shared by every cell that uses it."""
        from neuron import h

        h.distance(sec=soma)
        sec_id, xs, stype, area, length, dist = [], [], [], [], [], []
        for i, (sec, t) in enumerate(zip(sections, types)):
            code = SEC_TYPE_SWC.get(t, 0)
            seg_len = sec.L / sec.nseg
            for seg in sec:
                sec_id.append(i)
                xs.append(seg.x)
                stype.append(code)
                area.append(seg.area())
                length.append(seg_len)
                dist.append(h.distance(seg))
        return cls(np.array(sec_id), np.array(xs), np.array(stype), np.array(area), np.array(length),
                   np.array(dist))

    def find(self, section_names: Sequence[str], distance_range: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """BMTK's ``Morphology.find_sections``: candidate segment indices and their probabilities."""
        key = (tuple(section_names), tuple(distance_range))
        hit = self._targets.get(key)
        if hit is not None:
            return hit
        dmin, dmax = distance_range[0], distance_range[1]
        frac = np.maximum(0, (np.minimum(self.dist1, dmax) - np.maximum(self.dist0, dmin))) / self.length
        ix_drange = np.where(frac > 0)
        ix_labels = np.array([], dtype=int)
        for label in section_names:
            if label not in SEC_TYPE_SWC:
                raise CircuitError(f"unknown target section '{label}'", key="target_sections",
                                   fix="use soma, dend/basal, apic/apical or axon")
            ix_labels = np.append(ix_labels, np.where(self.type == SEC_TYPE_SWC[label]))
        tar_ix = np.intersect1d(ix_drange, ix_labels)
        tar_len = self.length[tar_ix] * frac[tar_ix]
        with np.errstate(invalid="ignore", divide="ignore"):
            prob = tar_len / np.sum(tar_len)
        self._targets[key] = (tar_ix, prob)
        return tar_ix, prob


def choose(uniforms: np.ndarray, tar_ix: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """``RandomState.choice(tar_ix, len(uniforms), p=prob)`` given the uniforms it would draw."""
    cdf = prob.cumsum()
    cdf /= cdf[-1]
    return tar_ix[cdf.searchsorted(uniforms, side="right")]


# -- edge-type attributes -----------------------------------------------------

def parse_target_sections(value: Any) -> list[str] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text in ("", "NULL", "None"):
        return None
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        parsed = [s.strip() for s in text.strip("[]").replace(",", " ").split()]
    return [parsed] if isinstance(parsed, str) else [str(v) for v in parsed]


def parse_distance_range(value: Any) -> list[float] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(v) for v in value]
    text = str(value).strip()
    if text in ("", "NULL", "None"):
        return None
    try:
        return [float(v) for v in json.loads(text)]
    except (ValueError, TypeError):
        return [0.0, float(text)]


def preselected(batch: ConnectionBatch) -> tuple[np.ndarray, np.ndarray] | None:
    """(section ids, positions) when the edges carry them (BMTK prefers sec_id/sec_x if both exist)."""
    cols = batch.columns
    sec = cols.get("sec_id", cols.get("afferent_section_id"))
    if sec is None:
        return None
    pos = cols.get("sec_x", cols.get("afferent_section_pos"))
    if pos is None:
        raise CircuitError("edges have a section id but no section position", key="afferent_section_pos",
                           fix="add afferent_section_pos (or sec_x) next to afferent_section_id (or sec_id)")
    return np.asarray(sec), np.asarray(pos)


@dataclass
class TargetRule:
    sections: list[str]
    distance_range: list[float]

    @classmethod
    def of(cls, batch: ConnectionBatch) -> "TargetRule":
        ts = parse_target_sections(batch.type_attrs.get("target_sections"))
        dr = parse_distance_range(batch.type_attrs.get("distance_range"))
        if ts is None or dr is None:
            missing = "target_sections" if ts is None else "distance_range"
            raise CircuitError(f"edge type {batch.edge_type_id} of '{batch.edge_population}' targets detailed "
                               f"cells without a synapse location", key=missing,
                               fix="give the edge type target_sections and distance_range, or the edges "
                                   "afferent_section_id/afferent_section_pos")
        return cls(ts, dr)


# -- draw offsets into each cell's random stream --------------------------------

def plan_placement(batches: Sequence[ConnectionBatch], cells: dict[int, Any]) -> None:
    """Tell every detailed target cell where each of its edges starts in its random stream.

    Call once with the batches in BMTK's population order (recurrent edge
    populations in config order, then those fed by each spike input in input
    order); batches of one population may come in any order, edges are ordered
    by edge id inside a population. A second call (e.g. for input edges built
    later) continues each cell's stream where the first left it.
    """
    # group batches by population, keeping first-seen population order
    pops: dict[str, list[ConnectionBatch]] = {}
    for b in batches:
        pops.setdefault(b.edge_population, []).append(b)
    for pop, group in pops.items():
        tg, eid, ndraw = [], [], []
        for b in group:
            if len(b) == 0 or any(c in b.columns for c in ("sec_id", "afferent_section_id")):
                continue  # one synapse at a given place: no draws
            if not any(getattr(cells.get(int(g)), "segment_table", None) is not None
                       for g in np.unique(np.asarray(b.target_gids))):
                continue  # no detailed target (point cells): nothing to place
            rule = None
            n = np.asarray(b.nsyns, dtype=np.int64).copy()
            ids = b.edge_ids if b.edge_ids is not None else np.arange(len(b))
            targets = np.asarray(b.target_gids)
            for gid in np.unique(targets):
                cell = cells.get(int(gid))
                table = getattr(cell, "segment_table", None)
                if table is None:
                    n[targets == gid] = 0
                    continue
                rule = rule or TargetRule.of(b)
                tar_ix, _ = table.find(rule.sections, rule.distance_range)
                if len(tar_ix) == 0:
                    n[targets == gid] = 0
            tg.append(targets)
            eid.append(np.asarray(ids))
            ndraw.append(n)
        if not tg:
            continue
        tg_a, eid_a, n_a = np.concatenate(tg), np.concatenate(eid), np.concatenate(ndraw)
        order = np.lexsort((eid_a, tg_a))
        tg_s, eid_s, n_s = tg_a[order], eid_a[order], n_a[order]
        csum = np.cumsum(n_s) - n_s
        starts = np.flatnonzero(np.r_[True, tg_s[1:] != tg_s[:-1]])
        ends = np.r_[starts[1:], len(tg_s)]
        for s, e in zip(starts, ends):
            cell = cells.get(int(tg_s[s]))
            if cell is None or not hasattr(cell, "add_draw_plan"):
                continue
            local = csum[s:e] - csum[s]
            cell.add_draw_plan(pop, eid_s[s:e], local, int(n_s[s:e].sum()))


# -- synapse models -------------------------------------------------------------

_ALIASES = {"erev": "e"}
_SKIP = {"level_of_detail", "model_template", "name", "comment"}


def synapse_factory(template: str | None, params: dict, where: str) -> Callable[[Any, float], Any]:
    """A function (section, x) -> point process for an edge type's model_template + dynamics."""
    from neuron import h

    name = (template or "").strip()
    lod = str(params.get("level_of_detail", "")).strip()
    if name.lower() in ("exp2syn", "") and (name or lod.lower() == "exp2syn"):
        name = "Exp2Syn"
    if name.startswith("nrn:"):
        name = name[4:]
    if not name:
        raise ConfigError("edge type has no synapse model_template", key="model_template", file=where,
                          fix="set model_template (e.g. exp2syn) on the edge type")
    cls = getattr(h, name, None)
    if cls is None:
        raise EngineError(f"point process '{name}' not loaded", key="model_template", file=where,
                          fix="put its .mod file in components.mechanisms_dir")
    # resolve attribute names once on a throw-away instance
    from neuron import h as _h

    probe_sec = _h.Section(name="sonatarun_probe")
    try:
        probe = cls(0.5, sec=probe_sec)
        assigns = []
        for k, v in params.items():
            if k in _SKIP or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            attr = k if hasattr(probe, k) else _ALIASES.get(k)
            if attr and hasattr(probe, attr):
                assigns.append((attr, float(v)))
        del probe
    finally:
        del probe_sec

    def make(sec: Any, x: float) -> Any:
        syn = cls(x, sec=sec)
        for attr, v in assigns:
            setattr(syn, attr, v)
        return syn

    return make
