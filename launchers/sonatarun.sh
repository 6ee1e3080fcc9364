#!/usr/bin/env bash
# Thin launcher: run this checkout's sonatarun without activating its venv (login nodes, cron,
# batch scripts written by hand). Example: launchers/sonatarun.sh submit config.json --nodes 1 --time 1:00:00
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SONATARUN_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/sonatarun" ]; then
    echo "sonatarun: no venv at $venv (fix: run 'make setup' in $here, or set SONATARUN_VENV)" >&2
    exit 2
fi
exec "$venv/bin/sonatarun" "$@"
