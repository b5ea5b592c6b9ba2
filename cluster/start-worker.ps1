# Start a dask-hecras worker (Windows PowerShell). HEC-RAS needs an interactive
# desktop session: run this in the logged-on user's session, not as a service.
# Usage: .\start-worker.ps1 -Scheduler tls://ras-scheduler:8786 [-Scratch D:\hecras-scratch] [-Certs C:\hecras\certs]
param(
    [Parameter(Mandatory = $true)][string]$Scheduler,
    [string]$Scratch = (Join-Path $env:LOCALAPPDATA "dask-hecras\scratch"),
    [string]$Certs = $env:HECRAS_CERTS
)
$ErrorActionPreference = "Stop"
$env:DASK_CONFIG = $PSScriptRoot
New-Item -ItemType Directory -Force -Path $Scratch | Out-Null
$env:DASK_HECRAS__SCRATCH = $Scratch
$tls = @()
if ($Certs) {
    $tls = @("--tls-ca-file", (Join-Path $Certs "ca.pem"),
             "--tls-cert", (Join-Path $Certs "worker.pem"), "--tls-key", (Join-Path $Certs "worker-key.pem"))
}
dask worker $Scheduler --nworkers 1 --nthreads 2 --resources RAS=1 `
    --name $env:COMPUTERNAME --local-directory $Scratch @tls
