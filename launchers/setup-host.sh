#!/usr/bin/env bash
# System packages sonatarun needs on a fresh Debian/Ubuntu host: Python with venv, and a C/C++
# toolchain for NEURON's nrnivmodl (mechanisms are compiled on first use). Idempotent; it only
# installs what is missing, and only as root with apt.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
[ -e /usr/include/python3*/Python.h ] || ls /usr/local/include/python3*/Python.h >/dev/null 2>&1 \
  || python3 -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' \
  || need+=(python3-dev)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "sonatarun needs: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
