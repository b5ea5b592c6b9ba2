# Stop this PC's dask-hecras worker now. A plan running here is stopped with its whole process tree
# and runs again on another PC. The worker starts again at the next logon or night window;
# -Disable keeps it off until start-worker-task.ps1 -Enable.
param([string]$TaskName = "dask-hecras worker", [switch]$Disable)
$ErrorActionPreference = "Stop"
Stop-ScheduledTask -TaskName $TaskName
if ($Disable) { Disable-ScheduledTask -TaskName $TaskName | Out-Null }
Get-ScheduledTask -TaskName $TaskName | Select-Object -Property @("TaskName", "State")
