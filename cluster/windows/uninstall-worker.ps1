<#
.SYNOPSIS
Remove this PC's dask-hecras worker: stop and delete its Scheduled Task, then delete
%LOCALAPPDATA%\dask-hecras (venv, certificates, settings, scratch and cache). No admin rights needed.
-KeepScratch keeps the scratch folder (and its input cache) when it lies elsewhere.
#>
param([string]$TaskName = "dask-hecras worker", [switch]$KeepScratch)
$ErrorActionPreference = "Stop"
$Root = Join-Path $env:LOCALAPPDATA "dask-hecras"
if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
    Stop-ScheduledTask -TaskName $TaskName
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
}
$scratch = Join-Path $Root "scratch"
if (Test-Path $Root) {
    Get-ChildItem $Root | Where-Object { -not ($KeepScratch -and $_.FullName -eq $scratch) } |
        Remove-Item -Recurse -Force
}
Write-Host "Removed the dask-hecras worker of $env:USERNAME on $env:COMPUTERNAME."
