"""Docker plumbing for the container tests: pick a BuildKit-capable client, key images by content.

The image takes minutes to build, so it is built once per content of its build context and tagged
``sonatarun:ctx-<hash>``; a later session (or a rerun) with the same Dockerfile, package, examples and
container scripts reuses it. ``sonatarun:latest`` always names the last image the tests built.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile reads from its context (.dockerignore keeps the rest out).
CONTEXT = ["Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "app", "examples", "containers"]
SKIP_PARTS = {"__pycache__", "output", "x86_64", "aarch64", "arm64", ".pytest_cache"}
BUILD_TIMEOUT = 40 * 60


@lru_cache(maxsize=None)
def client() -> tuple[str, ...] | None:
    """A docker CLI that can build with BuildKit (`RUN --mount`), or None without a reachable engine.

    A current docker CLI needs the buildx plugin for that; Debian's docker.io client (20.10) has
    BuildKit built in and uses it with DOCKER_BUILDKIT=1.
    """
    candidates = []
    if shutil.which("docker"):
        candidates.append(shutil.which("docker"))
    if Path("/usr/bin/docker").exists():
        candidates.append("/usr/bin/docker")
    for exe in candidates:
        if subprocess.run([exe, "info"], capture_output=True).returncode != 0:
            continue
        if subprocess.run([exe, "buildx", "version"], capture_output=True).returncode == 0:
            return (exe,)
        version = subprocess.run([exe, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return (exe,)
    for exe in candidates:  # engine reachable but no BuildKit-capable client: still usable to run
        if subprocess.run([exe, "info"], capture_output=True).returncode == 0:
            return (exe,)
    return None


def env() -> dict:
    return {**os.environ, "DOCKER_BUILDKIT": "1"}


def docker(*args: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cli = client()
    assert cli is not None, "no docker engine"
    proc = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=timeout, env=env(), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n--- stdout\n"
                             f"{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def context_hash() -> str:
    """sha256 over the paths and bytes of every file the image build reads."""
    h = hashlib.sha256()
    for name in CONTEXT:
        top = ROOT / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for f in files:
            rel = f.relative_to(ROOT)
            if SKIP_PARTS & set(rel.parts) or f.suffix == ".pyc" or ".egg-info" in str(rel):
                continue
            h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def ensure_image(*, nest_from_source: bool = False) -> str:
    """The runtime image for the current sources: reused when built before, else built now.
    ``nest_from_source``: the variant with NEST compiled with MPI (``NEST_FROM_SOURCE=1``, its own
    repository name; ~25 min the first time on 2 cores, then BuildKit's cache of that layer, which
    depends only on pyproject.toml, constraints.txt and build-nest.sh, makes it a rebuild of seconds)."""
    repo = "sonatarun-mpinest" if nest_from_source else "sonatarun"
    tag = f"{repo}:ctx-{context_hash()}"
    if not image_exists(tag):
        extra = ("--build-arg", "NEST_FROM_SOURCE=1") if nest_from_source else ("-t", "sonatarun:latest")
        docker("build", "--network", "host", *extra, "-t", tag, str(ROOT), timeout=BUILD_TIMEOUT)
        forget_other_tags(repo, tag)
    return tag


def forget_other_tags(repository: str, keep: str) -> None:
    """Untag images of earlier sources, so a developer's disk does not fill with stale builds."""
    listed = docker("images", repository, "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    stale = [t for t in listed if t.split(":", 1)[1].startswith("ctx-") and t != keep]
    if stale:
        docker("rmi", *stale, check=False)


def ensure_appdir() -> Path:
    """The AppDir built by the `appdir-build` target, copied out of that image with `docker cp` into
    .cache/ (git-ignored), keyed like the image. (BuildKit's `--output type=local` would do the same
    in one step, but Docker 20.10's client stalls streaming thousands of files.)"""
    key = context_hash()
    out = ROOT / ".cache" / "containers" / f"appdir-{key}"
    appdir = out / "sonatarun.AppDir"
    if (appdir / "AppRun").exists():
        return appdir
    tag = f"sonatarun-appdir:ctx-{key}"
    if not image_exists(tag):
        docker("build", "--network", "host", "--target", "appdir-build", "-t", tag, str(ROOT),
               timeout=BUILD_TIMEOUT)
        forget_other_tags("sonatarun-appdir", tag)
    for stale in out.parent.glob("appdir-*"):  # AppDirs of earlier sources
        shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True)
    name = f"sonatarun-appdir-{key}-{os.getpid()}"
    docker("create", "--name", name, tag, "true")
    try:
        docker("cp", f"{name}:/AppDir", str(out / "partial.AppDir"))
    finally:
        docker("rm", "-f", name, check=False)
    (out / "partial.AppDir").rename(appdir)
    return appdir
