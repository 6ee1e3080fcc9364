"""`model_processing` directives: axon replacement and Allen Cell Types parameters, as BMTK does.

Each function mirrors ``bmtk.simulator.bionet.default_setters.cell_models``
statement by statement (same order of inserts and assignments) because parity
of voltages depends on it. They act on a :class:`SectionSet` instead of a hoc
template object so that cells built from cached morphologies and cells built
from user ``hoc:`` templates share the code.

``fullaxon`` keeps the reconstructed axon and applies the perisomatic
parameters to every section (BMTK 1.2 has no such directive; it is the
perisomatic rule without the stub, used for models fitted with a full axon).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sonatarun.errors import ConfigError, EngineError


@dataclass
class SectionSet:
    """A cell's sections in BMTK's ``hobj.all`` order, with their type ('soma', 'dend', ...)."""

    owner: Any
    sections: list[Any] = field(default_factory=list)
    types: list[str] = field(default_factory=list)

    def of_type(self, stype: str) -> list[Any]:
        return [s for s, t in zip(self.sections, self.types) if t == stype]

    def append(self, sec: Any, stype: str) -> None:
        self.sections.append(sec)
        self.types.append(stype)

    def remove_type(self, stype: str) -> None:
        keep = [(s, t) for s, t in zip(self.sections, self.types) if t != stype]
        self.sections = [s for s, _ in keep]
        self.types = [t for _, t in keep]

    @property
    def soma(self) -> Any:
        somas = self.of_type("soma")
        return somas[0] if somas else None


def _where(dynamics_file: str | None) -> dict:
    return {"file": dynamics_file, "key": "dynamics_params"} if dynamics_file else {"key": "dynamics_params"}


def _section_of(p: dict, what: str, src: str | None) -> str:
    try:
        return p["section"]
    except KeyError:
        raise ConfigError(f"a '{what}' entry has no 'section'", **_where(src),
                          fix="give each entry a section: soma, dend, apic or axon") from None


def mechanisms_used(params: dict) -> set[str]:
    """Names of density mechanisms a dynamics_params dict inserts; the builder checks them once per
    node type (``mechanisms.require_mechanisms``) so a missing one is named before anything is built."""
    names = {"pas"} if params.get("passive") else set()
    for p in params.get("genome", []) or []:
        mech = p.get("mechanism", "")
        if mech:
            names.add(mech)
    return names


# -- axon handling ----------------------------------------------------------

def add_axon_stub(cell: SectionSet, diams: tuple[float, float], at_soma: float) -> None:
    """Two 30 um axon sections replacing the reconstruction (fix_axon_peri / fix_axon_allactive)."""
    from neuron import h

    for sec in cell.of_type("axon"):  # reconstructed axon of a hoc template (cached ones never create it)
        h.delete_section(sec=sec)
    cell.remove_type("axon")
    a0 = h.Section(name="axon[0]", cell=cell.owner)
    a1 = h.Section(name="axon[1]", cell=cell.owner)
    for sec, d in ((a0, diams[0]), (a1, diams[1])):
        sec.L = 30
        sec.diam = d
        cell.append(sec, "axon")
    a0.connect(cell.soma(at_soma), 0)
    a1.connect(a0(1), 0)


# -- parameters -------------------------------------------------------------

def set_params_peri(cell: SectionSet, params: dict, src: str | None = None) -> None:
    try:
        passive = params["passive"][0]
        conditions = params["conditions"][0]
        genome = params["genome"]
    except (KeyError, IndexError, TypeError):
        raise ConfigError("not an Allen Cell Types parameter set (needs passive, conditions, genome)",
                          **_where(src), fix="use the Allen JSON form or another model_processing") from None
    cm_dict = {c["section"]: c["cm"] for c in passive["cm"]}
    for sec, stype in zip(cell.sections, cell.types):
        sec.Ra = passive["ra"]
        if stype not in cm_dict:
            raise ConfigError(f"passive.cm has no value for section '{stype}'", **_where(src),
                              fix=f"add {{\"section\": \"{stype}\", \"cm\": ...}} to passive.cm")
        sec.cm = cm_dict[stype]
        sec.insert("pas")
        sec.e_pas = passive["e_pas"]
    for p in genome:
        stype = _section_of(p, "genome", src)
        for sec in cell.of_type(stype):
            if p.get("mechanism", "") != "":
                sec.insert(p["mechanism"])
            _set(sec, p["name"], p["value"], src)
    for erev in conditions.get("erev", []):
        for sec in cell.of_type(erev["section"]):
            _set(sec, "ena", erev["ena"], src)
            _set(sec, "ek", erev["ek"], src)


def set_params_allactive(cell: SectionSet, params: dict, src: str | None = None) -> None:
    from neuron import h

    try:
        passive = params["passive"][0]
        genome = params["genome"]
        conditions = params["conditions"][0]
    except (KeyError, IndexError, TypeError):
        raise ConfigError("not an Allen Cell Types parameter set (needs passive, conditions, genome)",
                          **_where(src), fix="use the Allen JSON form or another model_processing") from None
    for sec in cell.sections:
        sec.insert("pas")
    if "e_pas" in passive:
        for sec in cell.sections:
            sec.e_pas = passive["e_pas"]
    if "ra" in passive:
        for sec in cell.sections:
            sec.Ra = passive["ra"]
    for cm in passive.get("cm", []):
        for sec in cell.of_type(cm["section"]):
            sec.cm = cm["cm"]
    for g in genome:
        if g["section"] == "glob":
            continue
        value = float(g["value"])
        mech = g.get("mechanism", "")
        for sec in cell.of_type(g["section"]):
            if mech != "":
                sec.insert(mech)
            _set(sec, g["name"], value, src)
    for erev in conditions.get("erev", []):
        for sec in cell.of_type(erev["section"]):
            if h.ismembrane("k_ion", sec=sec) == 1:
                sec.ek = erev["ek"]
            if h.ismembrane("na_ion", sec=sec) == 1:
                sec.ena = erev["ena"]


def _set(sec: Any, name: str, value: float, src: str | None) -> None:
    try:
        setattr(sec, name, value)
    except (AttributeError, NameError, LookupError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot set '{name}' on section {sec.name()} ({exc})", **_where(src),
                          fix="insert the mechanism that defines it (genome 'mechanism') or fix the name") from None


# -- directives -------------------------------------------------------------

def aibs_perisomatic(cell: SectionSet, params: dict | None, axon_diams: tuple[float, float] | None,
                     src: str | None = None) -> None:
    if params is None:
        return
    add_axon_stub(cell, (1.0, 1.0), 0.5)
    set_params_peri(cell, params, src)


def aibs_allactive(cell: SectionSet, params: dict | None, axon_diams: tuple[float, float] | None,
                   src: str | None = None) -> None:
    if axon_diams is None:
        axon_sections = cell.of_type("axon")
        if not axon_sections:
            raise ConfigError("aibs_allactive needs a reconstructed axon to size the stub", **_where(src),
                              fix="use aibs_perisomatic for morphologies without an axon")
        axon_diams = (axon_sections[0].diam, axon_sections[-1].diam)
    add_axon_stub(cell, axon_diams, 1.0)
    set_params_allactive(cell, params or {}, src)


def fullaxon(cell: SectionSet, params: dict | None, axon_diams: tuple[float, float] | None,
             src: str | None = None) -> None:
    if params is None:
        return
    set_params_peri(cell, params, src)


PROCESSORS: dict[str, Callable[..., None]] = {
    "aibs_perisomatic": aibs_perisomatic,
    "aibs_allactive": aibs_allactive,
    "fullaxon": fullaxon,
}

#: directives that delete the reconstructed axon (so a cached morphology need not create it)
DROPS_AXON = {"aibs_perisomatic", "aibs_allactive"}


def parse(model_processing: str | None) -> list[str]:
    """BMTK splits the column on commas; unknown names are an error before anything is built."""
    if model_processing is None or (isinstance(model_processing, float)) or str(model_processing).strip() in ("", "NULL", "None", "nan"):
        return []
    names = [n.strip() for n in str(model_processing).split(",") if n.strip()]
    for n in names:
        if n not in PROCESSORS:
            raise ConfigError(f"unknown model_processing '{n}'", key="model_processing",
                              fix=f"use one of: {', '.join(sorted(PROCESSORS))}")
    return names
