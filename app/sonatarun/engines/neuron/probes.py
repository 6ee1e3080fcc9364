"""Membrane and synapse reports recorded by NEURON itself.

Each cell of a report gets one ``SonataRecorder`` (``mod/sonatarec.mod``): its
AFTER SOLVE block — run by NEURON right before its own ``Vector.record``
sampling, so the values are the same — appends all of the cell's columns to one
Vector in a C++ loop, inside ``psolve``, with no Python in the loop. At each
block end :meth:`drain` reshapes each cell's buffer, subsamples it to the
report's dt, converts to float32 and empties it (the Vector keeps its capacity).
That costs ~7 ns per value per step instead of ~30 ns for one ``Vector.record``
per column (which is the fallback when no recorder mechanism is loaded).

Under CoreNEURON (``--coreneuron``) the mechanism library is the CoreNEURON build,
which holds ``mod_coreneuron/sonatacorerec.mod`` instead: one ``SonataCoreRecorder``
per column writes its float32 value straight into row ``(step - 1) mod rows`` (``rows`` =
``nsteps_block`` + 16: a block may end a step late)
of a numpy block the probe owns, so a block's rows are ready without a transpose.

Rows follow BMTK's convention so reports compare one to one:
row ``i`` holds the state after time step ``start_step + i*dt_step + 1``
(BMTK records in its post-``fadvance`` hook), for steps ``start_step <= k <
end_step`` with ``k % dt_step == 0``.

Column layout per cell, as BMTK writes it: ``sections: soma`` is one column,
``soma(0.5)``; ``all`` or a list of section types is every segment of those
sections in ``all`` order, with ``element_ids`` the section index and
``element_pos`` the segment centre.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from sonatarun.engines.base import Probe, ProbeSpec, RunSettings
from sonatarun.errors import ConfigError, EngineError

_TYPE_CODES = {"soma": 1, "somatic": 1, "axon": 2, "axonal": 2, "dend": 3, "basal": 3, "apic": 4, "apical": 4}
_ION_CONC = ("cai", "cao", "nai", "nao", "ki", "ko", "cli", "clo")


def units_of(variable: str) -> str:
    if variable == "v":
        return "mV"
    if variable in _ION_CONC:
        return "mM"
    if variable in ("ina", "ik", "ica", "il") or variable.startswith("i_"):
        return "mA/cm2"
    if variable in ("i", "g"):
        return "nA" if variable == "i" else "uS"
    return ""


class _RecordingProbe(Probe):
    """Shared recording and time bookkeeping: which samples become report rows."""

    def _setup_times(self, spec: ProbeSpec, settings: RunSettings) -> None:
        sim_dt = settings.dt
        self._sim_dt, self._t0 = sim_dt, settings.tstart
        self._block_steps = int(settings.nsteps_block)
        self.dt = float(spec.dt) if spec.dt else sim_dt
        ratio = self.dt / sim_dt
        if self.dt < sim_dt - 1e-12 or abs(ratio - round(ratio)) > 1e-4:
            raise ConfigError(f"report dt {self.dt} must be a whole multiple of the run dt {sim_dt}",
                              key=f"reports.{spec.name}.dt", fix=f"use a multiple of {sim_dt}")
        self._dt_step = int(round(ratio))
        start = spec.start_time if spec.start_time is not None else settings.tstart
        end = spec.end_time if spec.end_time is not None else settings.tstop
        if start < settings.tstart or end > settings.tstop or end < start:
            raise ConfigError(f"report window [{start}, {end}] is outside the run [{settings.tstart}, "
                              f"{settings.tstop}]", key=f"reports.{spec.name}", fix="fix start_time/end_time")
        self.tstart, self.tstop = float(start), float(end)
        self._start_step = int(start / sim_dt)
        self._end_step = end / sim_dt
        # next sample's index; sample s is the state after s steps (Vector.record also keeps s=0)
        self._seen = 0

    def _attach(self, groups: list[tuple[Any, list[Any]]], variables: list[str]) -> None:
        """Start recording `variables` of each group's objects (segments or synapses) of one cell."""
        from neuron import h

        self._variables = list(variables)
        self._native = hasattr(h, "SonataRecorder")
        # CoreNEURON runs: the CoreNEURON build's column recorder (mod_coreneuron/sonatacorerec.mod)
        # (not for i_membrane_: CoreNEURON cannot relocate a POINTER to it; the ECP probe keeps Vector.record)
        self._core = not self._native and hasattr(h, "SonataCoreRecorder") and "i_membrane_" not in variables
        self._groups: list[tuple[Any, Any, int]] = []  # (recorder, buffer, n objects)
        self._slots: list[float] = []
        self._vectors: dict[str, list[Any]] = {v: [] for v in variables}
        if self._core:
            total = sum(len(objs) for _cell, objs in groups)
            # a block can end a step late or early (psolve to a float time), so a few rows of slack; rows
            # are (step - 1) mod _core_rows on both sides, so any block length up to it lands in place
            self._core_rows = max(1, self._block_steps) + 16
            self._core_bufs = {var: np.zeros((self._core_rows, total), dtype=np.float32) for var in variables}
            self._core_recs: list[Any] = []
        c0 = 0
        for cell, objs in groups:
            refs = [[_ref(o, var, self.spec.name) for o in objs] for var in variables]
            if self._core:
                for var, per_var in zip(variables, refs):
                    addr = self._core_bufs[var].ctypes.data
                    for j, r in enumerate(per_var):
                        rec = h.SonataCoreRecorder(cell.soma(0.5))
                        h.setpointer(r, "ptr", rec)
                        rec.col, rec.ncols, rec.nrows = c0 + j, total, self._core_rows
                        rec.addr = float(addr)  # user-space addresses are < 2**53: exact in a double
                        self._core_recs.append(rec)
                c0 += len(objs)
            elif self._native:
                buf = h.Vector()
                rec = h.SonataRecorder(cell.soma(0.5))
                rec.setup(buf)
                for per_var in refs:
                    for r in per_var:
                        rec.add(r)
                # one block's worth of room, once: appends never reallocate (nor overshoot)
                buf.resize(self._block_steps * len(objs) * len(variables))
                buf.resize(0)
                self._groups.append((rec, buf, len(objs)))
                self._slots.append(float(rec.slot))
            else:
                for var, per_var in zip(variables, refs):
                    self._vectors[var].extend(h.Vector().record(r) for r in per_var)
        if self._native or self._core:
            self._seen = 1  # the recorders do not keep the initial state

    def _set_mapping(self, spec: ProbeSpec, node_ids: list[int], counts: list[int], elem: list[int],
                     pos: list[float], groups: list) -> None:
        """The column mapping the report writer needs, then the recorders attached in that order."""
        self.node_ids = np.asarray(node_ids, dtype=np.uint64)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.element_ids = np.asarray(elem, dtype=np.uint32)
        self.element_pos = np.asarray(pos, dtype=np.float64)
        self.units = units_of(spec.variables[0]) if spec.variables else ""
        self._attach(groups, spec.variables)

    def _select(self, n_new: int) -> np.ndarray:
        s = np.arange(self._seen, self._seen + n_new)
        k = s - 1  # BMTK's tstep of that sample
        keep = (k >= self._start_step) & (k < self._end_step) & (k % self._dt_step == 0)
        self._seen += n_new
        return np.flatnonzero(keep)

    def resume_at(self, steps: int) -> None:
        """After a state restore at `steps` steps (Vector.record restarted by frecord_init)."""
        if self._native:
            # a state restore writes back every range variable, the recorders' `slot` too, which
            # another run (another rank count) numbered differently: put ours back
            for (rec, buf, _n), slot in zip(self._groups, self._slots):
                rec.slot = slot
                buf.resize(0)
            self._seen = steps + 1
        else:  # (CoreNEURON runs, whose column recorders never get here, refuse --resume)
            self._seen = steps

    @property
    def n_times(self) -> int:
        """Rows the whole run produces (for preallocating the report)."""
        k = np.arange(self._start_step, math.ceil(self._end_step - 1e-9))
        return int(np.count_nonzero(k % self._dt_step == 0))

    def _steps_now(self) -> int:
        from neuron import h

        return int(round((h.t - self._t0) / self._sim_dt))

    def drain(self) -> dict[str, np.ndarray]:
        """The rows recorded since the last drain, as float32 (the report's dtype); buffers emptied."""
        nvar = len(self._variables)
        if self._core:
            n_new = self._steps_now() + 1 - self._seen
            if n_new > self._core_rows:
                raise EngineError(f"report '{self.spec.name}': {n_new} steps since the last drain exceed the "
                                  f"recorder's {self._core_rows} rows", key="run.nsteps_block")
            samples = np.arange(self._seen, self._seen + max(n_new, 0))
            rows = self._select(max(n_new, 0))
            pick = _as_slice((samples[rows] - 1) % self._core_rows)
            return {var: np.array(buf[pick], dtype=np.float32) for var, buf in self._core_bufs.items()}
        if self._native:
            n_new = self._steps_now() + 1 - self._seen
            if self._groups:
                rec, buf, n_obj = self._groups[0]
                n_new = int(buf.size()) // max(1, n_obj * nvar)
            rows = self._select(max(n_new, 0))
            pick = _as_slice(rows)
            total = sum(n for _r, _b, n in self._groups)
            out = {var: np.empty((len(rows), total), dtype=np.float32) for var in self._variables}
            c0 = 0
            for _rec, buf, n_obj in self._groups:
                a = buf.as_numpy().reshape(-1, n_obj * nvar)  # a view of NEURON's buffer
                for i, var in enumerate(self._variables):
                    out[var][:, c0:c0 + n_obj] = a[pick, i * n_obj:(i + 1) * n_obj]  # cast in place
                c0 += n_obj
                buf.resize(0)
            return out
        first = next((v for vecs in self._vectors.values() for v in vecs), None)
        n_new = int(first.size()) if first is not None else self._steps_now() + 1 - self._seen
        rows = self._select(max(n_new, 0))
        pick = _as_slice(rows)
        out: dict[str, np.ndarray] = {}
        for var, vecs in self._vectors.items():
            data = np.empty((len(rows), len(vecs)), dtype=np.float32)
            for j, vec in enumerate(vecs):
                if len(rows):
                    data[:, j] = vec.as_numpy()[pick]
                vec.resize(0)
            out[var] = data
        return out


