"""Big machines run several plans: hecras.cores-per-plan sets each run's cores (the staged
plan's UNET D1/D2 Cores) and a worker's RAS slots (cores // cores-per-plan)."""

from __future__ import annotations

import json

import dask.config
import pytest

from dask_hecras import Project, run_plan
from dask_hecras.config import ras_slots
from dask_hecras.fake_ras import run_seconds
from dask_hecras.worker import worker_command

from .conftest import folder_digest


def test_slots_follow_the_cores_unless_set():
    assert ras_slots(cores=32) == 1  # nothing set: one run at a time, with every core
    with dask.config.set({"hecras.cores-per-plan": 8}):
        assert ras_slots(cores=32) == 4 and ras_slots(cores=16) == 2 and ras_slots(cores=6) == 1
        with dask.config.set({"hecras.worker.slots": 3}):
            assert ras_slots(cores=32) == 3  # said explicitly
    with dask.config.set({"hecras.cores-per-plan": "eight"}), pytest.raises(ValueError, match="hecras.cores-per-plan"):
        ras_slots(cores=32)


def test_a_worker_starts_with_the_slots_its_cores_allow(tmp_path):
    import psutil

    with dask.config.set({"hecras.cores-per-plan": 1}):
        args = worker_command("tcp://10.0.0.5:9000", scratch=tmp_path / "s")
    assert args[args.index("--resources") + 1] == f"RAS={psutil.cpu_count()}"


def test_the_fake_engine_speeds_up_with_cores_as_hec_ras_2d_does():
    one = run_seconds(10.0, 1)
    assert one == 10.0 and run_seconds(10.0, 0) == 10.0 and run_seconds(10.0, None) == 10.0
    speedup = {c: one / run_seconds(10.0, c) for c in (2, 4, 8, 16)}
    assert 1.6 < speedup[2] < 1.8 and 2.4 < speedup[4] < 2.6 and 3.2 < speedup[8] < 3.4 and 3.9 < speedup[16] < 4.1
    # so a 16-core machine does more with 4 plans of 4 cores than with one plan of 16
    assert 4 / run_seconds(10.0, 4) > 2 / run_seconds(10.0, 8) > 1 / run_seconds(10.0, 16)


def test_the_staged_plan_runs_on_the_cores_set_and_the_source_is_not_written(demo, results):
    (demo.parent / "fake-ras.json").write_text(json.dumps({"p01": {"seconds": 0.5}}))
    before = folder_digest(demo.parent)
    with dask.config.set({"hecras.cores-per-plan": 4}):
        r = run_plan(Project(demo).plan("p01"), engine="fake", results_dir=results)
    assert r.ok
    log = r.log.read_text()
    assert f"({'success'}, {run_seconds(0.5, 4):g} s on 4 cores)" in log, log  # what the staged plan said
    assert folder_digest(demo.parent) == before
    assert "UNET D2 Cores=0" in (demo.parent / "Demo.p01").read_text()


def test_a_local_cluster_runs_as_many_plans_as_the_cores_allow(tmp_path):
    import psutil
    from distributed import Client

    from dask_hecras.batch import local_cluster

    with dask.config.set({"hecras.cores-per-plan": 1, "hecras.scratch": str(tmp_path / "s")}), \
            local_cluster(dashboard_address=":0") as cluster, Client(cluster) as client:
        slots = [w["resources"].get("RAS") for w in client.scheduler_info()["workers"].values()]
    assert sum(slots) == psutil.cpu_count()
