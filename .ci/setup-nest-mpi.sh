#!/usr/bin/env bash
# NEST built with MPI (and OpenMP) in the parallel venv (.venv-mpi: Debian's MPICH, mpi4py and
# parallel h5py, made by setup-parallel-h5py.sh first), so the NEST engine's several-rank path is
# tested against a real MPI NEST. The nest-simulator wheel on PyPI has no MPI.
#
# NEST is compiled from its source release (the sdist on PyPI, by its own scikit-build-core/CMake
# backend): about 40 min on 2 cores the first time. The wheel is kept in $SONATARUN_WHEEL_CACHE
# (default /var/cache/sonatarun/wheels) and later runs install it in seconds. Idempotent: a venv
# whose NEST already links MPI is kept as is.
#
# Usage: .ci/setup-nest-mpi.sh [VENV_DIR]   (default: <repo>/.venv-mpi); NEST_VERSION (default 3.10.0)
set -euo pipefail
started=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$REPO/.venv-mpi}
VERSION=${NEST_VERSION:-3.10.0}
CACHE=${SONATARUN_WHEEL_CACHE:-/var/cache/sonatarun/wheels}

# Debian's MPICH compilers, never the main venv's (mpich wheel)
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vx "$VIRTUAL_ENV/bin" | paste -sd: -)
  unset VIRTUAL_ENV
fi
export PATH

PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "[nest-mpi] $VENV does not exist: run .ci/setup-parallel-h5py.sh first" >&2
  exit 1
fi
ok() { "$PY" -c 'import sys; from sonatarun.engines.nest.kernel import nest_has_mpi; sys.exit(0 if nest_has_mpi() else 1)'; }
if ok; then
  echo "[nest-mpi] $VENV already has NEST with MPI; nothing to do ($(( $(date +%s) - started ))s)"
  exit 0
fi

. "$REPO/.ci/apt.sh"
apt_ensure nest-mpi cmake g++ make libgsl-dev libltdl-dev libmpich-dev mpich pkg-config

mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/nest_simulator-"$VERSION"-cp311-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "[nest-mpi] compiling NEST $VERSION with MPI (about 40 min on 2 cores; cached in $CACHE)"
  CC=mpicc.mpich CXX=mpicxx.mpich CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip --disable-pip-version-check -q wheel --no-deps --no-binary=nest-simulator \
    -C cmake.define.with-mpi=ON -C cmake.define.with-openmp=ON -C cmake.define.with-gsl=ON \
    -C cmake.define.with-hdf5=OFF "nest-simulator==$VERSION" -w "$CACHE"
  wheel=$(ls "$CACHE"/nest_simulator-"$VERSION"-cp311-*.whl | head -n 1)
fi
# its run-time needs are numpy (in the venv); matplotlib and cython are for plotting and building
"$PY" -m pip --disable-pip-version-check -q install --no-deps --force-reinstall "$wheel"

if ! ok; then
  echo "[nest-mpi] FAILED: the NEST in $VENV does not link MPI ($wheel)" >&2
  exit 1
fi
PYNEST_QUIET=1 mpiexec.mpich -n 2 "$PY" -c '
from mpi4py import MPI
import nest
assert nest.NumProcesses() == 2, nest.NumProcesses()
' || { echo "[nest-mpi] FAILED: mpiexec.mpich -n 2 smoke test" >&2; exit 1; }
echo "[nest-mpi] ready: $VENV (NEST $VERSION with MPI) in $(( $(date +%s) - started ))s"