class MembraneProbe(_RecordingProbe):
    def __init__(self, spec: ProbeSpec, cells: dict[int, Any], settings: RunSettings) -> None:
        self.spec = spec
        self._setup_times(spec, settings)
        sections = spec.sections
        if isinstance(sections, str):
            sections = [sections]
        sections = [str(s).lower() for s in sections]
        soma_only = sections == ["soma"]
        if not soma_only and "all" not in sections:
            bad = [s for s in sections if s not in _TYPE_CODES]
            if bad:
                raise ConfigError(f"unknown section type(s) {bad}", key=f"reports.{spec.name}.sections",
                                  fix="use soma, all, or a list of soma/dend/apic/axon (basal/apical)")
        wanted = None if "all" in sections else {_TYPE_CODES[s] for s in sections}
        node_ids, counts, elem, pos, groups = [], [], [], [], []
        for gid, nid in zip(np.asarray(spec.gids).tolist(), np.asarray(spec.node_ids).tolist()):
            cell = cells.get(int(gid))
            if cell is None or getattr(cell, "segment_table", None) is None:
                continue  # another rank's cell, or not a detailed one (BMTK reports only those)
            if soma_only:
                soma = cell.soma
                sid = next(i for i, s in enumerate(cell.sections) if s == soma)
                cell_segs = [(sid, 0.5, soma(0.5))]
            else:
                tbl = cell.segment_table
                mask = np.ones(len(tbl.sec_id), bool) if wanted is None else np.isin(tbl.type, list(wanted))
                secs = cell.sections
                cell_segs = [(int(s), float(x), secs[int(s)](float(x)))
                             for s, x in zip(tbl.sec_id[mask], tbl.x[mask])]
            node_ids.append(int(nid))
            counts.append(len(cell_segs))
            for s, x, _seg in cell_segs:
                elem.append(s)
                pos.append(x)
            groups.append((cell, [seg for _s, _x, seg in cell_segs]))
        self._set_mapping(spec, node_ids, counts, elem, pos, groups)


