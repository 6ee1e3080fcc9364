"""Small C helpers compiled once with the system C compiler, cached by content, loaded with ctypes.

A few inner loops (copying thousands of 200-byte runs per chunk of a report) cost numpy
more in per-piece overhead than in bytes moved, and a dozen lines of C do them at memory
speed. Such a helper is compiled at its first use into ``$SONATARUN_CACHE`` (default
``~/.cache/sonatarun``)``/native/<key>/``, the key hashing the source, the flags, the
compiler and the machine, so every later run, rank and container sharing the cache loads
it without compiling. Read-only caches named by ``SONATARUN_SYSTEM_CACHE`` (an image's
prebuilt copy) are searched first. Callers keep a pure-Python path for machines without a
compiler: :func:`compile_library` raises :class:`NativeBuildError` and they fall back.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, TypeVar

from sonatarun.errors import SonataRunError

T = TypeVar("T")
FLAGS = ("-O2", "-fPIC", "-shared")
log = logging.getLogger(__name__)
_loaded: dict[tuple[str, str], Any] = {}  # (library, symbol) -> function, or None once loading failed


class NativeBuildError(SonataRunError):
    """A C helper could not be compiled or loaded here (no compiler, a failed build, no cache)."""


def cache_root(kind: str) -> Path:
    """The writable cache folder of one kind of compiled artefact (``mechanisms``, ``native``)."""
    root = os.environ.get("SONATARUN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sonatarun")
    return Path(root) / kind


def system_caches(kind: str) -> list[Path]:
    """Read-only caches searched before compiling (``SONATARUN_SYSTEM_CACHE``, colon separated):
    an image's precompiled artefacts stay usable when the image itself is read-only (Apptainer)."""
    return [Path(p) / kind for p in os.environ.get("SONATARUN_SYSTEM_CACHE", "").split(":") if p]


def build_once(target: Path, found: Callable[[Path], T | None], compile_into: Callable[[Path], None]) -> T:
    """Compile into ``target`` once across ranks and parallel jobs (a file lock; the others wait
    and reuse it); ``compile_into`` fills a private temporary folder that replaces ``target``
    only when complete, so a failed or killed compile never leaves a half cache entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        hit = found(target)
        if hit:
            return hit
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            compile_into(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return found(target)  # type: ignore[return-value]


def c_compiler() -> str | None:
    """``$CC`` if set (and found), else ``cc`` or ``gcc`` on PATH."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc")


def compile_library(name: str, source: str) -> Path:
    """Path of ``lib<name>.so`` built from C ``source`` (compiled on first use, then cached)."""
    cc = c_compiler()
    h = hashlib.sha256()
    for part in (name, source, " ".join(FLAGS), platform.machine(), platform.system()):
        h.update(part.encode())
        h.update(b"\0")
    key = f"{name}-{h.hexdigest()[:16]}"
    lib_name = f"lib{name}.so"

    def found(d: Path) -> Path | None:
        p = d / lib_name
        return p if p.is_file() else None

    for cache in system_caches("native"):
        hit = found(cache / key)
        if hit:
            return hit
    target = cache_root("native") / key
    hit = found(target)
    if hit:
        return hit
    if cc is None:
        raise NativeBuildError(f"no C compiler to build {lib_name}", fix="install gcc, or set CC")

    def compile_into(tmp: Path) -> None:
        (tmp / f"{name}.c").write_text(source)
        proc = subprocess.run([cc, *FLAGS, "-o", lib_name, f"{name}.c"], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0 or not (tmp / lib_name).is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise NativeBuildError(f"{cc} failed to build {lib_name}:\n{tail}")

    try:
        return build_once(target, found, compile_into)
    except OSError as exc:  # an unwritable cache, a compiler that cannot run
        raise NativeBuildError(f"cannot build {lib_name} in {target.parent}: {exc}",
                               fix="set SONATARUN_CACHE to a writable folder") from exc


def load_function(name: str, source: str, symbol: str, argtypes: list, restype: Any, *, what: str) -> Any:
    """``symbol`` of the C helper ``name`` as a ctypes function (compiled on first use, loaded once per
    process), or None where it cannot be built: the caller then keeps its Python path (logged once)."""
    key = (name, symbol)
    if key not in _loaded:
        try:
            fn = getattr(ctypes.CDLL(str(compile_library(name, source))), symbol)
            fn.argtypes, fn.restype = argtypes, restype
            _loaded[key] = fn
        except (NativeBuildError, OSError, AttributeError) as exc:
            log.info("%s: compiled helper unavailable, Python fallback (%s)", what, exc)
            _loaded[key] = None
    return _loaded[key]
