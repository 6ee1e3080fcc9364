"""`model_type: biophysical`: morphologically detailed cells, built as BMTK BioNet builds them.

Per batch (one node type): the morphology file is read once (Import3d) and
copied for every cell, the ``model_processing`` directives set the Allen
parameters, and ``nseg = 1 + 2*int(L/(2*dL))`` is applied afterwards, in that
order, as BMTK does. The segment table used for synapse placement is computed
once per (morphology, directives, dL): the same values BMTK computes for each cell.

``hoc:<Template>`` models are instantiated per cell from ``templates_dir``
(there is no file to share), then processed the same way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.engines.base import CellBatch, ConnectionBatch, RunSettings
from sonatarun.engines.neuron import processing
from sonatarun.engines.neuron.cells.base import CellBuilder, NrnCell
from sonatarun.engines.neuron.morphology import MorphologyCache, resolve_morphology, section_type
from sonatarun.engines.neuron.synapses import (SegmentTable, TargetRule, choose, preselected,
                                               synapse_factory)
from sonatarun.errors import CircuitError, ConfigError, EngineError
from sonatarun.util.values import is_missing


class BioCell(NrnCell):
    """One detailed cell: its sections in BMTK order, synapses, and a placement random stream."""

    def __init__(self, gid: int, node_id: int, population: str) -> None:
        self.gid, self.node_id, self.population = int(gid), int(node_id), population
        self.cell = processing.SectionSet(self)
        self.segment_table: SegmentTable | None = None
        self.synapses: list[tuple[Any, Any, int, float, int]] = []  # (syn, netcon, sec_id, x, src gid)
        self.synapse_keys: list[tuple[str, int, int]] = []  # (edge population, edge id, k-th synapse of the edge)
        self.population_order: list[str] = []  # edge populations in BMTK's connection order
        self.hobj: Any = None  # the hoc template object for hoc: models
        self._rng = np.random.RandomState(self.gid)  # BMTK: Cell.init_connections
        self._uniforms = np.empty(0)
        self._stream_end = 0
        self._plans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._open: dict[str, dict] = {}  # unplanned placement of the population being connected
        self._closed: set[str] = set()

    def __str__(self) -> str:  # section names read e.g. "bio_12.dend[3]"
        return f"{self.population}_{self.node_id}"

    # -- NrnCell -------------------------------------------------------------
    @property
    def sections(self) -> list[Any]:
        return self.cell.sections

    @property
    def soma(self) -> Any:
        return self.cell.soma

    def spike_source(self, threshold: float) -> Any:
        from neuron import h

        nc = h.NetCon(self.soma(0.5)._ref_v, None, sec=self.soma)
        nc.threshold = threshold
        return nc

    def segment(self, section: str | int = "soma", x: float = 0.5) -> Any:
        if isinstance(section, (int, np.integer)):
            return self.sections[int(section)](x)
        name = str(section)
        if name in ("soma", "somatic"):
            return self.soma(x)
        if "[" in name:  # "dend[3]"
            stype, idx = name.split("[", 1)
            want = (stype, int(idx.rstrip("]")))
            for sec in self.sections:
                tail = sec.name().split(".")[-1]
                if (tail.split("[")[0], int(tail.split("[")[1].rstrip("]"))) == want:
                    return sec(x)
        else:
            secs = self.cell.of_type(name[:4])
            if secs:
                return secs[0](x)
        raise EngineError(f"cell {self.population}:{self.node_id} has no section '{section}'", key="section",
                          fix="use soma, or a section like dend[0]")

    # -- random placement stream ----------------------------------------------
    def add_draw_plan(self, population: str, edge_ids: np.ndarray, offsets: np.ndarray, total: int) -> None:
        """Called by :func:`synapses.plan_placement`: where each edge's draws start in this cell's stream."""
        if population not in self.population_order:
            self.population_order.append(population)
        order = np.argsort(edge_ids, kind="stable")
        self._plans[population] = (np.asarray(edge_ids)[order], self._stream_end + np.asarray(offsets)[order])
        self._stream_end += int(total)

    def _draws(self, start: int, n: int) -> np.ndarray:
        need = start + n
        if len(self._uniforms) < need:
            self._uniforms = np.concatenate([self._uniforms, self._rng.random_sample(need - len(self._uniforms))])
        return self._uniforms[start:need]

    def _planned(self, batch: ConnectionBatch, rows: np.ndarray) -> np.ndarray | None:
        """Offsets from :func:`synapses.plan_placement`, when the engine made a plan."""
        plan = self._plans.get(batch.edge_population)
        if plan is None or batch.edge_ids is None:
            return None
        ids = np.asarray(batch.edge_ids)[rows]
        pos = np.minimum(np.searchsorted(plan[0], ids), len(plan[0]) - 1)
        return plan[1][pos] if np.all(plan[0][pos] == ids) else None

    def _place_unplanned(self, batch: ConnectionBatch, rows: np.ndarray, n: np.ndarray, cands: tuple) -> np.ndarray:
        """Without a plan: offsets for these edges among all edges of their population seen so far
        (ordered by edge id, as BMTK), moving already placed synapses whose offsets shift.

        Batches of one population arrive type by type while BMTK interleaves types by edge id;
        once the last batch of the population is in, every synapse sits where BMTK puts it.
        Exact when populations come in BMTK's order and are not interleaved (else: call order).
        """
        pop = batch.edge_population
        st = self._open.get(pop)
        if st is None:
            if pop in self._closed:  # population resumed after another one started: call order
                offs = self._stream_end + np.cumsum(n) - n
                self._stream_end += int(n.sum())
                return offs
            self._closed.update(self._open)
            self._open = {}
            st = self._open[pop] = {"base": self._stream_end, "ids": np.empty(0, np.int64),
                                    "n": np.empty(0, np.int64), "cand": np.empty(0, np.int64),
                                    "first": np.empty(0, np.int64), "offs": np.empty(0, np.int64), "cands": []}
        st["cands"].append(cands)
        ids = np.asarray(batch.edge_ids)[rows] if batch.edge_ids is not None else \
            (st["ids"].max(initial=-1) + 1 + np.arange(len(rows)))
        all_ids = np.concatenate([st["ids"], ids])
        all_n = np.concatenate([st["n"], n])
        order = np.argsort(all_ids, kind="stable")
        offs_sorted = st["base"] + np.cumsum(all_n[order]) - all_n[order]
        all_offs = np.empty_like(offs_sorted)
        all_offs[order] = offs_sorted
        old = len(st["ids"])
        moved = np.flatnonzero(all_offs[:old] != st["offs"])
        for e in moved.tolist():  # relocate synapses of earlier batches whose draws shifted
            tar_ix, prob = st["cands"][int(st["cand"][e])]
            segs = choose(self._draws(int(all_offs[e]), int(st["n"][e])), tar_ix, prob)
            table, secs = self.segment_table, self.sections
            for k, seg in enumerate(segs.tolist()):
                i = int(st["first"][e]) + k
                syn, nc, _sid, _x, src = self.synapses[i]
                sid = int(table.sec_id[seg])
                syn.loc(secs[sid](float(table.x[seg])))
                self.synapses[i] = (syn, nc, sid, syn.get_segment().x, src)
        st["ids"], st["n"], st["offs"] = all_ids, all_n, all_offs
        st["cand"] = np.concatenate([st["cand"], np.full(len(rows), len(st["cands"]) - 1)])
        st["first"] = np.concatenate([st["first"], len(self.synapses) + np.cumsum(n) - n])
        self._stream_end = st["base"] + int(all_n.sum())
        return all_offs[old:]

    # -- connections -----------------------------------------------------------
    def connect(self, batch: ConnectionBatch, rows: np.ndarray, pc: Any) -> list[Any]:
        make = getattr(batch, "_nrn_synapse_factory", None)
        if make is None:  # resolved once per batch, not per cell
            make = synapse_factory(batch.model_template, batch.dynamics,
                                   f"edge type {batch.edge_type_id} of {batch.edge_population}")
            object.__setattr__(batch, "_nrn_synapse_factory", make)
        rows = np.asarray(rows)
        src = np.asarray(batch.source_gids)[rows]
        weights = np.asarray(batch.weights, dtype=float)[rows]
        delays = np.asarray(batch.delays, dtype=float)[rows]
        pre = preselected(batch)
        if pre is not None:
            sec_ids = pre[0][rows].astype(np.int64)
            xs = pre[1][rows].astype(float)
            if len(sec_ids) and (sec_ids.max() >= len(self.sections) or sec_ids.min() < 0):
                raise CircuitError(f"afferent_section_id out of range for {self.population}:{self.node_id} "
                                   f"({len(self.sections)} sections)", key="afferent_section_id",
                                   fix="check the edges were built for this morphology and model_processing")
            per_edge = np.ones(len(rows), dtype=np.int64)
        else:
            table = self.segment_table
            rule = TargetRule.of(batch)
            tar_ix, prob = table.find(rule.sections, rule.distance_range)
            n = np.asarray(batch.nsyns, dtype=np.int64)[rows]
            if len(tar_ix) == 0:
                return []  # BMTK logs a warning and makes no synapse (and draws nothing)
            offs = self._planned(batch, rows)
            if offs is None:
                offs = self._place_unplanned(batch, rows, n, (tar_ix, prob))
            segs = np.concatenate([choose(self._draws(int(o), int(k)), tar_ix, prob)
                                   for o, k in zip(offs, n)]) if n.sum() else np.empty(0, dtype=np.int64)
            sec_ids = table.sec_id[segs]
            xs = table.x[segs]
            per_edge = n
        keep: list[Any] = []
        edge_of = np.repeat(np.arange(len(rows)), per_edge)
        nth = np.arange(len(edge_of)) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
        ids = (np.asarray(batch.edge_ids)[rows] if batch.edge_ids is not None else rows).tolist()
        pop = batch.edge_population
        if pop not in self.population_order:
            self.population_order.append(pop)
        secs = self.sections
        for k, j, sid, x in zip(edge_of.tolist(), nth.tolist(), sec_ids.tolist(), xs.tolist()):
            syn = make(secs[sid], x)
            nc = pc.gid_connect(int(src[k]), syn)
            nc.weight[0] = weights[k]
            nc.delay = delays[k]
            self.synapses.append((syn, nc, sid, syn.get_segment().x, int(src[k])))  # BMTK: nc.postloc()
            self.synapse_keys.append((pop, int(ids[k]), j))
            keep.append(syn)
            keep.append(nc)
        return keep

    def synapses_in_bmtk_order(self) -> list[tuple[Any, Any, int, float, int]]:
        """Synapses as BMTK creates them (population order, then edge id), so synapse reports
        have BMTK's column order whatever order the engine connected batches in."""
        rank = {p: i for i, p in enumerate(self.population_order)}
        order = sorted(range(len(self.synapses)),
                       key=lambda i: (rank[self.synapse_keys[i][0]],) + self.synapse_keys[i][1:])
        return [self.synapses[i] for i in order]


