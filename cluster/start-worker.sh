#!/usr/bin/env sh
# Start a dask-hecras worker (POSIX). Usage: start-worker.sh SCHEDULER_ADDRESS [SCRATCH_DIR] [CERT_DIR]
# One worker per machine, one HEC-RAS run at a time (RAS=1), a spare thread for staging.
# With CERT_DIR (made by `dask-hecras certs`), the worker connects with its TLS certificate.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DASK_CONFIG="$here"
scheduler=${1:?usage: start-worker.sh SCHEDULER_ADDRESS [SCRATCH_DIR] [CERT_DIR]}
scratch=${2:-${TMPDIR:-/tmp}/dask-hecras}
certs=${3:-${HECRAS_CERTS:-}}
mkdir -p "$scratch"
export DASK_HECRAS__SCRATCH="$scratch"
if [ -n "$certs" ]; then
  exec dask worker "$scheduler" --nworkers 1 --nthreads 2 --resources RAS=1 \
      --name "$(hostname)" --local-directory "$scratch" \
      --tls-ca-file "$certs/ca.pem" --tls-cert "$certs/worker.pem" --tls-key "$certs/worker-key.pem"
fi
exec dask worker "$scheduler" --nworkers 1 --nthreads 2 --resources RAS=1 \
    --name "$(hostname)" --local-directory "$scratch"
