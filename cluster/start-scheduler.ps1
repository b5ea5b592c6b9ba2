# Start the dask-hecras scheduler (Windows PowerShell).
# Usage: .\start-scheduler.ps1 [-Port 8786] [-DashboardPort 8787] [-Certs C:\hecras\certs] [-Insecure]
# Mutual TLS on Port (tls://host:Port) with the certificates made by `dask-hecras certs`:
# -Certs, else $env:HECRAS_CERTS, else certs\ beside this script. -Insecure starts plain tcp (a trial).
param([int]$Port = 8786, [int]$DashboardPort = 8787, [string]$Certs = $env:HECRAS_CERTS, [switch]$Insecure)
$ErrorActionPreference = "Stop"
$env:DASK_CONFIG = $PSScriptRoot
if (-not $Certs) { $Certs = Join-Path $PSScriptRoot "certs" }
$tls = @()
if ($Insecure) {
    Write-Warning "plain tcp, not encrypted: any client can run code on the workers"
    $env:DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION = "False"
} elseif (-not (Test-Path (Join-Path $Certs "scheduler.pem"))) {
    throw "No certificates in $Certs; make them with: dask-hecras certs $Certs --host $env:COMPUTERNAME"
} else {
    $tls = @("--protocol", "tls", "--tls-ca-file", (Join-Path $Certs "ca.pem"),
             "--tls-cert", (Join-Path $Certs "scheduler.pem"), "--tls-key", (Join-Path $Certs "scheduler-key.pem"))
}
dask scheduler --port $Port --dashboard-address ":$DashboardPort" --preload dask_hecras.scheduler @tls
