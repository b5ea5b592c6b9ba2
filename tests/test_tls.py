"""Mutual TLS is the gate: a TLS cluster runs plans; a client without the cluster's certificate is refused."""

from __future__ import annotations

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
