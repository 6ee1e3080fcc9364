#!/bin/sh
# ENTRYPOINT of the sonatarun image.
#   docker run IMAGE run /data/config.json            -> sonatarun run /data/config.json
#   docker run IMAGE mpiexec -n 4 sonatarun run ...   -> mpiexec ... (a launcher or a shell runs as is)
# The first word is run as a program when it is one of the launchers/tools below; anything else is
# a sonatarun subcommand or option. `docker run --entrypoint bash IMAGE` still gives a plain shell.
set -e
. /opt/sonatarun/bin/mpi-env.sh
case "${1:-}" in
    sonatarun|mpiexec|mpirun|mpiexec.hydra|mpiexec.mpich|srun|python|python3|nrnivmodl|nrniv|\
    bash|sh|env|id|ls|cat|true)
        exec "$@" ;;
esac
exec sonatarun "$@"
