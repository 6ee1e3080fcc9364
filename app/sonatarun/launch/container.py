"""Wrap the run command in a container runtime.

Two models, because the runtimes differ in how MPI crosses the container boundary:

- Apptainer/Singularity (HPC): the launcher (``srun``/``mpiexec``) stays on the host and
  starts one ``apptainer exec`` per rank. The host's PMI environment passes through
  (Apptainer keeps the environment by default), which is the "hybrid" model every HPC
  centre documents.
- Docker (a workstation or one node): ``docker run`` wraps the launcher, so ``mpiexec``
  runs inside one container; Docker cannot hand a PMI socket to per-rank containers.

Environment values never go on the command line: Apptainer inherits them, and Docker
gets ``-e NAME`` (value taken from the caller's environment), so quoting cannot break.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from sonatarun.errors import InputError

APPTAINER_PREFIXES = ("docker://", "docker-daemon:", "library://", "oras://", "shub://", "oci-archive:",
                      "docker-archive:")


@dataclass(frozen=True)
class ContainerSpec:
    """The image, the runtime that runs it, and whether that runtime is on PATH."""

    image: str
    runtime: str  # "apptainer", "singularity" or "docker"
    executable: str | None  # absolute path, None when not installed here
    version: str | None = None

    @property
    def per_rank(self) -> bool:
        """True when the launcher starts one container per rank (Apptainer model)."""
        return self.runtime != "docker"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_rank"] = self.per_rank
        return d


def image_kind(image: str) -> str:
    """"apptainer" for SIF files and URIs Apptainer pulls, "docker" for a Docker tag."""
    if not image or image != image.strip():
        raise InputError(f"container image {image!r} is empty or has surrounding spaces", key="--container",
                         fix="give a .sif path, a docker:// URI or a Docker image tag")
    if image.startswith(APPTAINER_PREFIXES) or image.endswith((".sif", ".simg", ".img")):
        return "apptainer"
    if os.path.sep in image and Path(image).exists():
        return "apptainer"  # a sandbox directory or an image file without the usual suffix
    return "docker"


def apptainer_runtime() -> tuple[str, str | None, str | None]:
    """(name, path, version) of Apptainer, else Singularity; version through spython."""
    for name in ("apptainer", "singularity"):
        path = shutil.which(name)
        if path:
            version = None
            try:
                from spython.utils import get_singularity_version

                # spython calls `singularity`; Apptainer installs that name as a link to itself.
                version = get_singularity_version() or None
            except Exception:  # pragma: no cover - spython is a dependency, the runtime may be odd
                version = None
            return name, path, version
    return "apptainer", None, None


def resolve_container(image: str) -> ContainerSpec:
    """Pick the runtime for ``image`` (not requiring it to be installed: `plan` shows what is missing)."""
    if image_kind(image) == "apptainer":
        name, path, version = apptainer_runtime()
        return ContainerSpec(image, name, path, version)
    return ContainerSpec(image, "docker", shutil.which("docker"))


def require_runtime(spec: ContainerSpec) -> None:
    """Fail with the fix when the runtime is not installed (used by `launch`, not by `plan`)."""
    if spec.executable is None:
        fix = ("install Apptainer (or Singularity) and make sure it is on PATH"
               if spec.runtime != "docker" else "install Docker, or give a .sif image for Apptainer")
        raise InputError(f"the container runtime {spec.runtime!r} is not on PATH", key="--container", fix=fix)


def wrap(spec: ContainerSpec, inner: list[str], *, binds: list[str], env_names: list[str],
         workdir: str) -> list[str]:
    """The command that runs ``inner`` inside the image with ``binds`` mounted at the same paths."""
    exe = spec.executable or spec.runtime
    # Bind each directory once, and not one that an earlier bind already contains.
    uniq: list[str] = []
    for b in sorted({os.path.abspath(b) for b in binds}, key=len):
        if not any(b == u or b.startswith(u.rstrip("/") + "/") for u in uniq):
            uniq.append(b)
    if spec.runtime == "docker":
        cmd = [exe, "run", "--rm", "--init", "--network=host", "--ipc=host",
               f"--user={os.getuid()}:{os.getgid()}", f"--workdir={workdir}"]
        for b in uniq:
            cmd.append(f"--volume={b}:{b}")
        for name in env_names:
            if name == "MPI_LIB_NRN_PATH" and not any(
                    os.environ.get(name, "").startswith(u.rstrip("/") + "/") for u in uniq):
                continue  # a host library that is not bound in would only confuse the image's own MPI
            cmd += ["-e", name]
        # The command follows the image name: sonatarun's image ENTRYPOINT (containers/entrypoint.sh) sets up
        # its MPI environment and then runs `mpiexec ...`/`sonatarun ...` as given; an image without an
        # ENTRYPOINT runs it as its CMD.
        return cmd + [spec.image, *inner]
    cmd = [exe, "exec", "--pwd", workdir]
    for b in uniq:
        cmd += ["--bind", b]
    return cmd + [spec.image, *inner]
