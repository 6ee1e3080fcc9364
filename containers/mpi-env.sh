# Sourced (POSIX sh) by the image's entrypoint, by Singularity's %environment and by the AppDir's AppRun.
#
# The hybrid MPI model: the image carries MPICH (libmpich.so.12, the MPICH ABI). To run on a
# cluster's interconnect, bind the host's MPICH-ABI library (MPICH, Cray MPICH, Intel MPI,
# MVAPICH) into the container and point MPI_LIB_NRN_PATH at it. NEURON dlopens that path; this
# file makes every other MPI user in the process load the very same library: mpi4py (its wheel
# dlopens MPI4PY_LIBMPI) and a parallel h5py (linked to libmpich.so.12, found through a directory
# of symlinks put first on LD_LIBRARY_PATH; the loader sees the same file and keeps one copy).
# Without it one process would hold two MPIs.
# SONATARUN_DEFAULT_MPI: the library the image (or AppDir) ships, which needs no alignment.
_sonatarun_default_mpi="${SONATARUN_DEFAULT_MPI:-/opt/sonatarun/mpi/lib/libmpi.so.12}"
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
        # Loaded through a symlink, the library's RUNPATH $ORIGIN points at the symlink's folder: put
        # the folders where its dependencies really are (as ldd finds them from the real path) on the
        # path too. Only non-system folders; the system ones are searched anyway.
        _sonatarun_deps=$(LD_LIBRARY_PATH= ldd "$MPI_LIB_NRN_PATH" 2> /dev/null | awk '/=> \// {print $3}' |
            while read -r _f; do dirname "$_f"; done | sort -u |
            grep -Ev '^/(usr/)?lib(64)?(/[a-z0-9_]+-linux-gnu)?$' | paste -sd: -)
        export LD_LIBRARY_PATH="$_sonatarun_mpi_dir${_sonatarun_deps:+:$_sonatarun_deps}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        unset _n _f _sonatarun_mpi_dir _sonatarun_deps
    else
        # Typically a host path passed through by name without its directory bound: say so, and run
        # with the image's own MPI rather than fail in NEURON's dlopen.
        echo "sonatarun: MPI_LIB_NRN_PATH=$MPI_LIB_NRN_PATH is not readable in the container" \
             "(bind its directory: docker -v, apptainer --bind); using the image's MPICH" >&2
        export MPI_LIB_NRN_PATH="$_sonatarun_default_mpi"
    fi
fi
unset _sonatarun_default_mpi
