# sonatarun container image: NEURON + NEST + MPICH-ABI MPI + parallel-capable HDF5.
#
#   docker build --network host -t sonatarun .                  # the runtime image (default target)
#   docker build --network host --target dev -t sonatarun:dev .  # + compilers, headers, MPI wrappers
#   docker run --rm -v "$PWD":/data sonatarun run /data/config.simulation.json
#   docker run --rm sonatarun doctor
#   docker run --rm -v "$PWD":/data sonatarun mpiexec -n 4 sonatarun run /data/config.json
#
# Needs BuildKit (the default builder of current Docker; `DOCKER_BUILDKIT=1` on Docker 20.10).
# Every layer is kept few on purpose: on the vfs storage driver each layer is a full copy.
# Build arguments (all optional):
#   BASE_IMAGE       a Debian 12 (bookworm) image; default debian:bookworm-slim
#   PARALLEL_HDF5    1 (default) = h5py compiled against Debian's MPICH-built parallel HDF5 (the
#                    compile is ~3.5 of the ~6 min cold build on 2 cores); 0 = the h5py wheel
#                    (serial HDF5: sonatarun's ranks write through its serial path)
#   NEST_FROM_SOURCE 1 = build NEST from its source release with MPI and OpenMP (+~24 min the
#                    first time on 2 cores; the container tests build it, as the image
#                    sonatarun-mpinest); 0 (default) = the nest-simulator wheel (threads, no MPI)
#   NEST_VERSION     NEST release for NEST_FROM_SOURCE=1 (its sdist on PyPI); default 3.10.0
#   MECHANISMS_DIR   a directory of .mod files in the build context to compile into the image
#   SONATARUN_UID    uid of the non-root user `sonata`; default 1000
# Every *.crt in containers/certs/ is trusted during the build and in the image.
# containers/gen_singularity.py reads the runtime stage's ENV, LABEL, WORKDIR and ENTRYPOINT to write
# Singularity.def: keep those in the `os` and `runtime` stages, one fact per line.

ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------
# os: what every stage runs on. Python, the MPICH runtime (libmpich.so.12, the MPICH ABI), Debian's
# MPICH-built HDF5, and g++/make because nrnivmodl compiles a user's .mod files at run time.
FROM ${BASE_IMAGE} AS os
ARG DEBIAN_FRONTEND=noninteractive
RUN --mount=type=bind,source=containers/certs,target=/tmp/certs \
    set -eu; \
    mkdir -p /usr/local/share/ca-certificates; \
    for crt in /tmp/certs/*.crt; do if [ -f "$crt" ]; then cp "$crt" /usr/local/share/ca-certificates/; fi; done; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv libpython3.11 mpich libhdf5-mpich-103-1 libhdf5-mpich-hl-100 \
        g++ make procps; \
    update-ca-certificates; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    mkdir -p /opt/sonatarun/mpi/lib; \
    lib="$(find /usr/lib -name 'libmpich.so.12' | head -n 1)"; \
    ln -s "$lib" /opt/sonatarun/mpi/lib/libmpi.so.12; \
    ln -s "$lib" /opt/sonatarun/mpi/lib/libmpich.so.12
ENV LANG=C.UTF-8
ENV PYTHONDONTWRITEBYTECODE=1
ENV PYTHONUNBUFFERED=1
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV MPI_LIB_NRN_PATH=/opt/sonatarun/mpi/lib/libmpi.so.12
ENV MPI4PY_LIBMPI=/opt/sonatarun/mpi/lib/libmpi.so.12
ENV LD_LIBRARY_PATH=/opt/sonatarun/mpi/lib
ENV PATH=/opt/sonatarun/venv/bin:/opt/sonatarun/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---------------------------------------------------------------------------------------------------
# build: headers, then the venv: mpi4py's MPI-ABI wheel (it dlopens the MPICH-ABI libmpi.so.12 named
# by MPI4PY_LIBMPI, so a host MPI swaps in at run time), h5py (from source against MPICH's parallel
# HDF5 when PARALLEL_HDF5=1), NEURON and NEST from their wheels, and sonatarun from the context.
FROM os AS build
ARG DEBIAN_FRONTEND=noninteractive
ARG PARALLEL_HDF5=1
ARG NEST_FROM_SOURCE=0
ARG NEST_VERSION=3.10.0
# Dependencies first, keyed only on pyproject.toml, containers/constraints.txt and build-nest.sh, so
# editing the package's code or the container scripts rebuilds in seconds.
RUN --mount=type=bind,source=pyproject.toml,target=/tmp/ctx/pyproject.toml \
    --mount=type=bind,source=containers/constraints.txt,target=/tmp/ctx/containers/constraints.txt \
    --mount=type=bind,source=containers/build-nest.sh,target=/tmp/ctx/containers/build-nest.sh \
    --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        python3-dev libmpich-dev libhdf5-mpich-dev pkg-config file; \
    if [ "$NEST_FROM_SOURCE" = 1 ]; then \
        apt-get install -y --no-install-recommends cmake libgsl-dev libltdl-dev libboost-dev; fi; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/sonatarun/venv; \
    C=/tmp/ctx/containers/constraints.txt; \
    pip install -c $C pip setuptools wheel; \
    pip install -c $C numpy mpi4py; \
    if [ "$PARALLEL_HDF5" = 1 ]; then \
        pip install -c $C cython pkgconfig; \
        HDF5_MPI=ON CC=mpicc HDF5_PKGCONFIG_NAME=hdf5-mpich \
        pip install -c $C --no-build-isolation --no-binary=h5py h5py; \
        pip uninstall -y cython pkgconfig; \
    fi; \
    if [ "$NEST_FROM_SOURCE" = 1 ]; then /tmp/ctx/containers/build-nest.sh "$NEST_VERSION"; fi; \
    python3 -c "import tomllib; [print(d) for d in tomllib.load(open('/tmp/ctx/pyproject.toml', 'rb'))['project']['dependencies']]" > /tmp/requirements.txt; \
    pip install -c $C -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt; \
    find /opt/sonatarun/venv -name '__pycache__' -prune -exec rm -rf {} +
# Then sonatarun itself (a copy of the context's pyproject.toml + app/, built as a regular wheel).
RUN --mount=type=bind,target=/tmp/ctx \
    set -eu; \
    mkdir /tmp/pkg; \
    cp -a /tmp/ctx/pyproject.toml /tmp/ctx/app /tmp/pkg/; \
    if [ -f /tmp/ctx/README.md ]; then cp /tmp/ctx/README.md /tmp/pkg/; else echo sonatarun > /tmp/pkg/README.md; fi; \
    pip install --no-deps --no-build-isolation /tmp/pkg; \
    rm -rf /tmp/pkg; \
    install -d /opt/sonatarun/bin; \
    install -m 0755 /tmp/ctx/containers/entrypoint.sh /tmp/ctx/containers/mpi-env.sh /opt/sonatarun/bin/; \
    find /opt/sonatarun/venv -name '__pycache__' -prune -exec rm -rf {} +; \
    python -c "import mpi4py.MPI, h5py, neuron, nest, sonatarun" > /dev/null

# ---------------------------------------------------------------------------------------------------
# dev: the build stage as an image (compilers, MPI wrappers, HDF5 headers) for developing models.
FROM build AS dev
ENTRYPOINT ["/opt/sonatarun/bin/entrypoint.sh"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------
# appdir: a relocatable AppDir (containers/appimage/), at /AppDir of the `appdir-build` image:
#   docker build --network host --target appdir-build -t sonatarun-appdir . &&
#   docker create --name appdir sonatarun-appdir true && docker cp appdir:/AppDir sonatarun.AppDir
# (with a current Docker, `--target appdir --output type=local,dest=OUT` exports it in one step)
FROM build AS appdir-build
RUN --mount=type=bind,target=/src \
    set -eu; \
    sh /src/containers/appimage/build-appdir.sh /src /AppDir
FROM scratch AS appdir
COPY --from=appdir-build /AppDir /sonatarun.AppDir

# ---------------------------------------------------------------------------------------------------
# runtime (default): the venv, the examples with their mechanisms compiled, a non-root user.
FROM os AS runtime
ARG MECHANISMS_DIR=
ARG SONATARUN_UID=1000
ARG NEST_FROM_SOURCE=0
RUN --mount=type=bind,target=/src \
    --mount=type=bind,from=build,source=/opt/sonatarun/venv,target=/tmp/venv \
    set -eu; \
    if [ "$NEST_FROM_SOURCE" = 1 ]; then \
        apt-get update; apt-get install -y --no-install-recommends libgsl27 libltdl7; \
        apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; fi; \
    cp -a /tmp/venv /opt/sonatarun/venv; \
    install -d /opt/sonatarun/bin; \
    install -m 0755 /src/containers/entrypoint.sh /src/containers/mpi-env.sh \
        /src/containers/build_mechanisms.py /opt/sonatarun/bin/; \
    mkdir -p /opt/sonatarun/examples; \
    if [ -d /src/examples ]; then cp -a /src/examples/. /opt/sonatarun/examples/; fi; \
    find /opt/sonatarun/examples \( -name 'output*' -o -name 'x86_64' \) -prune -exec rm -rf {} +; \
    if [ -n "$MECHANISMS_DIR" ]; then \
        mkdir -p /opt/sonatarun/mechanisms; cp -a "/src/$MECHANISMS_DIR" /opt/sonatarun/mechanisms/user; fi; \
    SONATARUN_CACHE=/opt/sonatarun/cache python /opt/sonatarun/bin/build_mechanisms.py \
        /opt/sonatarun/examples /opt/sonatarun/mechanisms; \
    find /opt/sonatarun/cache -name '*.lock' -delete; \
    find /opt/sonatarun/venv -name '__pycache__' -prune -exec rm -rf {} +; \
    chmod -R a+rX /opt/sonatarun; \
    chmod 1777 /opt/sonatarun/cache/mechanisms; \
    useradd --create-home --uid "$SONATARUN_UID" --shell /bin/bash sonata; \
    install -d -o sonata -g sonata /data; \
    python -c "import mpi4py.MPI, h5py, neuron, nest, sonatarun" > /dev/null 2>&1
ENV SONATARUN_CACHE=/opt/sonatarun/cache
# read-only copy of the precompiled mechanisms, still found when SONATARUN_CACHE points elsewhere
ENV SONATARUN_SYSTEM_CACHE=/opt/sonatarun/cache
ENV OMP_NUM_THREADS=1
LABEL org.opencontainers.image.title="sonatarun"
LABEL org.opencontainers.image.description="Run SONATA brain-network models on NEURON and NEST with MPI"
LABEL org.opencontainers.image.licenses="BSD-3-Clause"
LABEL org.sonatarun.mpi-abi="MPICH (libmpich.so.12); swap with MPI_LIB_NRN_PATH"
USER sonata
WORKDIR /data
ENTRYPOINT ["/opt/sonatarun/bin/entrypoint.sh"]
CMD ["--help"]
