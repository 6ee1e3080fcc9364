"""Morphologies: read each SWC/ASC file once with NEURON's Import3d, then stamp out copies.

BMTK instantiates ``Biophys1(swc)`` for every cell, which re-parses the file and
re-runs Import3d each time: the biggest share of its build phase. Here a file is
read once into a :class:`MorphologyTemplate` (section names, topology and 3-d
points, in the order Import3d puts them in ``all``); each cell is then a handful
of vectorised ``pt3dadd`` calls per section. The geometry NEURON derives (L,
diam, areas) is identical because it comes from the very same 3-d points.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.errors import CircuitError

SEC_TYPES = ("soma", "axon", "dend", "apic")
SWC_TYPE = {"soma": 1, "axon": 2, "dend": 3, "apic": 4}

_TEMPLATE_HOC = r"""
begintemplate SonataRunMorphology
public soma, dend, apic, axon, all, somatic, basal, apical, axonal, nl
objref all, somatic, basal, apical, axonal, nl, i3d, this
create soma[1], dend[1], apic[1], axon[1]
proc init() {
    all = new SectionList()
    somatic = new SectionList()
    basal = new SectionList()
    apical = new SectionList()
    axonal = new SectionList()
    forall delete_section()
    if ($2 == 1) {
        nl = new Import3d_Neurolucida3()
    } else if ($2 == 2) {
        nl = new Import3d_MorphML()
    } else {
        nl = new Import3d_SWC_read()
    }
    nl.quiet = 1
    nl.input($s1)
    i3d = new Import3d_GUI(nl, 0)
    i3d.instantiate(this)
}
endtemplate SonataRunMorphology
"""

_READERS = {".swc": 0, ".asc": 1, ".xml": 2, ".nml": 2}


def load_hoc_support() -> None:
    """Load Import3d and the reader template into NEURON (idempotent)."""
    from neuron import h

    if not hasattr(h, "SonataRunMorphology"):
        h.load_file("stdrun.hoc")
        h.load_file("import3d.hoc")
        h(_TEMPLATE_HOC)


def section_type(name: str) -> str:
    """'Cell[3].dend[12]' -> 'dend' (BMTK's rule: the first four letters after the cell name)."""
    return name.split(".")[-1][:4]


@dataclass
class SectionShape:
    type: str
    index: int
    parent: int  # position of the parent in the template's `all` order, -1 for the root
    parent_x: float
    child_x: float
    points: np.ndarray  # (n, 4): x, y, z, diam
    vectors: Any = field(default=None, repr=False)
    # Import3d's logical connection point (pt3dstyle) of sections attached to the soma: it stops
    # define_shape from translating the section onto its parent, so the coordinates stay the file's
    logical: tuple[float, float, float] | None = None


@dataclass
class MorphologyTemplate:
    """One morphology file as plain arrays, in Import3d's section order."""

    path: Path
    sections: list[SectionShape]
    # diam of axon[0] and of the last axon section as NEURON reports them with nseg=1;
    # aibs_allactive gives its axon stub these diameters
    axon_diams: tuple[float, float] | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path, fast: bool = True) -> "MorphologyTemplate":
        """Read with Import3d's rules; SWC files take the array path of `swc_fast` (same values,
        several times faster) unless `fast` is off or the file needs Import3d's special cases."""
        from neuron import h

        path = Path(path)
        if not path.exists():
            raise CircuitError("morphology file not found", file=path, key="morphology",
                               fix="check components.morphologies_dir and the node types' morphology column")
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise CircuitError(f"unsupported morphology format '{path.suffix}'", file=path, key="morphology",
                               fix="use an .swc or Neurolucida .asc file")
        if reader == 0 and fast:
            from sonatarun.engines.neuron.swc_fast import read_swc

            found = read_swc(path)
            if found is not None:
                return cls._from_shapes(path, found)
        load_hoc_support()
        try:
            hobj = h.SonataRunMorphology(str(path), reader)
        except RuntimeError as exc:
            raise CircuitError(f"NEURON Import3d could not read the morphology ({exc})", file=path,
                               key="morphology", fix="check the file is a valid SWC/ASC reconstruction") from exc
        secs = list(hobj.all)
        index = {s: i for i, s in enumerate(secs)}
        shapes: list[SectionShape] = []
        counts: dict[str, int] = {}
        for sec in secs:
            stype = section_type(sec.name())
            n = int(sec.n3d())
            pts = np.empty((n, 4))
            for i in range(n):
                pts[i] = (sec.x3d(i), sec.y3d(i), sec.z3d(i), sec.diam3d(i))
            pseg = sec.parentseg()
            parent = index.get(pseg.sec, -1) if pseg is not None else -1
            shapes.append(SectionShape(stype, counts.get(stype, 0), parent,
                                       float(pseg.x) if pseg is not None else 0.0,
                                       float(sec.orientation()), pts, logical=_logical_connection(sec)))
            counts[stype] = counts.get(stype, 0) + 1
        axon_diams = None
        if counts.get("axon"):
            first = hobj.axon[0].diam
            last = [s for s in secs if section_type(s.name()) == "axon"][-1].diam
            axon_diams = (float(first), float(last))
        del secs, index, hobj
        return cls(path=path, sections=shapes, axon_diams=axon_diams, counts=counts)

    @classmethod
    def _from_shapes(cls, path: Path, shapes: list[SectionShape]) -> "MorphologyTemplate":
        from neuron import h

        counts: dict[str, int] = {}
        for sh in shapes:
            counts[sh.type] = counts.get(sh.type, 0) + 1
        axon_diams = None
        axons = [sh for sh in shapes if sh.type == "axon"]
        if axons:  # the diameter NEURON reports for a one-segment section with these 3-d points
            diams = []
            for sh in (axons[0], axons[-1]):
                sec = h.Section(name="sonatarun_axon_probe")
                h.pt3dadd(*(h.Vector(sh.points[:, k]) for k in range(4)), sec=sec)
                diams.append(float(sec.diam))
                h.delete_section(sec=sec)
            axon_diams = (diams[0], diams[1])
        return cls(path=path, sections=shapes, axon_diams=axon_diams, counts=counts)

    def instantiate(self, owner: Any, skip: tuple[str, ...] = ()) -> list[Any]:
        """Create this morphology's sections for `owner` (names like ``owner.dend[3]``).

        Sections of the types in `skip` (e.g. the reconstructed axon that
        perisomatic models replace with a stub) are not created. Returns the
        sections in ``all`` order.
        """
        from neuron import h

        created: list[Any] = []
        mapping: dict[int, Any] = {}
        for i, shape in enumerate(self.sections):
            if shape.type in skip:
                continue
            sec = h.Section(name=f"{shape.type}[{shape.index}]", cell=owner)
            if len(shape.points):
                if shape.vectors is None:  # hoc Vectors made once per file, reused for every cell
                    p = shape.points
                    shape.vectors = (h.Vector(p[:, 0]), h.Vector(p[:, 1]), h.Vector(p[:, 2]), h.Vector(p[:, 3]))
                h.pt3dadd(*shape.vectors, sec=sec)
            if shape.logical is not None:
                h.pt3dstyle(1, *shape.logical, sec=sec)
            if shape.parent >= 0 and shape.parent in mapping:
                sec.connect(mapping[shape.parent](shape.parent_x), shape.child_x)
            mapping[i] = sec
            created.append(sec)
        return created


