#!/usr/bin/env sh
# Start a dask-hecras worker (POSIX). Usage: start-worker.sh SCHEDULER_ADDRESS [SCRATCH_DIR]
# One worker per machine, one HEC-RAS run at a time (RAS=1), a spare thread for staging.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DASK_CONFIG="$here"
scheduler=${1:?usage: start-worker.sh SCHEDULER_ADDRESS [SCRATCH_DIR]}
scratch=${2:-${TMPDIR:-/tmp}/dask-hecras}
mkdir -p "$scratch"
export DASK_HECRAS__SCRATCH="$scratch"
exec dask worker "$scheduler" --nworkers 1 --nthreads 2 --resources RAS=1 \
    --name "$(hostname)" --local-directory "$scratch"
