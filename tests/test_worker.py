"""What each worker reports about itself (the worker preload), on real worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import dask.config
import psutil
from distributed import Client

from dask_hecras.batch import local_cluster
from dask_hecras.cli import main
from dask_hecras.dashboard import snapshot
from dask_hecras.worker import capabilities, worker_table


def ras_installs(root: Path) -> Path:
    for version in ("6.3.1", "6.6"):
        (root / version).mkdir(parents=True)
        (root / version / "Ras.exe").write_bytes(b"MZ")
    (root / "not-a-version").mkdir()
    return root


def test_capabilities_of_this_machine(tmp_path):
    roots = ras_installs(tmp_path / "HEC-RAS")
    scratch = tmp_path / "scratch"
    (scratch / "cache").mkdir(parents=True)
    with dask.config.set({"hecras.ras-roots": [str(roots)]}):
        cap = capabilities(scratch)
    assert cap.installs == (("6.3.1", str(roots / "6.3.1" / "Ras.exe")), ("6.6", str(roots / "6.6" / "Ras.exe")))
    assert cap.versions == "6.3.1, 6.6"
    assert cap.cores == psutil.cpu_count() and cap.memory_bytes == psutil.virtual_memory().total
    assert cap.scratch == str(scratch) and 0 < cap.free_scratch_bytes <= psutil.disk_usage(str(scratch)).total
    assert cap.cache_bytes == 0 and cap.owner_policy == "off"
    event = cap.as_event()
    assert event["installs"] == [["6.3.1", str(roots / "6.3.1" / "Ras.exe")], ["6.6", str(roots / "6.6" / "Ras.exe")]]

    # hecras.ras-exe overrides discovery, and a wrong path shows as missing
    with dask.config.set({"hecras.ras-roots": [str(roots)], "hecras.ras-exe": str(tmp_path / "nope" / "Ras.exe"),
                          "hecras.owner.enabled": True, "hecras.owner.on-return": "suspend"}):
        cap = capabilities(scratch)
    assert cap.installs == (("missing", str(tmp_path / "nope" / "Ras.exe")),)
    assert "on return: suspend" in cap.owner_policy and "19:00-07:00" in cap.owner_policy


def test_workers_report_to_the_scheduler_dashboard_and_status(tmp_path, capsys):
    roots = ras_installs(tmp_path / "HEC-RAS")
    # No night window: inside one the policy says so, and the decision would depend on the hour.
    settings = {"hecras.ras-roots": [str(roots)], "hecras.worker.report-every": "1s", "hecras.owner.enabled": True,
                "hecras.owner.night": None}
    with dask.config.set(settings), local_cluster(2, dashboard_address=":0") as cluster, Client(cluster) as client:
        deadline = time.monotonic() + 60
        rows = worker_table(client)
        while time.monotonic() < deadline and not all(r["cores"] and r["owner"] for r in rows):
            time.sleep(0.2)
            rows = worker_table(client)
        panel = client.run_on_scheduler(lambda dask_scheduler: snapshot(dask_scheduler)["workers"])

        assert len(rows) == 2
        for r in rows:
            assert r["slots"] == 1 and r["cores"] == psutil.cpu_count() and r["versions"] == "6.3.1, 6.6"
            assert r["free_scratch_bytes"] > 0 and r["cache_bytes"] == 0 and r["standing"] == "in rotation"
            # The owner policy came from config through the preload; Linux has no interactive owner.
            assert r["owner"] == "takes plans: no interactive owner on this machine", r
        assert {w["worker"] for w in panel} == {r["worker"] for r in rows}
        for w in panel:
            assert w["cores"] == psutil.cpu_count() and w["versions"] == "6.3.1, 6.6"
            assert w["ras_exe"] == f"{roots / '6.3.1' / 'Ras.exe'}; {roots / '6.6' / 'Ras.exe'}"
            assert w["free_disk"] > 0 and w["owner"].startswith("takes plans")

        assert main(["status", "--scheduler", cluster.scheduler_address]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"2 workers at {cluster.scheduler_address}, 2 RAS slots open")
    assert out.count("6.3.1, 6.6") == 2 and out.count(str(roots / "6.6" / "Ras.exe")) == 2
    assert "takes plans: no interactive owner" in out
