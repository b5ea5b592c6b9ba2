# Start the dask-hecras scheduler (Windows PowerShell).
# Usage: .\start-scheduler.ps1 [-Port 8786] [-DashboardPort 8787]
param([int]$Port = 8786, [int]$DashboardPort = 8787)
$ErrorActionPreference = "Stop"
$env:DASK_CONFIG = $PSScriptRoot
dask scheduler --port $Port --dashboard-address ":$DashboardPort" --preload dask_hecras.dashboard
