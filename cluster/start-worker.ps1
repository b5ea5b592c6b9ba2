# Start this PC's dask-hecras worker in the foreground (Windows PowerShell), e.g. to try a PC
# before installing it with windows\install-worker.ps1. HEC-RAS needs an interactive desktop
# session: run this as the logged-on user, never as a service.
# Usage: .\start-worker.ps1 -Scheduler ras-scheduler:8786 [-Scratch D:\hecras-scratch] [-Certs C:\hecras\certs]
param(
    [Parameter(Mandatory = $true)][string]$Scheduler,
    [string]$Scratch = (Join-Path $env:LOCALAPPDATA "dask-hecras\scratch"),
    [string]$Certs = $env:HECRAS_CERTS
)
$ErrorActionPreference = "Stop"
$env:DASK_CONFIG = $PSScriptRoot
if (-not $Certs) { $Certs = Join-Path $PSScriptRoot "certs" }
New-Item -ItemType Directory -Force -Path $Scratch | Out-Null
dask-hecras worker $Scheduler --scratch $Scratch --certs $Certs
