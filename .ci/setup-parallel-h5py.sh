#!/usr/bin/env bash
# Build the parallel-HDF5 I/O path: a separate venv whose h5py and mpi4py are compiled
# against Debian's MPICH and libhdf5-mpich, so the writers' collective-hyperslab path
# can be tested next to the plain-wheel path. Idempotent: a venv whose h5py already
# reports mpi=True and whose mpi4py talks to Debian's MPICH is kept as is.
#
# Usage: .ci/setup-parallel-h5py.sh [VENV_DIR]   (default: <repo>/.venv-mpi)
#   PYTHON=/path/to/python3.11 picks the base interpreter (default: the main venv's base).
# Run it under mpiexec.mpich (Debian's Hydra), not the mpich wheel's mpiexec.
set -euo pipefail
started=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$REPO/.venv-mpi}

# Never let the main venv's mpicc/mpiexec (mpich wheel) leak into this build.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vx "$VIRTUAL_ENV/bin" | paste -sd: -)
  unset VIRTUAL_ENV
fi
export PATH

. "$REPO/.ci/apt.sh"
apt_ensure parallel-h5py libhdf5-mpich-dev mpich pkg-config build-essential
MPICC=$(command -v mpicc.mpich)
MPIEXEC=$(command -v mpiexec.mpich)

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then
    PYTHON=$("$REPO/.venv/bin/python" -c 'import sys,os;print(os.path.join(sys.base_prefix,"bin","python3"))')
  else
    PYTHON=$(command -v python3)
  fi
fi

ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'PY' 2>/dev/null
import h5py, mpi4py, sonatarun
from mpi4py import MPI
assert h5py.get_config().mpi
assert "MPICH" in MPI.Get_library_version()
PY
}

if ok; then
  echo "[parallel-h5py] $VENV already has h5py with MPI; nothing to do ($(( $(date +%s) - started ))s)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install -U pip "setuptools>=77" wheel
$PIP install numpy cython pkgconfig
# mpi4py from source against Debian's MPICH (the wheel ships its own MPI ABI).
MPICC="$MPICC" CC="$MPICC" $PIP install --no-build-isolation --no-binary=mpi4py mpi4py
# h5py from source against libhdf5-mpich (the PyPI wheel is serial HDF5).
HDF5_MPI=ON CC="$MPICC" HDF5_PKGCONFIG_NAME=hdf5-mpich \
  $PIP install --no-build-isolation --no-binary=h5py h5py
# sonatarun itself (editable; engines are not needed here, the I/O layer is) and test deps.
$PIP install --no-deps -e "$REPO"
$PIP install pandas psutil pytest

if ! ok; then
  echo "[parallel-h5py] FAILED: $VENV/bin/python does not import an MPI-enabled h5py" >&2
  exit 1
fi
"$MPIEXEC" -n 2 "$VENV/bin/python" -c '
from mpi4py import MPI
import h5py
assert MPI.COMM_WORLD.Get_size() == 2
' || { echo "[parallel-h5py] FAILED: mpiexec.mpich -n 2 smoke test" >&2; exit 1; }
echo "[parallel-h5py] ready: $VENV (h5py mpi=True, $MPIEXEC) in $(( $(date +%s) - started ))s"