class BiophysicalBuilder(CellBuilder):
    """Builds the cells of one node type. Morphology templates and segment tables are shared by
    every builder of the run (the engine makes one builder per batch), so a file is read once."""

    _morphologies = MorphologyCache()
    _tables: dict[tuple[str, int], SegmentTable] = {}
    _templates_loaded: set[str] = set()

    def build(self, batch: CellBatch, settings: RunSettings) -> list[NrnCell]:
        from neuron import h

        directives = processing.parse(batch.model_processing)
        template = (batch.model_template or "").strip()
        kind, _, name = template.partition(":")
        if kind not in ("ctdb", "hoc", "") or (kind == "ctdb" and name not in ("Biophys1.hoc", "Biophys1")):
            raise ConfigError(f"model_template '{template}' is not supported for biophysical cells",
                              key="model_template", fix="use ctdb:Biophys1.hoc or hoc:<TemplateName>")
        params = batch.dynamics if batch.dynamics else None
        src = None
        if "dynamics_params" in batch.attributes and len(batch):
            name = str(batch.attributes["dynamics_params"][0])
            pdir = settings.components.get("biophysical_neuron_models_dir")
            src = str(Path(pdir) / name) if pdir is not None and not Path(name).is_absolute() else name
        if params is not None:
            from sonatarun.engines.neuron.mechanisms import require_mechanisms

            require_mechanisms(processing.mechanisms_used(params), src)
        morph_col = batch.attributes.get("morphology")
        if kind == "hoc":
            from sonatarun.engines.neuron.morphology import load_hoc_support

            load_hoc_support()  # templates commonly read their morphology through Import3d
            self._load_templates(settings, name)
        cells: list[NrnCell] = []
        needs_shape = False
        for i, (gid, nid) in enumerate(zip(batch.gids.tolist(), batch.node_ids.tolist())):
            cell = BioCell(gid, nid, batch.population)
            morph = None
            if morph_col is not None and isinstance(morph_col[i], str) and morph_col[i] not in ("", "NULL"):
                morph = resolve_morphology(morph_col[i], batch.morphology_dir)
            cell_params = self._node_params(params, batch, i)
            axon_diams = None
            if kind == "hoc":
                self._from_hoc(cell, name, morph, cell_params)
            else:
                if morph is None:
                    raise CircuitError(f"biophysical node {batch.population}:{nid} has no morphology",
                                       key="morphology", fix="set the morphology column of its node type")
                tpl = self._morphologies.get(morph)
                drop = any(d in processing.DROPS_AXON and (cell_params is not None or d == "aibs_allactive")
                           for d in directives)
                secs = tpl.instantiate(cell, skip=("axon",) if drop else ())
                for sec in secs:
                    cell.cell.append(sec, section_type(sec.name()))
                axon_diams = tpl.axon_diams
            for d in directives:
                processing.PROCESSORS[d](cell.cell, cell_params, axon_diams, src)
                needs_shape = needs_shape or d in processing.DROPS_AXON
            if cell.soma is None:
                raise CircuitError(f"biophysical node {batch.population}:{nid} has no soma", file=morph,
                                   key="morphology", fix="use a reconstruction with a soma (SWC type 1)")
            total = 0
            for sec in cell.sections:
                sec.nseg = 1 + 2 * int(sec.L / (2 * settings.dL))
                total += sec.nseg
            # BMTK computes these per cell (its morphology_cache key changes when dL resets nseg, so it
            # never hits); cells sharing file, directives and dL get identical tables, so share one
            key = (str(morph) if morph is not None else f"hoc:{name}:{gid}", template, tuple(directives),
                   cell_params is None, settings.dL, total)
            table = self._tables.get(key)
            if table is None:
                table = SegmentTable.from_sections(cell.sections, cell.cell.types, cell.soma)
                self._tables[key] = table
            cell.segment_table = table
            cells.append(cell)
        if needs_shape:
            h.define_shape()  # BMTK calls it per cell after adding the axon stub; its 3-d points round diam
        return cells

    @staticmethod
    def _node_params(params: dict | None, batch: CellBatch, i: int) -> dict | None:
        """Per-node dynamics_params columns override scalars of the type-level dict (rarely used)."""
        if not batch.node_dynamics:
            return params
        merged = dict(params or {})
        for k, col in batch.node_dynamics.items():
            merged[k] = col[i].item() if hasattr(col[i], "item") else col[i]
        return merged

    def _load_templates(self, settings: RunSettings, name: str) -> None:
        from neuron import h

        tdir = settings.components.get("templates_dir")
        if tdir is not None and str(tdir) not in self._templates_loaded:
            for f in sorted(Path(tdir).glob("*.hoc")):
                h.load_file(str(f))
            self._templates_loaded.add(str(tdir))
        if not hasattr(h, name):
            raise ConfigError(f"hoc template '{name}' not found", key="model_template",
                              fix="put the .hoc file defining it in components.templates_dir")

    @staticmethod
    def _from_hoc(cell: BioCell, name: str, morph: Path | None, params: dict | None) -> None:
        """BMTK's loadHOC: Template(params['params']) or Template(morphology) or Template()."""
        from neuron import h

        tmpl = getattr(h, name)
        if params is not None and "params" in params:
            p = params["params"]
            hobj = tmpl(*p) if isinstance(p, list) else tmpl(p)
        elif morph is not None:
            hobj = tmpl(str(morph))
        else:
            hobj = tmpl()
        cell.hobj = hobj
        for sec in hobj.all:
            cell.cell.append(sec, section_type(sec.name()))


