"""Mutual TLS is the gate: a TLS cluster runs plans; a client without the cluster's certificate is refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from dask_hecras import Project
from dask_hecras.batch import submit
from dask_hecras.certs import make_certs, security

from .conftest import try_client


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    r = subprocess.run([str(Path(sys.executable).parent / "dask-hecras"), "certs", str(folder), "--host", "ras-scheduler"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ca-key.pem" in r.stdout
    return folder


@pytest.fixture(scope="module")
def tls_cluster(certs):
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, protocol="tls://", resources={"RAS": 1},
                      security=security(certs, "scheduler"), dashboard_address=":0") as c:
        yield c


def test_a_tls_cluster_runs_plans(tls_cluster, certs, demo, tmp_path):
    assert tls_cluster.scheduler_address.startswith("tls://")
    with Client(tls_cluster.scheduler_address, security=security(certs, "client")) as client:
        batch = submit(client, Project(demo).plans[:2], results_dir=tmp_path / "results").wait(timeout=120)
        assert [r.status for r in batch.results()] == ["succeeded", "succeeded"]


def test_a_client_without_a_certificate_is_refused(tls_cluster, certs):
    # no TLS at all: cannot even speak to it
    assert isinstance(try_client(tls_cluster.scheduler_address, timeout="5s"), (OSError, TimeoutError, TypeError))
    # TLS that trusts the cluster's CA but shows no certificate: the scheduler ends the handshake.
    import socket
    import ssl

    host, port = tls_cluster.scheduler_address.removeprefix("tls://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"hello")  # not a whole Dask frame: an accepted peer would wait for more
                refused = tls.recv(1) == b""  # TLS 1.3 reports a refused certificate on the first read
        except socket.timeout:
            refused = False  # the scheduler let us in and is waiting for the rest of the message
        except (ssl.SSLError, ConnectionError):
            refused = True
    assert refused, "the scheduler accepted a TLS peer without a certificate"


def test_a_client_with_another_clusters_certificate_is_refused(tls_cluster, tmp_path):
    stranger = make_certs(tmp_path / "other")["client"].parent
    refused = try_client(tls_cluster.scheduler_address, security=security(stranger, "client"), timeout="5s")
    assert isinstance(refused, (OSError, TimeoutError)), refused


def test_missing_certificates_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="client-key.pem"):
        security(tmp_path, "client")


def test_keys_are_readable_by_their_owner_alone(tmp_path):
    made = make_certs(tmp_path / "certs")
    keys = sorted((tmp_path / "certs").glob("*-key.pem"))
    assert [k.name for k in keys] == ["ca-key.pem", "client-key.pem", "scheduler-key.pem", "worker-key.pem"]
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
    assert all(made[role].stat().st_mode & 0o044 for role in ("scheduler", "worker", "client")), "certificates stay readable"


def _fake_icacls(folder: Path, exit_code: int, message: str) -> Path:
    """Windows' ``icacls``, recording its command lines (one per line, arguments tab-separated)."""
    folder.mkdir()
    calls = folder / "calls.txt"
    script = folder / "icacls"
    script.write_text(f"#!{sys.executable}\nimport sys\nopen({str(calls)!r}, 'a').write('\\t'.join(sys.argv[1:]) + '\\n')\n"
                      f"print({message!r})\nsys.exit({exit_code})\n")
    script.chmod(0o755)
    return calls


def test_keys_on_windows_get_an_acl_for_their_owner_alone(tmp_path, monkeypatch):
    """``chmod`` cannot keep a key private on Windows: its inherited ACL is replaced by one entry
    for the user who made it (``icacls /inheritance:r /grant:r DOMAIN\\user:F``)."""
    import os

    calls = _fake_icacls(tmp_path / "bin", 0, "processed file: 1 files")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("USERNAME", "jürgen")
    monkeypatch.setenv("USERDOMAIN", "HYDRO")
    monkeypatch.setattr(sys, "platform", "win32")
    make_certs(tmp_path / "certs")
    lines = [line.split("\t") for line in calls.read_text(encoding="utf-8").splitlines()]
    assert sorted(Path(a[0]).name for a in lines) == ["ca-key.pem", "client-key.pem", "scheduler-key.pem",
                                                      "worker-key.pem"]
    assert all(a[1:] == ["/inheritance:r", "/grant:r", "HYDRO\\jürgen:F"] for a in lines), lines


def test_a_key_windows_would_not_restrict_is_a_warning_naming_it(tmp_path, monkeypatch):
    import os

    _fake_icacls(tmp_path / "bin", 5, "C:\\certs\\ca-key.pem: Access is denied.")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.warns(UserWarning) as caught:
        make_certs(tmp_path / "certs")
    said = sorted(str(w.message) for w in caught)
    assert len(said) == 4 and all(re.search(r"-key.pem could not be made readable .* alone \(.*Access is denied", m)
                                  for m in said), said
    assert [Path(m.split(" could not")[0]).name for m in said] == ["ca-key.pem", "client-key.pem", "scheduler-key.pem",
                                                                    "worker-key.pem"]
    assert (tmp_path / "certs" / "ca.pem").is_file(), "the certificates are still made"
