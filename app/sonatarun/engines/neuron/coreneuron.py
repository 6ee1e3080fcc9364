"""CoreNEURON builds: one mechanism library holding the package's CoreNEURON mods and a model's.

CoreNEURON (in the ``neuron`` wheel) loads a single ``libcorenrnmech.so``, so a run with
``--coreneuron`` compiles, with ``nrnivmodl -coreneuron``, the .mod files of
``mod_coreneuron/`` (a SpikePlayer whose Vector is a BBCOREPOINTER copied to CoreNEURON)
together with the config's ``mechanisms_dir``, and loads that build's NEURON side instead of
the NEURON-only libraries. The NEURON-only report/ECP recorders (``mod/sonatarec.mod``,
``mod/sonataecp.mod``) are not part of it: report probes use the build's own column
recorder (``mod_coreneuron/sonatacorerec.mod``) and the ECP probe buffers membrane
currents with ``Vector.record``.

The flags let the compiler vectorise the per-instance loops with glibc's vector ``exp``
(Ih, Exp2Syn): ``-fno-math-errno -fno-trapping-math`` and ``__FAST_MATH__`` (which selects
glibc's SIMD declarations) but no ``-ffast-math`` reassociation and no ``-march=native``, so
results stay within 1e-8 mV of NEURON and a cache built on one x86-64 host runs on any other.

A model .mod file that does not compile for CoreNEURON (BMTK's legacy ``vecevent.mod`` in
every example's modfiles) is left out of the build with a warning; a model that uses one of
its mechanisms then stops with an error naming the file (`excluded_note`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sonatarun.engines.neuron import mechanisms
from sonatarun.errors import EngineError

MOD_DIR = Path(__file__).with_name("mod_coreneuron")
FLAGS = "-O3 -fno-math-errno -fno-trapping-math -D__FAST_MATH__"
EXCLUDED_FILE = "excluded.json"


@dataclass
class CoreBuild:
    library: Path                 # NEURON side (libnrnmech.so), loaded into this process
    core_library: Path            # CoreNEURON side (libcorenrnmech.so), named by CORENEURONLIB
    excluded: dict[str, list[str]] = field(default_factory=dict)  # left-out file -> mechanisms it declares


# mechanism name -> .mod file left out of this process's CoreNEURON build
_EXCLUDED: dict[str, str] = {}


def sources(mech_dir: Path | None) -> list[Path]:
    """The package's CoreNEURON mods, then the model's (a model file named like a package file is skipped:
    both would land in one build folder)."""
    files = sorted(MOD_DIR.glob("*.mod"))
    taken = {f.name for f in files}
    if mech_dir is not None:
        files += [f for f in mechanisms.mod_files(Path(mech_dir)) if f.name not in taken]
    return files


def cache_key(files: list[Path]) -> str:
    return mechanisms.content_key(files, salt=f"coreneuron {FLAGS}")


def _found(build_dir: Path) -> CoreBuild | None:
    lib = mechanisms._library(build_dir)
    if lib is None or not (lib.parent / "libcorenrnmech.so").exists():
        return None
    excluded = {}
    if (build_dir / EXCLUDED_FILE).exists():
        excluded = json.loads((build_dir / EXCLUDED_FILE).read_text())
    return CoreBuild(lib, lib.parent / "libcorenrnmech.so", excluded)


def cached(mech_dir: Path | None) -> CoreBuild | None:
    key = cache_key(sources(mech_dir))
    for root in [*mechanisms.system_caches(), mechanisms.cache_root()]:
        found = _found(root / key)
        if found:
            return found
    return None


def _failing(output: str, stems: list[str]) -> set[str]:
    """Stems of the .mod files named on compiler/translator error lines."""
    bad = set()
    for line in output.splitlines():
        if "error" not in line.lower():
            continue
        for stem in stems:
            if re.search(rf"(^|[/\s\"']){re.escape(stem)}\.(cpp|c|o|mod)\b", line):
                bad.add(stem)
    return bad


def _nrnivmodl() -> str:
    exe = shutil.which("nrnivmodl", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not exe:
        raise EngineError("nrnivmodl not found", fix="install NEURON (pip install neuron) in this environment")
    return exe


def _compile(files: list[Path], tmp: Path, mech_dir: Path | None, log) -> dict[str, list[str]]:
    """nrnivmodl -coreneuron in `tmp`; drop model files the errors name and retry. Returns the dropped."""
    package = {f.name for f in MOD_DIR.glob("*.mod")}
    excluded: dict[str, list[str]] = {}
    todo = list(files)
    while True:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "mod").mkdir(parents=True)
        for f in todo:
            shutil.copy2(f, tmp / "mod" / f.name)
        proc = subprocess.run([_nrnivmodl(), "-coreneuron", "-incflags", FLAGS, "mod"], cwd=tmp,
                              capture_output=True, text=True)
        if proc.returncode == 0 and _found(tmp):
            return excluded
        output = proc.stdout + proc.stderr
        bad = _failing(output, [f.stem for f in todo if f.name not in package])
        if not bad:
            tail = "\n".join(output.strip().splitlines()[-15:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise EngineError(f"nrnivmodl -coreneuron failed:\n{tail}", file=mech_dir,
                              fix="fix the .mod file named above, or run without --coreneuron")
        for f in [f for f in todo if f.stem in bad]:
            excluded[f.name] = mechanisms.declared_names([f])
        todo = [f for f in todo if f.stem not in bad]


def build(mech_dir: Path | None, *, log=None) -> CoreBuild:
    """Compile (once per content and flags, in the shared cache) the CoreNEURON build for `mech_dir`."""
    if mech_dir is not None and not mechanisms.mod_files(Path(mech_dir)):
        raise EngineError("--coreneuron compiles the model's mechanisms from source: no .mod files found",
                          file=mech_dir, key="components.mechanisms_dir",
                          fix="put the .mod files in mechanisms_dir (or modfiles/ below it)")
    files = sources(mech_dir)
    found = cached(mech_dir)
    if found:
        return found
    target = mechanisms.cache_root() / cache_key(files)

    def compile_into(tmp: Path) -> None:
        if log:
            log.info("compiling %d mechanisms for CoreNEURON (%s; once, cached in %s)", len(files), FLAGS, target)
        excluded = _compile(files, tmp, mech_dir, log)
        (tmp / EXCLUDED_FILE).write_text(json.dumps(excluded))

    return mechanisms.build_once(target, _found, compile_into)


def load(mech_dir: Path | None, *, log=None) -> CoreBuild:
    """Build if needed, load the NEURON side here, point CoreNEURON at the other side, and warn
    about (and remember) the model files left out."""
    found = build(mech_dir, log=log)
    mechanisms.load_library(found.library, coreneuron=True, source=mech_dir)
    os.environ["CORENEURONLIB"] = str(found.core_library)  # read at the first psolve
    for name, mechs in found.excluded.items():
        for m in mechs:
            _EXCLUDED[m] = name
        if log:
            log.warning("%s is not part of the CoreNEURON build (it does not compile for CoreNEURON); "
                        "its mechanisms (%s) are unavailable with --coreneuron", name, ", ".join(mechs) or "none")
    return found


def excluded_note(names: set[str] | list[str]) -> str:
    """' (X.mod does not compile for CoreNEURON)' for names declared by files left out, else ''."""
    files = sorted({_EXCLUDED[n] for n in names if n in _EXCLUDED})
    if not files:
        return ""
    return f" ({', '.join(files)} {'does' if len(files) == 1 else 'do'} not compile for CoreNEURON)"


def enable() -> None:
    """Switch ``pc.psolve`` to CoreNEURON in-memory mode (model copied at each psolve, state back after;
    CoreNEURON uses NEURON's ``pc.nthread`` threads)."""
    from neuron import coreneuron

    coreneuron.enable = True
    coreneuron.verbose = 0
