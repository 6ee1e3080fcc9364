"""Compiled NEURON mechanisms: nrnivmodl output cached by the content of the .mod files.

Compiling is slow and the wheel's nrnivmodl writes into the working directory, so
each distinct set of .mod files is compiled once into
``$SONATARUN_CACHE`` (default ``~/.cache/sonatarun``)/mechanisms/<hash>/ and loaded
from there by every later run, rank and container that shares the cache.
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sonatarun.errors import EngineError
from sonatarun.util import native
from sonatarun.util.native import build_once  # also used by coreneuron.py: one compile-once helper


PACKAGE_MOD_DIR = Path(__file__).with_name("mod")


def cache_root() -> Path:
    return native.cache_root("mechanisms")


def system_caches() -> list[Path]:
    """Read-only caches searched before compiling (``SONATARUN_SYSTEM_CACHE``, colon separated):
    an image's precompiled mechanisms stay usable when the image itself is read-only (Apptainer)."""
    return native.system_caches("mechanisms")


def mod_files(directory: Path) -> list[Path]:
    """The .mod files of a mechanisms dir (BMTK keeps them in `modfiles/` below it)."""
    directory = Path(directory)
    files = sorted(directory.glob("*.mod"))
    if not files and (directory / "modfiles").is_dir():
        files = sorted((directory / "modfiles").glob("*.mod"))
    return files


def declared_names(files: list[Path]) -> list[str]:
    """SUFFIX / POINT_PROCESS / ARTIFICIAL_CELL names declared in the files' NEURON blocks."""
    pat = re.compile(r"^\s*(SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(\w+)", re.MULTILINE)
    return [m.group(2) for f in files for m in pat.finditer(Path(f).read_text(errors="replace"))]


def content_key(files: list[Path], salt: str = "") -> str:
    """Cache key: NEURON version, machine, build flavour/flags (`salt`) and every file's name and bytes."""
    h = hashlib.sha256()
    import neuron

    h.update(getattr(neuron, "__version__", "").encode())
    h.update(platform.machine().encode())
    h.update(salt.encode())
    for f in sorted(files, key=lambda p: p.name):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def _library(build_dir: Path) -> Path | None:
    for arch in (platform.machine(), "x86_64", "aarch64", "arm64"):
        lib = build_dir / arch / ".libs" / "libnrnmech.so"
        if lib.exists():
            return lib
        lib = build_dir / arch / "libnrnmech.so"
        if lib.exists():
            return lib
    return None


