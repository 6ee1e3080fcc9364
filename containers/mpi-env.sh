# Sourced (POSIX sh) by the image's entrypoint and by Singularity's %environment.
#
# The hybrid MPI model: the image carries MPICH (libmpich.so.12, the MPICH ABI). To run on a
# cluster's interconnect, bind the host's MPICH-ABI library (MPICH, Cray MPICH, Intel MPI,
# MVAPICH) into the container and point MPI_LIB_NRN_PATH at it. NEURON dlopens that path; this
# file makes every other MPI user in the process load the very same library: mpi4py (its wheel
# dlopens MPI4PY_LIBMPI) and a parallel h5py (linked to libmpich.so.12, found through a directory
# of symlinks put first on LD_LIBRARY_PATH). Without it one process would hold two MPIs.
_sonatarun_default_mpi=/opt/sonatarun/mpi/lib/libmpi.so.12
if [ -n "${MPI_LIB_NRN_PATH:-}" ] && [ "$MPI_LIB_NRN_PATH" != "$_sonatarun_default_mpi" ]; then
    if [ -r "$MPI_LIB_NRN_PATH" ]; then
        if [ "${MPI4PY_LIBMPI:-$_sonatarun_default_mpi}" = "$_sonatarun_default_mpi" ]; then
            export MPI4PY_LIBMPI="$MPI_LIB_NRN_PATH"
        fi
        _sonatarun_mpi_dir="${TMPDIR:-/tmp}/sonatarun-mpi-$(id -u)"
        mkdir -p "$_sonatarun_mpi_dir"
        for _n in libmpi.so.12 libmpich.so.12; do
            ln -sfn "$MPI_LIB_NRN_PATH" "$_sonatarun_mpi_dir/$_n"
        done
        export LD_LIBRARY_PATH="$_sonatarun_mpi_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        unset _n _sonatarun_mpi_dir
    else
        echo "sonatarun: MPI_LIB_NRN_PATH=$MPI_LIB_NRN_PATH is not readable in the container;" \
             "bind it in (docker -v, apptainer --bind)" >&2
    fi
fi
unset _sonatarun_default_mpi
