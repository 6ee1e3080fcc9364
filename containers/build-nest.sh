#!/bin/sh
# Build NEST from its source release with MPI and OpenMP into the image's venv, replacing the
# thread-only wheel. Used by `docker build --build-arg NEST_FROM_SOURCE=1` (not built in CI: it takes
# ~20-30 min on 2 cores). The source is the nest-simulator sdist from PyPI, built by its own
# scikit-build-core/CMake backend; the MPI compiler wrappers make CMake find MPICH.
# Usage: build-nest.sh VERSION
set -eu
version="${1:?NEST version}"
export CC=mpicc CXX=mpicxx
export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
pip install --no-binary=nest-simulator \
    -C cmake.define.with-mpi=ON -C cmake.define.with-openmp=ON -C cmake.define.with-gsl=ON \
    -C cmake.define.with-hdf5=OFF "nest-simulator==$version"
python -c "import nest; assert dict(nest.build_info).get('have_mpi'), 'NEST built without MPI'"
