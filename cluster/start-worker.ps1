# Start a dask-hecras worker (Windows PowerShell). HEC-RAS needs an interactive
# desktop session: run this in the logged-on user's session, not as a service.
# Usage: .\start-worker.ps1 -Scheduler tcp://ras-scheduler:8786 [-Scratch D:\hecras-scratch]
param(
    [Parameter(Mandatory = $true)][string]$Scheduler,
    [string]$Scratch = (Join-Path $env:LOCALAPPDATA "dask-hecras\scratch")
)
$ErrorActionPreference = "Stop"
$env:DASK_CONFIG = $PSScriptRoot
New-Item -ItemType Directory -Force -Path $Scratch | Out-Null
$env:DASK_HECRAS__SCRATCH = $Scratch
dask worker $Scheduler --nworkers 1 --nthreads 2 --resources RAS=1 `
    --name $env:COMPUTERNAME --local-directory $Scratch
