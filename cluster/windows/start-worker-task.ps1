# Start this PC's installed dask-hecras worker now (its Scheduled Task). -Enable first undoes
# stop-worker-task.ps1 -Disable.
param([string]$TaskName = "dask-hecras worker", [switch]$Enable)
$ErrorActionPreference = "Stop"
if ($Enable) { Enable-ScheduledTask -TaskName $TaskName | Out-Null }
Start-ScheduledTask -TaskName $TaskName
Get-ScheduledTask -TaskName $TaskName | Select-Object -Property @("TaskName", "State")
