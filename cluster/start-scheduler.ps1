# Start the dask-hecras scheduler (Windows PowerShell).
# Usage: .\start-scheduler.ps1 [-Port 8786] [-DashboardPort 8787] [-Certs C:\hecras\certs]
# With -Certs (made by `dask-hecras certs`), every connection is mutual TLS: tls://host:Port.
param([int]$Port = 8786, [int]$DashboardPort = 8787, [string]$Certs = $env:HECRAS_CERTS)
$ErrorActionPreference = "Stop"
$env:DASK_CONFIG = $PSScriptRoot
$tls = @()
if ($Certs) {
    $tls = @("--protocol", "tls", "--tls-ca-file", (Join-Path $Certs "ca.pem"),
             "--tls-cert", (Join-Path $Certs "scheduler.pem"), "--tls-key", (Join-Path $Certs "scheduler-key.pem"))
}
dask scheduler --port $Port --dashboard-address ":$DashboardPort" --preload dask_hecras.dashboard @tls
