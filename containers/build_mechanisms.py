"""Compile NEURON mechanisms into the image's shared cache at build time.

Why: nrnivmodl needs a compiler and ~10 s per mechanism set; a run in the container (or an AppImage,
whose filesystem is read-only) should find every mechanism the examples, the package and a user's
baked-in MECHANISMS_DIR need already compiled, in the content-keyed cache named by $SONATARUN_CACHE
(and the small C helpers of the report writer and the NEST engine, `sonatarun.util.native`).

Usage: python build_mechanisms.py DIR [DIR ...]   (each DIR is searched for mechanism folders)
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path


def mechanism_dirs(root: Path) -> list[Path]:
    """Folders holding .mod files directly or in a BMTK-style `modfiles/` child, once each."""
    found: set[Path] = set()
    for mod in sorted(root.rglob("*.mod")):
        folder = mod.parent
        found.add(folder.parent if folder.name == "modfiles" else folder)
    return sorted(found)


def build(folder: Path) -> None:
    """`sonatarun mechanisms build` when the command exists, else the library call behind it."""
    sonatarun = shutil.which("sonatarun")
    if sonatarun and subprocess.run([sonatarun, "mechanisms", "--help"], capture_output=True).returncode == 0:
        subprocess.run([sonatarun, "mechanisms", "build", str(folder)], check=True)
        return
    from sonatarun.engines.neuron import mechanisms

    print(f"compiled {folder} -> {mechanisms.build(folder)}", flush=True)


def main(argv: list[str]) -> int:
    from sonatarun.engines.neuron import mechanisms

    folders = [mechanisms.PACKAGE_MOD_DIR]
    for arg in argv:
        root = Path(arg)
        if root.is_dir():
            folders += mechanism_dirs(root)
    for folder in folders:
        build(folder)
    # the C helpers (report column placement, NEST's connection order) into the same cache: the runtime
    # cache is read-only for users, and without them numpy places report columns (same bytes, a little
    # slower) and NEST connects in file order (same spikes, slower builds)
    for module, what in (("sonatarun.io.run_copy", "report placement helper"),
                         ("sonatarun.engines.nest.locality", "NEST connection order helper")):
        try:
            mod = importlib.import_module(module)
            loaded = mod.load()
            print(f"{what}:", "compiled" if loaded else "unavailable (fallback)", flush=True)
        except Exception as exc:  # never fail an image build over an optional speed-up
            print(f"{what} not built: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
