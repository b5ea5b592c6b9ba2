<#
.SYNOPSIS
Remove this PC's dask-hecras worker: stop and delete its Scheduled Task, then delete
%LOCALAPPDATA%\dask-hecras (venv, certificates, settings, and the default scratch folder with
its input cache). No admin rights needed.

.DESCRIPTION
-KeepScratch keeps %LOCALAPPDATA%\dask-hecras\scratch (the input cache saves copying terrain
again after a reinstall). A scratch folder installed elsewhere (-Scratch D:\hecras) is never
deleted by this script, as it may hold other files: it is named, to delete by hand.
#>
param([string]$TaskName = "dask-hecras worker", [switch]$KeepScratch)
$ErrorActionPreference = "Stop"
$Root = Join-Path $env:LOCALAPPDATA "dask-hecras"
$Settings = Join-Path $Root "worker.yaml"
$VenvPython = Join-Path $Root "venv\Scripts\python.exe"
if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
    Stop-ScheduledTask -TaskName $TaskName
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
}
$scratch = Join-Path $Root "scratch"
$elsewhere = ""
if ((Test-Path $Settings) -and (Test-Path $VenvPython)) {
    $read = "import sys, yaml; print(((yaml.safe_load(open(sys.argv[1])) or {}).get('hecras') or {}).get('scratch') or '')"
    $configured = "$(& $VenvPython -c $read $Settings)".Trim()
    if ($configured -and ($configured.TrimEnd("\") -ne $scratch)) { $elsewhere = $configured }
}
if (Test-Path $Root) {
    Get-ChildItem $Root | Where-Object { -not ($KeepScratch -and $_.FullName -eq $scratch) } |
        Remove-Item -Recurse -Force
}
Write-Host "Removed the dask-hecras worker of $env:USERNAME on $env:COMPUTERNAME."
if ($elsewhere -and (Test-Path $elsewhere)) {
    Write-Host "Left in place: the scratch folder $elsewhere (run folders and the input cache). Delete it by hand if it is no longer needed."
}
