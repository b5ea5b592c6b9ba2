#!/usr/bin/env sh
# Start this machine's dask-hecras worker (POSIX). Usage: start-worker.sh SCHEDULER [SCRATCH_DIR] [CERT_DIR]
# One worker, one HEC-RAS run at a time (RAS=1), a spare thread for staging, named after the host.
# TLS with CERT_DIR, else $HECRAS_CERTS, else certs/ beside this script; a tcp:// SCHEDULER
# with CERT_DIR "insecure" connects unencrypted (a first trial).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DASK_CONFIG="$here"
scheduler=${1:?usage: start-worker.sh SCHEDULER [SCRATCH_DIR] [CERT_DIR]}
scratch=${2:-${TMPDIR:-/tmp}/dask-hecras}
certs=${3:-${HECRAS_CERTS:-$here/certs}}
mkdir -p "$scratch"
if [ "$certs" = insecure ]; then
  export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=False
  exec dask-hecras worker "$scheduler" --scratch "$scratch"
fi
exec dask-hecras worker "$scheduler" --scratch "$scratch" --certs "$certs"
