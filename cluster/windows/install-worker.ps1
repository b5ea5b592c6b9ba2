<#
.SYNOPSIS
Install this PC as a dask-hecras worker for the logged-on user. No admin rights needed.

.DESCRIPTION
1. makes a Python virtual environment in %LOCALAPPDATA%\dask-hecras\venv and installs dask-hecras;
2. copies the worker certificates (ca.pem, worker.pem, worker-key.pem) to %LOCALAPPDATA%\dask-hecras\certs,
   readable by this user only;
3. writes the worker settings to %LOCALAPPDATA%\dask-hecras\worker.yaml (dask-hecras worker-config);
4. registers a Scheduled Task for this user that starts the worker at logon and every evening at
   the start of the night window, restarts it when it fails, and never runs two at once.
The worker runs in the user's desktop session (HEC-RAS needs one) without a console window, is
named after the computer, has one RAS slot, and takes plans only while its owner is away.
Run it again to upgrade or to change settings; uninstall-worker.ps1 removes everything.

.EXAMPLE
.\install-worker.ps1 -Scheduler ras-scheduler:8786 -Certs \\fileserver\hecras\worker-certs
.EXAMPLE
.\install-worker.ps1 -Scheduler ras-scheduler:8786 -Certs C:\temp\certs -Source \\fileserver\hecras\wheels -Scratch D:\hecras
#>
param(
    [Parameter(Mandatory = $true)][string]$Scheduler,   # tls://host:8786 (host:port means TLS)
    [Parameter(Mandatory = $true)][string]$Certs,       # folder with ca.pem, worker.pem, worker-key.pem
    [string]$Source = "",                               # a folder of wheels, for offices without PyPI
    [string]$Package = "dask-hecras",                   # e.g. dask-hecras==0.2.0, or a wheel file
    [string]$Python = "",                               # python.exe to build the venv with
    [string]$Scratch = (Join-Path $env:LOCALAPPDATA "dask-hecras\scratch"),
    [string]$RasExe = "",                               # default: find installed HEC-RAS versions
    [string]$Night = "19:00-07:00",                     # "" = no night window
    [double]$IdleMinutes = 15,
    [ValidateSet("finish", "suspend", "requeue")][string]$OnReturn = "finish",
    [int]$Port = 8788,                                  # worker port, nanny on Port+1
    [string]$Timeout = "12h",                           # longest a HEC-RAS run may take on this PC
    [string]$TaskName = "dask-hecras worker"
)
$ErrorActionPreference = "Stop"

function Invoke-Program([string]$Program, [string[]]$Arguments, [string]$Failure) {
    # A program's stderr (pip's notices) is no error in itself, even when this script's output is
    # redirected (which turns it into error records): its exit code says whether it failed.
    $previous = $ErrorActionPreference
    $ErrorActionPreference = "Continue"
    try { & $Program @Arguments 2>&1 | ForEach-Object { "$_" } } finally { $ErrorActionPreference = $previous }
    if ($LASTEXITCODE -ne 0) { throw $Failure }
}

$Root = Join-Path $env:LOCALAPPDATA "dask-hecras"
$Venv = Join-Path $Root "venv"
$CertDir = Join-Path $Root "certs"
$Settings = Join-Path $Root "worker.yaml"
New-Item -ItemType Directory -Force -Path $Root, $CertDir, $Scratch | Out-Null

# 1. Python and dask-hecras, in the user's profile
if (-not $Python) {
    $launcher = Get-Command py -ErrorAction SilentlyContinue
    if ($launcher) {
        # Through a UTF-8 file: the console's code page would garble a user name such as Jürgen.
        $pathFile = Join-Path $Root "python-path.txt"
        $write = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.executable, encoding='utf-8')"
        Invoke-Program "py" @("-3", "-c", $write, $pathFile) "The py launcher could not run Python 3"
        $Python = (Get-Content -LiteralPath $pathFile -Encoding UTF8 -Raw).Trim()
        Remove-Item -LiteralPath $pathFile
    }
    else { $Python = (Get-Command python -ErrorAction Stop).Source }
}
if (-not (Test-Path (Join-Path $Venv "Scripts\python.exe"))) {
    Invoke-Program $Python @("-m", "venv", $Venv) "Could not make a virtual environment with $Python"
}
$VenvPython = Join-Path $Venv "Scripts\python.exe"
$pip = @("-m", "pip", "install", "--upgrade", "--disable-pip-version-check")
if ($Source) { $pip += @("--no-index", "--find-links", $Source) }
Invoke-Program $VenvPython ($pip + @($Package)) "pip could not install $Package"

# 2. Certificates, readable by this user only
foreach ($name in "ca.pem", "worker.pem", "worker-key.pem") {
    $from = Join-Path $Certs $name
    if (-not (Test-Path $from)) { throw "Missing $from (make the certificates with: dask-hecras certs)" }
    Copy-Item -Force $from (Join-Path $CertDir $name)
}
icacls $CertDir /inheritance:r /grant:r "$($env:USERNAME):(OI)(CI)F" | Out-Null

# 3. Worker settings (written by dask-hecras itself, so that paths are quoted right).
# Windows PowerShell 5.1 drops empty arguments to programs: no night window is "none".
$NightArg = if ($Night) { $Night } else { "none" }
$config = @("-m", "dask_hecras.cli", "worker-config", $Settings, "--scheduler", $Scheduler,
            "--certs", $CertDir, "--scratch", $Scratch, "--port", $Port, "--night", $NightArg,
            "--idle-minutes", $IdleMinutes, "--on-return", $OnReturn, "--timeout", $Timeout)
if ($RasExe) { $config += @("--ras-exe", $RasExe) }
Invoke-Program $VenvPython $config "dask-hecras worker-config failed"
Invoke-Program $VenvPython @("-m", "dask_hecras.cli", "worker", "--config", $Settings, "--print") `
    "The worker settings in $Settings do not start a worker"

# 4. A Scheduled Task for this user only: at logon and at the start of the night window
$user = "$env:USERDOMAIN\$env:USERNAME"
$pythonw = Join-Path $Venv "Scripts\pythonw.exe"   # no console window on the colleague's desktop
$action = New-ScheduledTaskAction -Execute $pythonw -Argument "-m dask_hecras.cli worker --config `"$Settings`"" `
    -WorkingDirectory $Root
$triggers = @(New-ScheduledTaskTrigger -AtLogOn -User $user)
if ($Night) { $triggers += New-ScheduledTaskTrigger -Daily -At ($Night.Split("-")[0]) }
# On purpose, not Windows' defaults: a laptop on battery still starts and keeps its worker (the
# defaults would never start it, and unplugging would kill it with its Ras.exe mid-run); priority 6
# is the normal priority class (the default, 7, is below normal, which Ras.exe would inherit).
$settingsSet = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew -StartWhenAvailable `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -Priority 6
$principal = New-ScheduledTaskPrincipal -UserId $user -LogonType Interactive -RunLevel Limited
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $triggers -Settings $settingsSet `
    -Principal $principal -Description "dask-hecras worker for $Scheduler (installed by install-worker.ps1)" `
    -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName
$when = if ($Night) { "at logon and every day at $($Night.Split('-')[0])" } else { "at logon" }
Write-Host "Installed: task '$TaskName' starts the worker $when; settings in $Settings."
Write-Host "Start HEC-RAS once by hand on this PC to accept its licence terms, or its runs will hang."