def check_batch(batch: CellBatch, components: dict[str, Path]) -> list[str]:
    """What ``build`` would reject, found without building (for the engine's check_plan):
    unknown directives or templates, missing morphology files, mechanisms not loaded."""
    from sonatarun.engines.neuron.mechanisms import known_mechanisms

    where = f"population '{batch.population}', node type {batch.node_type_id}"
    problems: list[str] = []
    try:
        directives = processing.parse(batch.model_processing)
    except ConfigError as exc:
        return [f"{where}: {exc.message} ({exc.fix})"]
    kind, _, name = (batch.model_template or "").strip().partition(":")
    if kind not in ("ctdb", "hoc", "") or (kind == "ctdb" and name not in ("Biophys1.hoc", "Biophys1")):
        problems.append(f"{where}: model_template '{batch.model_template}' is not supported for biophysical "
                        f"cells (use ctdb:Biophys1.hoc or hoc:<TemplateName>)")
    if kind != "hoc":
        if "morphology" not in batch.attributes:
            problems.append(f"{where}: no morphology column (set it in the node types or nodes file)")
        else:
            for m in sorted({str(v) for v in batch.attributes["morphology"].tolist() if not is_missing(v)}):
                path = resolve_morphology(m, batch.morphology_dir)
                if not path.exists():
                    problems.append(f"{where}: morphology {path} not found (check components.morphologies_dir)")
    if batch.dynamics and directives:
        missing = sorted(processing.mechanisms_used(batch.dynamics) - known_mechanisms())
        if missing:
            problems.append(f"{where}: mechanism(s) {', '.join(missing)} named in its dynamics_params are not "
                            f"loaded (put the .mod files in components.mechanisms_dir; they are compiled on "
                            f"first run or with `sonatarun mechanisms build DIR`)")
    return problems


def load_dynamics(path: Path) -> dict:
    """Read a dynamics_params JSON with a clear error (used by tests and tools)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read dynamics_params ({exc})", file=path, key="dynamics_params") from exc
