#!/usr/bin/env sh
# Start the dask-hecras scheduler (POSIX). Usage: start-scheduler.sh [PORT] [DASHBOARD_PORT]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DASK_CONFIG="$here"
exec dask scheduler --port "${1:-8786}" --dashboard-address ":${2:-8787}" --preload dask_hecras.dashboard
