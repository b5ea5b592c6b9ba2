#!/usr/bin/env sh
# Start the dask-hecras scheduler (POSIX). Usage: start-scheduler.sh [PORT] [DASHBOARD_PORT] [CERT_DIR]
# Mutual TLS on PORT (tls://host:PORT), with the certificates made by `dask-hecras certs`:
# CERT_DIR, else $HECRAS_CERTS, else certs/ beside this script. CERT_DIR "insecure" starts
# plain tcp, for a first trial on a closed network.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DASK_CONFIG="$here"
port=${1:-8786}
dashboard=${2:-8787}
certs=${3:-${HECRAS_CERTS:-$here/certs}}
if [ "$certs" = insecure ]; then
  echo "warning: plain tcp, not encrypted; any client can run code on the workers" >&2
  export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=False
  exec dask scheduler --port "$port" --dashboard-address ":$dashboard" --preload dask_hecras.scheduler
fi
if [ ! -f "$certs/scheduler.pem" ]; then
  echo "error: no certificates in $certs; make them with: dask-hecras certs $certs --host <this machine's name>" >&2
  exit 2
fi
exec dask scheduler --protocol tls --port "$port" --dashboard-address ":$dashboard" \
    --preload dask_hecras.scheduler --tls-ca-file "$certs/ca.pem" \
    --tls-cert "$certs/scheduler.pem" --tls-key "$certs/scheduler-key.pem"
