"""Write Singularity.def (Apptainer/SingularityCE) from the Dockerfile's facts, through spython.

Why generated: the Apptainer image is the Docker image (``Bootstrap: docker-daemon``), so its
environment, labels and entry point must be exactly the Dockerfile's. spython parses the Dockerfile;
this script keeps the facts of the ``runtime`` stage and of the stages it is built ``FROM`` (ENV,
LABEL, ENTRYPOINT), adds the %test and %help that only make sense for Apptainer, and writes the
recipe with spython's SingularityWriter. The container tests assert that the committed file is what
this script makes, so editing the Dockerfile without regenerating fails CI.

    python containers/gen_singularity.py            # rewrite Singularity.def
    python containers/gen_singularity.py --check    # exit 1 when Singularity.def is stale
    python containers/gen_singularity.py --from registry.example.org/sonatarun:1.0 --bootstrap docker
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
OUTPUT = ROOT / "Singularity.def"
STAGE = "runtime"
EXAMPLE = "/opt/sonatarun/examples/ring_intfire/config.simulation.json"

TEST = f"""\
set -e
out="$(mktemp -d)"
sonatarun run {EXAMPLE} --output-dir "$out"
python -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); n = sum(len(g['timestamps']) for g in f['spikes'].values()); assert n > 0, 'no spikes'; print(n, 'spikes')" "$out/spikes.h5"
rm -rf "$out"
"""

HELP = """\
sonatarun: run SONATA brain-network models on NEURON and NEST, rank-parallel with MPI.

    apptainer run sonatarun.sif run config.simulation.json --output-dir out
    apptainer exec sonatarun.sif sonatarun doctor
    apptainer exec sonatarun.sif mpiexec -n 4 sonatarun run config.simulation.json   # one node

On a cluster (hybrid model: the host's launcher starts one container per rank):

    srun --mpi=pmi2 apptainer exec sonatarun.sif sonatarun run config.simulation.json

To use the host's MPICH-ABI library (MPICH, Cray MPICH, Intel MPI) and its interconnect, bind its
directory and name the library; NEURON, mpi4py and h5py then all load that one library:

    srun --mpi=pmi2 apptainer exec --bind /opt/cray/pe/lib64 \\
        --env MPI_LIB_NRN_PATH=/opt/cray/pe/lib64/libmpi.so.12 \\
        sonatarun.sif sonatarun run config.simulation.json

Paths are the host's: Apptainer binds $HOME and the working directory. Compiled mechanisms of the
bundled examples are in /opt/sonatarun/cache; set SONATARUN_CACHE to a writable directory to compile
your own .mod files (a C++ compiler is in the image). See docs/containers.md.
"""


def _labels(raw: list[list[str]]) -> list[list[str]]:
    """spython keeps a LABEL as one 'key="value"' string; %labels wants 'key value'."""
    pairs = []
    for item in raw:
        key, _, value = " ".join(item).partition("=")
        pairs.append([key.strip(), value.strip().strip('"')])
    return pairs


def runtime_facts(dockerfile: Path = DOCKERFILE, stage: str = STAGE):
    """The stage's recipe with ENV and LABEL inherited along its FROM chain (parents first)."""
    from spython.logger import bot
    from spython.main.parse.parsers import DockerParser

    bot.level = -3  # errors only: spython warns that the AppDir stage's `scratch` is not on Docker Hub
    stages = DockerParser(str(dockerfile)).recipe
    chain = []
    name = stage
    while name in stages:
        chain.append(stages[name])
        name = (stages[name].fromHeader or "").strip()
    environ: list[str] = []
    labels: list[list[str]] = []
    for recipe in reversed(chain):
        environ += recipe.environ
        labels += _labels(recipe.labels)
    return chain[0], environ, labels


def render(image: str = "sonatarun:latest", bootstrap: str = "docker-daemon",
           dockerfile: Path = DOCKERFILE) -> str:
    from spython.main.parse.recipe import Recipe
    from spython.main.parse.writers import SingularityWriter

    final, environ, labels = runtime_facts(dockerfile)
    recipe = Recipe(str(dockerfile))
    recipe.fromHeader = image
    recipe.environ = environ
    recipe.labels = labels
    recipe.entrypoint = final.entrypoint  # the same shell entry point as `docker run`
    recipe.cmd = None                     # no default arguments: `apptainer run X` alone prints help
    recipe.workdir = None                 # Apptainer starts in the caller's (bound) directory
    recipe.test = TEST.rstrip("\n").splitlines()
    text = SingularityWriter({STAGE: recipe}).convert()
    lines = []
    for line in text.splitlines():
        if line.startswith("Bootstrap:"):
            line = f"Bootstrap: {bootstrap}"
        if line.startswith("Stage:"):
            continue
        lines.append(line)
    text = "\n".join(lines)
    # %environment is sourced by /bin/sh: after the image's variables, align every MPI user with
    # MPI_LIB_NRN_PATH when the caller names a host library (same script as the Docker entrypoint).
    env_end = text.index("%environment")
    next_section = text.index("\n%", env_end + 1)
    text = text[:next_section] + "\n. /opt/sonatarun/bin/mpi-env.sh" + text[next_section:]
    header = ("# Generated by containers/gen_singularity.py from the Dockerfile: do not edit by hand.\n"
              "# Build: docker build --network host -t sonatarun:latest . &&\n"
              "#        apptainer build sonatarun.sif Singularity.def\n")
    help_section = "%help\n" + "".join(f"    {line}".rstrip() + "\n" for line in HELP.splitlines())
    return header + text.strip() + "\n\n" + help_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if Singularity.def differs")
    parser.add_argument("--from", dest="image", default="sonatarun:latest", help="image to bootstrap from")
    parser.add_argument("--bootstrap", default="docker-daemon", choices=["docker-daemon", "docker"])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(args.image, args.bootstrap)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python containers/gen_singularity.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