def build(directory: Path, *, log=None) -> Path:
    """Compile the .mod files of `directory` (once per content) and return the libnrnmech.so path."""
    files = mod_files(directory)
    if not files:
        raise EngineError("no .mod files found", file=directory, key="components.mechanisms_dir",
                          fix="point mechanisms_dir at a folder holding .mod files (or modfiles/*.mod)")
    key = content_key(files)
    for cache in system_caches():
        lib = _library(cache / key)
        if lib:
            return lib
    target = cache_root() / key
    lib = _library(target)
    if lib:
        return lib
    def compile_into(tmp: Path) -> None:
        if log:
            log.info("compiling %d NEURON mechanisms from %s (once; cached in %s)", len(files), directory, target)
        (tmp / "mod").mkdir(parents=True)
        for f in files:
            shutil.copy2(f, tmp / "mod" / f.name)
        nrnivmodl = shutil.which("nrnivmodl", path=os.path.dirname(sys.executable) + os.pathsep +
                                 os.environ.get("PATH", ""))
        if not nrnivmodl:
            raise EngineError("nrnivmodl not found", fix="install NEURON (pip install neuron) in this environment")
        proc = subprocess.run([nrnivmodl, "mod"], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0 or not _library(tmp):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise EngineError(f"nrnivmodl failed:\n{tail}", file=directory,
                              fix="fix the .mod file named above (a C compiler is needed: apt-get install gcc)")

    return build_once(target, _library, compile_into)


_LOADED: set[str] = set()


def load(directory: Path, *, log=None) -> Path:
    """Compile if needed and load into this process's NEURON (once per library)."""
    lib = build(directory, log=log)
    if str(lib) not in _LOADED:
        from neuron import h

        _check_flavour(lib, coreneuron=False)
        if not h.nrn_load_dll(str(lib)):
            raise EngineError(f"NEURON could not load {lib}", file=directory,
                              fix=f"delete {lib.parent.parent} to rebuild it")
        _LOADED.add(str(lib))
    return lib


def load_mechanisms(directory: Path | str | None, *, log=None) -> Path | None:
    """Load a config's ``mechanisms_dir`` (compiling on first use); None or a dir without .mod is fine
    when it already holds a compiled library (BMTK users often ship x86_64/ next to modfiles/)."""
    if directory is None:
        return None
    directory = Path(directory)
    if not directory.exists():
        raise EngineError("mechanisms_dir does not exist", file=directory, key="components.mechanisms_dir",
                          fix="create it or remove the key from the config's components")
    if not mod_files(directory):
        lib = _library(directory)
        if lib is None:
            raise EngineError("no .mod files or compiled library found", file=directory,
                              key="components.mechanisms_dir",
                              fix="put the .mod files there (or in modfiles/) or remove the key")
        if str(lib) not in _LOADED:
            from neuron import h

            h.nrn_load_dll(str(lib))
            _LOADED.add(str(lib))
        return lib
    files = mod_files(directory)
    if log and not _library(cache_root() / content_key(files)):
        log.info("compiling NEURON mechanisms in %s on first use (run `sonatarun mechanisms build %s` "
                 "beforehand to skip this)", directory, directory)
    return load(directory, log=log)


def known_mechanisms() -> set[str]:
    """Names of the density mechanisms (SUFFIX) and point processes this process can create."""
    from neuron import h

    names: set[str] = set()
    for kind in (0, 1):
        mt = h.MechanismType(kind)
        name = h.ref("")
        for i in range(int(mt.count())):
            mt.select(i)
            mt.selected(name)
            names.add(name[0])
    return names


def require_mechanisms(names: set[str] | list[str], source: str | Path | None = None) -> None:
    """Raise a clear EngineError when a dynamics JSON names a mechanism that is not loaded."""
    missing = sorted(set(names) - known_mechanisms())
    if missing:
        from sonatarun.engines.neuron.coreneuron import excluded_note

        raise EngineError(f"mechanism{'s' if len(missing) > 1 else ''} {', '.join(missing)} not loaded"
                          f"{excluded_note(missing)}",
                          file=source, key="dynamics_params",
                          fix="put the .mod file(s) in the config's components.mechanisms_dir "
                              "(compiled on first run, or with `sonatarun mechanisms build DIR`)")


_CORE_LOADED: set[str] = set()


def _check_flavour(lib: Path, *, coreneuron: bool) -> None:
    """One process holds either the NEURON-only libraries or one CoreNEURON build: both define the
    same mechanisms, and NEURON cannot load a mechanism twice."""
    other = (_LOADED - _CORE_LOADED) if coreneuron else _CORE_LOADED
    if other and str(lib) not in other:
        raise EngineError(f"this process already loaded {'NEURON-only' if coreneuron else 'CoreNEURON'} "
                          f"mechanisms ({sorted(other)[0]})",
                          fix="run with and without --coreneuron in separate processes")


def load_library(lib: Path, *, coreneuron: bool, source: Path | None = None) -> None:
    """nrn_load_dll once per library, refusing to mix the two build flavours in one process."""
    if str(lib) in _LOADED:
        return
    from neuron import h

    _check_flavour(lib, coreneuron=coreneuron)
    if not h.nrn_load_dll(str(lib)):
        raise EngineError(f"NEURON could not load {lib}", file=source, fix=f"delete {lib.parent.parent} to rebuild it")
    _LOADED.add(str(lib))
    if coreneuron:
        _CORE_LOADED.add(str(lib))
