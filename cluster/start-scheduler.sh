#!/usr/bin/env sh
# Start the dask-hecras scheduler (POSIX). Usage: start-scheduler.sh [PORT] [DASHBOARD_PORT] [CERT_DIR]
# With CERT_DIR (made by `dask-hecras certs`), every connection is mutual TLS: tls://host:PORT.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DASK_CONFIG="$here"
certs=${3:-${HECRAS_CERTS:-}}
if [ -n "$certs" ]; then
  exec dask scheduler --protocol tls --port "${1:-8786}" --dashboard-address ":${2:-8787}" \
      --preload dask_hecras.dashboard --tls-ca-file "$certs/ca.pem" \
      --tls-cert "$certs/scheduler.pem" --tls-key "$certs/scheduler-key.pem"
fi
exec dask scheduler --port "${1:-8786}" --dashboard-address ":${2:-8787}" --preload dask_hecras.dashboard
