#!/bin/sh
# Build NEST from its source release with MPI and OpenMP into the image's venv, replacing the
# thread-only wheel. Used by `docker build --build-arg NEST_FROM_SOURCE=1` (not built in CI: it takes
# ~20-30 min on 2 cores). The source is the nest-simulator sdist from PyPI, built by its own
# scikit-build/CMake backend; CMake options go through CMAKE_ARGS.
# Usage: build-nest.sh VERSION
set -eu
version="${1:?NEST version}"
export CMAKE_ARGS="-Dwith-mpi=ON -Dwith-openmp=ON -Dwith-gsl=ON -Dwith-hdf5=OFF -Dwith-python=ON"
export CC=mpicc CXX=mpicxx
export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
pip install --no-binary=nest-simulator "nest-simulator==$version"
python -c "import nest; assert nest.ll_api.sli_func('statusdict/have_mpi ::'), 'NEST built without MPI'"
