"""The scripts in cluster/ start a real scheduler and worker; the CLI runs plans on them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dask.config
import pytest

from .conftest import REPO

CLUSTER = REPO / "cluster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_config_is_valid_dask_config():
    config = dask.config.collect(paths=[str(CLUSTER)], env={})
    assert config["hecras"]["timeout"] == "12h"
    assert config["distributed"]["worker"]["resources"] == {"RAS": 1}
    assert config["hecras"]["queue"]["state"] == "default"  # a restarted scheduler resumes its batches


async def test_the_cluster_config_refuses_plain_tcp():
    """With cluster/dask-hecras.yaml a scheduler, worker or client will not talk plain tcp,
    even when given a tcp:// address (only the scripts' explicit insecure mode turns it off)."""
    import asyncio

    from distributed import Security
    from distributed.comm import connect

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)  # a plain tcp peer
    port = server.sockets[0].getsockname()[1]
    try:
        cluster = dask.config.collect(paths=[str(CLUSTER)], env={})
        with dask.config.set({"distributed.comm.require-encryption": cluster["distributed"]["comm"]["require-encryption"]}):
            security = Security()
            assert security.require_encryption
            with pytest.raises(RuntimeError, match="encryption required by Dask configuration"):
                await connect(f"tcp://127.0.0.1:{port}", timeout=5, **security.get_connection_args("worker"))
    finally:
        server.close()


@pytest.mark.parametrize("script", sorted(CLUSTER.glob("*.sh")), ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


@pytest.fixture(params=["tcp", "tls"])
def scripted_cluster(request, tmp_path):
    """Scheduler and worker started by the scripts: plain, and with mutual TLS."""
    from dask_hecras.certs import make_certs, security

    tls = request.param == "tls"
    certs = tmp_path / "certs"
    if tls:
        make_certs(certs)
    port, dash, worker_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DASK_HECRAS__WORKER__PORT": str(worker_port)}  # the office config fixes 8788
    logs = tmp_path / "logs"
    logs.mkdir()
    extra = [str(certs) if tls else "insecure"]
    procs = [subprocess.Popen(["sh", str(CLUSTER / "start-scheduler.sh"), str(port), str(dash), *extra], env=env,
                              stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    address = f"{request.param}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    procs.append(subprocess.Popen(["sh", str(CLUSTER / "start-worker.sh"), address, str(tmp_path / "scratch"), *extra],
                                  env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
    from distributed import Client

    with Client(address, timeout=60, security=security(certs, "client") if tls else None) as c:
        c.wait_for_workers(1, timeout=60)
        info = c.scheduler_info()["workers"]
        assert [w["resources"] for w in info.values()] == [{"RAS": 1}]
        assert [w["name"] for w in info.values()] == [socket.gethostname()]
        assert list(info)[0].endswith(f":{worker_port}")
        # cluster/dask-hecras.yaml turns the owner policy on; the worker preload applies it and
        # reports what the PC can do (Linux: no interactive owner, so it takes plans).
        from dask_hecras.worker import worker_table

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ((rows := worker_table(c))[0]["owner"] and rows[0]["cores"]):
            time.sleep(0.3)
        assert rows[0]["owner"].startswith("takes plans") and rows[0]["cores"] == os.cpu_count(), rows
        assert rows[0]["owner_policy"].endswith("on return: finish")
    yield address, env, f"http://127.0.0.1:{dash}", (["--certs", str(certs)] if tls else [])
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    worker_log = (tmp_path / "worker.log").read_text()  # dask-hecras worker's log, beside its scratch
    assert "Registered to:" in worker_log and f"{request.param}://" in worker_log


def test_scheduler_script_wants_certificates(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["sh", str(CLUSTER / "start-scheduler.sh"), str(free_port()), str(free_port()),
                        str(tmp_path / "none")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and f"no certificates in {tmp_path / 'none'}" in r.stderr
    r = subprocess.run(["sh", str(CLUSTER / "start-worker.sh"), "ras-scheduler:8786", str(tmp_path / "s"),
                        str(tmp_path / "none")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "certificate files missing" in r.stderr and "ca.pem" in r.stderr


def test_cli_runs_on_the_scripted_cluster_attached_and_detached(scripted_cluster, demo, tmp_path):
    address, env, dashboard, cert_args = scripted_cluster
    exe = [str(Path(sys.executable).parent / "dask-hecras")]
    out = tmp_path / "out"
    r = subprocess.run(exe + ["run", str(demo), "--engine", "fake", "--plans", "p01,p02", "--scheduler", address, "--results", str(out),
                              *cert_args],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 succeeded, 0 failed" in r.stdout
    r = subprocess.run(exe + ["run", str(demo), "--engine", "fake", "--scheduler", address, "--results", str(out), "--detach",
                              *cert_args],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Skipped 2 plan(s)" in r.stdout and "detached" in r.stdout
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the CLI is gone; the batch goes on
        s = subprocess.run(exe + ["status", str(out)], capture_output=True, text=True, env=env, timeout=120)
        if "Finished." in s.stdout:
            break
        time.sleep(1)
    assert "2 skipped, 2 succeeded" in s.stdout and "Finished." in s.stdout, s.stdout
    with urllib.request.urlopen(f"{dashboard}/hecras/api/plans.json", timeout=10) as resp:  # the preload is on
        states = {p["plan"]: p["state"] for p in json.load(resp)["plans"] if p["state"] != "skipped"}
    assert states == {"p01": "succeeded", "p02": "succeeded", "p03": "succeeded", "p04": "succeeded"}
    saved = json.loads((out / "Demo" / "p04" / "result.json").read_text())
    assert saved["status"] == "succeeded" and saved["worker"] == socket.gethostname()
