"""Starting office workers: `dask-hecras worker` / `worker-config`, and the Windows scripts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.config
import psutil
import pytest
import yaml

from dask_hecras.certs import make_certs
from dask_hecras.cli import build_parser, main
from dask_hecras.worker import WorkerSetupError, load_config_file, worker_command

from .conftest import REPO
from .test_cluster_scripts import free_port

PS1 = sorted((REPO / "cluster").rglob("*.ps1"))


@pytest.fixture
def certs(tmp_path) -> Path:
    make_certs(tmp_path / "certs")
    return tmp_path / "certs"


def test_worker_command_is_tls_by_default(certs, tmp_path):
    with dask.config.set({"hecras.worker.port": 8788}):
        args = worker_command("ras-scheduler", certs=certs, scratch=tmp_path / "s", name="PC-12")
    assert args[0] == "tls://ras-scheduler:8786"
    pairs = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--") and not args[i + 1].startswith("--")}
    assert pairs["--name"] == "PC-12" and pairs["--resources"] == "RAS=1" and pairs["--nthreads"] == "2"
    assert pairs["--local-directory"] == str(tmp_path / "s") and pairs["--preload"] == "dask_hecras.worker"
    assert pairs["--worker-port"] == "8788" and pairs["--nanny-port"] == "8789"
    assert pairs["--tls-ca-file"] == str(certs / "ca.pem") and pairs["--tls-key"] == str(certs / "worker-key.pem")
    assert "--no-dashboard" in args

    with pytest.raises(WorkerSetupError, match="needs TLS certificates"):
        worker_command("tls://ras-scheduler:8786", scratch=tmp_path / "s")
    with pytest.raises(WorkerSetupError, match=re.escape(str(tmp_path / "empty" / "worker.pem"))):
        worker_command("ras-scheduler", certs=tmp_path / "empty", scratch=tmp_path / "s")
    with pytest.raises(WorkerSetupError, match="no scheduler address"):
        worker_command(None, certs=certs)
    plain = worker_command("tcp://10.0.0.5:9000", scratch=tmp_path / "s")  # said explicitly: a trial
    assert plain[0] == "tcp://10.0.0.5:9000" and not any(a.startswith("--tls") for a in plain)
    # the ports docs/deployment.md promises, with no settings file at all (the README's recipe)
    assert plain[plain.index("--worker-port") + 1] == "8788" and plain[plain.index("--nanny-port") + 1] == "8789"
    with dask.config.set({"hecras.worker.port": 0}):  # several workers on one machine
        assert "--worker-port" not in worker_command("tcp://10.0.0.5:9000", scratch=tmp_path / "s")


def test_worker_config_round_trip(certs, tmp_path, capsys):
    settings = tmp_path / "worker.yaml"
    windows_scratch = "D:\\hecras scratch"  # a Windows path with a space survives the YAML
    assert main(["worker-config", str(settings), "--scheduler", "ras-scheduler:8786", "--certs", str(certs),
                 "--scratch", windows_scratch, "--night", "20:00-06:30", "--on-return", "suspend",
                 "--ras-exe", "C:\\Program Files (x86)\\HEC\\HEC-RAS\\6.6\\Ras.exe"]) == 0
    data = yaml.safe_load(settings.read_text())["hecras"]
    assert data["scratch"] == windows_scratch and data["ras-exe"].endswith("6.6\\Ras.exe")
    assert data["timeout"] == "12h", "an installed worker reads no other settings: its run time limit is here"
    assert data["owner"] == {"enabled": True, "night": "20:00-06:30", "idle-minutes": 15.0, "on-return": "suspend"}
    assert data["worker"] == {"scheduler": "ras-scheduler:8786", "certs": str(certs), "port": 8788}
    assert yaml.safe_load(settings.read_text())["distributed"] == {"comm": {"require-encryption": True}}
    capsys.readouterr()
    assert main(["worker", "--config", str(settings), "--print", "--name", "PC-7"]) == 0  # conftest undoes the merge
    line = capsys.readouterr().out.strip()
    assert line.startswith("dask worker tls://ras-scheduler:8786 --name PC-7 ")
    assert "--worker-port 8788 --nanny-port 8789" in line and f"--tls-cert {certs / 'worker.pem'}" in line
    assert "--local-directory 'D:\\hecras scratch'" in line

    trial = tmp_path / "trial.yaml"  # plain tcp only where the address says so
    assert main(["worker-config", str(trial), "--scheduler", "tcp://10.0.0.5:8786", "--night", "none"]) == 0
    assert yaml.safe_load(trial.read_text())["distributed"] == {"comm": {"require-encryption": False}}
    assert yaml.safe_load(trial.read_text())["hecras"]["owner"]["night"] is None  # install-worker.ps1 -Night ""
    capsys.readouterr()

    assert main(["worker-config", str(tmp_path / "bad.yaml"), "--scheduler", "x", "--night", "7pm"]) == 2
    assert "hecras.owner.night must look like 19:00-07:00, not '7pm'" in capsys.readouterr().err
    assert main(["worker-config", str(tmp_path / "bad.yaml"), "--scheduler", "x", "--timeout", "0"]) == 2
    assert "time limit" in capsys.readouterr().err
    assert not (tmp_path / "bad.yaml").exists()
    (tmp_path / "broken.yaml").write_text("hecras: [unclosed")
    with pytest.raises(WorkerSetupError, match="broken.yaml"):
        load_config_file(tmp_path / "broken.yaml")


def _children_named(pid: int, needle: str) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if needle in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def test_worker_supervisor_restarts_the_worker_and_takes_its_tree_down(certs, tmp_path):
    """`dask-hecras worker` on a real TLS scheduler: a worker that dies is started again;
    stopping the supervisor stops the worker."""
    from distributed import Client

    from dask_hecras.certs import security

    port = free_port()
    exe = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{exe}{os.pathsep}{os.environ['PATH']}"}
    sched = subprocess.Popen([str(exe / "dask"), "scheduler", "--protocol", "tls", "--host", "127.0.0.1",
                              "--port", str(port), "--dashboard-address", ":0", "--tls-ca-file", str(certs / "ca.pem"),
                              "--tls-cert", str(certs / "scheduler.pem"), "--tls-key", str(certs / "scheduler-key.pem")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = tmp_path / "worker.yaml"
    assert main(["worker-config", str(settings), "--scheduler", f"127.0.0.1:{port}", "--certs", str(certs),
                 "--scratch", str(tmp_path / "scratch"), "--port", "0", "--no-owner"]) == 0
    env["DASK_HECRAS__WORKER__NAME"] = "PC-under-test"
    sup = subprocess.Popen([str(exe / "dask-hecras"), "worker", "--config", str(settings)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with Client(f"tls://127.0.0.1:{port}", security=security(certs, "client"), timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            first = client.scheduler_info()["workers"]
            assert [w["name"] for w in first.values()] == ["PC-under-test"]
            assert [w["resources"] for w in first.values()] == [{"RAS": 1}]
            workers = _children_named(sup.pid, "dask_worker")
            assert len(workers) == 1
            workers[0].kill()  # the nanny and its worker die with it... the supervisor notices
            deadline = time.monotonic() + 90  # first restart after 15 s
            while time.monotonic() < deadline:
                now = client.scheduler_info()["workers"]
                if now and set(now) != set(first):
                    break
                time.sleep(0.5)
            assert now and set(now) != set(first), "the worker was not started again"
            assert [w["name"] for w in now.values()] == ["PC-under-test"]
            tree = [p for p in psutil.Process(sup.pid).children(recursive=True)]
            sup.send_signal(signal.SIGTERM)
            assert sup.wait(timeout=30) == 143
            gone, alive = psutil.wait_procs(tree, timeout=10)
            assert not alive, f"left running after the supervisor stopped: {alive}"
        log = (tmp_path / "worker.log").read_text()
        assert log.count("Registered to:") == 2 and "exit code" in log
    finally:
        for p in (sup, sched):
            if p.poll() is None:
                p.kill()
        sched.wait(timeout=30)
    out = sup.stdout.read()
    assert "the Dask worker ended" in out and "starting it again in 15 s" in out


@pytest.mark.parametrize("script", PS1, ids=lambda p: str(p.relative_to(REPO / "cluster")))
def test_powershell_scripts_parse(script):
    import tree_sitter
    import tree_sitter_powershell

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    tree = parser.parse(script.read_bytes())
    bad = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            bad.append(f"line {node.start_point[0] + 1}: {node.text.decode(errors='replace')[:60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not bad, f"{script.name} does not parse: {bad}"


def test_the_parser_catches_broken_powershell():
    import tree_sitter
    import tree_sitter_powershell

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    assert parser.parse(b'if ($x -eq 1 { Write-Host "a" ').root_node.has_error


def test_install_script_calls_the_cli_as_it_is():
    """install-worker.ps1 runs `worker-config` and the task runs `worker`: the options must exist."""
    text = (REPO / "cluster" / "windows" / "install-worker.ps1").read_text()
    block = text[text.index("$config = @("):text.index("Invoke-Program $VenvPython $config")]
    options = re.findall(r'"(--[a-z-]+)"', block)
    assert {"--scheduler", "--certs", "--scratch", "--port", "--night", "--idle-minutes", "--on-return",
            "--ras-exe", "--timeout"} <= set(options)
    values = {"--port": "8788", "--idle-minutes": "15", "--on-return": "finish", "--timeout": "12h"}
    args = build_parser().parse_args(["worker-config", "worker.yaml"] +
                                     [a for o in options for a in (o, values.get(o, "x"))])
    assert args.command == "worker-config" and args.port == 8788
    with pytest.raises(SystemExit):  # the check above would catch a renamed option
        build_parser().parse_args(["worker-config", "w.yaml", "--scheduler", "x", "--renamed-option", "1"])
    action = re.search(r'-Argument "(.*?)"\s', text).group(1)
    assert action.startswith("-m dask_hecras.cli worker --config")
    args = build_parser().parse_args(action.split()[2:4] + ["C:/Users/me/AppData/Local/dask-hecras/worker.yaml"])
    assert args.command == "worker" and args.config.name == "worker.yaml"


def test_install_script_sets_what_windows_defaults_get_wrong(tmp_path):
    """The Scheduled Task starts and stays on battery at normal priority; every program runs
    through Invoke-Program (stderr is no failure, the exit code is); the Python path read back
    from `py` survives a user name such as Jürgen."""
    text = (REPO / "cluster" / "windows" / "install-worker.ps1").read_text(encoding="utf-8")
    settings = text[text.index("New-ScheduledTaskSettingsSet"):text.index("$principal")]
    for flag in ("-AllowStartIfOnBatteries", "-DontStopIfGoingOnBatteries", "-Priority 6", "-ExecutionTimeLimit"):
        assert flag in settings
    calls = [line.strip() for line in text.splitlines() if re.search(r"& \$", line)]
    assert calls == ["try { & $Program @Arguments 2>&1 | ForEach-Object { \"$_\" } } finally { $ErrorActionPreference = $previous }"]
    code = re.search(r'\$write = "(.*?)"\n', text).group(1)
    target = tmp_path / "Jürgen" / "python-path.txt"
    target.parent.mkdir()
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert target.read_bytes().decode("utf-8") == sys.executable


def test_uninstall_script_finds_a_scratch_folder_installed_elsewhere(certs, tmp_path):
    """uninstall-worker.ps1 reads the scratch folder from worker.yaml with the venv's Python,
    to name it (it never deletes a folder outside its own)."""
    text = (REPO / "cluster" / "windows" / "uninstall-worker.ps1").read_text()
    code = re.search(r'\$read = "(.*?)"\n', text).group(1)
    for scratch, expected in (("D:\\hecras scratch", "D:\\hecras scratch"), (None, "")):
        settings = tmp_path / "worker.yaml"
        extra = ["--scratch", scratch] if scratch else []
        assert main(["worker-config", str(settings), "--scheduler", "ras-scheduler:8786", "--certs", str(certs),
                     *extra]) == 0
        out = subprocess.run([sys.executable, "-c", code, str(settings)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def _without_console(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """``python -m dask_hecras.cli ARGS`` as ``pythonw`` starts it: no stdout, no stderr (Python
    sets ``sys.stdout``/``sys.stderr`` to ``None`` when those descriptors are not open, as
    pythonw has none)."""
    def close_output():
        os.close(1)
        os.close(2)

    return subprocess.run([sys.executable, "-m", "dask_hecras.cli", *args], env=env, stdin=subprocess.DEVNULL,
                          preexec_fn=close_output, timeout=120)


def test_a_worker_started_without_a_console_says_what_went_wrong(tmp_path):
    """The Scheduled Task runs ``pythonw -m dask_hecras.cli worker --config worker.yaml``: a
    broken settings file (or any error) must land somewhere a colleague can read it."""
    env = {**os.environ, "LOCALAPPDATA": str(tmp_path / "AppData" / "Local")}
    bad = tmp_path / "worker.yaml"
    bad.write_text("hecras: [not, a, mapping\n")
    r = _without_console(["worker", "--config", str(bad)], env)
    assert r.returncode == 2
    log = tmp_path / "AppData" / "Local" / "dask-hecras" / "dask-hecras.log"
    text = log.read_text()
    assert f"dask-hecras worker --config {bad}" in text and "error:" in text and str(bad) in text, text
    r = _without_console(["worker", "--no-such-option"], env)  # argparse's own complaint too
    assert r.returncode == 2 and "unrecognized arguments: --no-such-option" in log.read_text()