def _logical_connection(sec: Any) -> tuple[float, float, float] | None:
    """The section's pt3dstyle logical connection point, if Import3d set one."""
    from neuron import h

    if not int(h.pt3dstyle(sec=sec)):
        return None
    x, y, z = h.ref(0.0), h.ref(0.0), h.ref(0.0)
    h.pt3dstyle(1, x, y, z, sec=sec)
    return float(x[0]), float(y[0]), float(z[0])


class MorphologyCache:
    """Templates by absolute path, owned by one builder for one run (files read once per rank)."""

    def __init__(self) -> None:
        self._templates: dict[str, MorphologyTemplate] = {}

    def get(self, path: str | Path) -> MorphologyTemplate:
        key = str(Path(path).resolve())
        tpl = self._templates.get(key)
        if tpl is None:
            tpl = MorphologyTemplate.read(key)
            self._templates[key] = tpl
        return tpl

    def __len__(self) -> int:
        return len(self._templates)


def resolve_morphology(name: str, morphology_dir: Path | None) -> Path:
    """The morphology column as a file path (BMTK appends nothing; we accept a missing .swc suffix)."""
    p = Path(name)
    if not p.is_absolute() and morphology_dir is not None:
        p = Path(morphology_dir) / p
    if not p.exists() and not p.suffix:
        for ext in (".swc", ".asc"):
            if p.with_suffix(ext).exists():
                return p.with_suffix(ext)
    return p