class SynapseProbe(_RecordingProbe):
    """A variable of every synapse (optionally of one point-process type) on the selected cells."""

    def __init__(self, spec: ProbeSpec, cells: dict[int, Any], settings: RunSettings) -> None:
        self.spec = spec
        self._setup_times(spec, settings)
        syn_type = spec.options.get("syn_type", None)
        node_ids, counts, elem, pos, groups = [], [], [], [], []
        for gid, nid in zip(np.asarray(spec.gids).tolist(), np.asarray(spec.node_ids).tolist()):
            cell = cells.get(int(gid))
            if cell is None or not hasattr(cell, "synapses"):
                continue
            ordered = cell.synapses_in_bmtk_order() if hasattr(cell, "synapses_in_bmtk_order") else cell.synapses
            mine = [(s, x, syn) for syn, _nc, s, x, _src in ordered
                    if not syn_type or syn.hname().startswith(syn_type)]
            if not mine:
                continue
            node_ids.append(int(nid))
            counts.append(len(mine))
            for s, x, _syn in mine:
                elem.append(s)
                pos.append(x)
            groups.append((cell, [syn for _s, _x, syn in mine]))
        self._set_mapping(spec, node_ids, counts, elem, pos, groups)


def _as_slice(rows: np.ndarray) -> Any:
    """Evenly spaced rows as a slice (a view, no copy); otherwise the index array."""
    if len(rows) == 0:
        return slice(0, 0)
    step = int(rows[1] - rows[0]) if len(rows) > 1 else 1
    if step > 0 and np.all(np.diff(rows) == step):
        return slice(int(rows[0]), int(rows[-1]) + 1, step)
    return rows


def _ref(obj: Any, var: str, report: str) -> Any:
    try:
        return getattr(obj, f"_ref_{var}")
    except (AttributeError, NameError) as exc:
        raise EngineError(f"cannot record '{var}' on {obj} ({exc})", key=f"reports.{report}.variable_name",
                          fix="name a range variable that exists where you record (e.g. v, cai with a "
                              "calcium mechanism, i for synapses)") from None


def create(spec: ProbeSpec, cells: dict[int, Any], settings: RunSettings) -> Probe:
    """Entry point used by the engine's ``add_probe`` (before ``finitialize``)."""
    kind = spec.kind.lower()
    if kind in ("membrane", "membrane_report"):
        return MembraneProbe(spec, cells, settings)
    if kind in ("synapse", "syn_report", "netcon_report"):
        return SynapseProbe(spec, cells, settings)
    if kind == "extracellular":
        from sonatarun.engines.neuron.ecp import EcpProbe

        return EcpProbe(spec, cells, settings)
    raise EngineError(f"the NEURON engine does not record '{spec.kind}' reports", key=f"reports.{spec.name}",
                      fix="use membrane_report, syn_report, netcon_report or extracellular")
