"""Plans on a real Dask cluster: LocalCluster with worker processes, no mocks of Dask."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest
from distributed import Client, LocalCluster

import dask_hecras
from dask_hecras import Project
from dask_hecras.batch import drain, open_batch, restore, running_plans, submit
from dask_hecras.examples import make_project
from dask_hecras.records import read_workers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("scratch")
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, resources={"RAS": 1},
                      dashboard_address=":0", env={"DASK_HECRAS__SCRATCH": str(scratch)}) as c:
        yield c


@pytest.fixture
def client(cluster, tmp_path):
    with Client(cluster) as c:
        yield c
        restore(c, results_dir=tmp_path / "restore")  # a test may take workers out of rotation


def project(tmp_path, n_plans, behaviour, name="Demo"):
    return make_project(tmp_path / name, n_plans=n_plans, name=name, behaviour=behaviour)


def all_attempts(results, prj):
    out = {}
    for folder in (results / prj.stem / ".attempts").iterdir():
        out[folder.name] = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return out


def test_runs_respect_ras_slots_and_failures_retry_only_when_useful(client, tmp_path):
    prj = project(tmp_path, 6, {
        "p01": {"seconds": 1.5}, "p02": {"seconds": 0.3, "outcome": "unstable"},
        "p03": {"seconds": 0.3, "outcome": "crash"}, "p04": {"seconds": 1.0}, "p05": {"seconds": 0.5},
        "p06": {"seconds": 0.8},
    })
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, engine="fake", results_dir=results, retries=2)
    assert [f.key for f in batch.futures][0].startswith("summarise-Demo-")
    batch.wait(timeout=240)
    by_id = {r.plan_id: r for r in batch.results()}
    assert {k: r.status for k, r in by_id.items()} == {
        "p01": "succeeded", "p02": "failed", "p03": "failed", "p04": "succeeded", "p05": "succeeded",
        "p06": "succeeded"}
    attempts = all_attempts(results, prj)
    assert len(attempts["p02"]) == 1, "an unstable model is not retried"
    assert len(attempts["p03"]) == 3, "a crash runs retries + 1 times"
    assert [a["attempt"] for a in by_id["p03"].attempts] == [1, 2, 3]
    assert all(a["worker"] for a in by_id["p03"].attempts)
    # never two engine runs at once on one worker with RAS=1
    runs_by_worker: dict[str, list] = {}
    for records in attempts.values():
        for a in records:
            runs_by_worker.setdefault(a["worker"], []).append((a["run_start"], a["run_end"]))
    assert len(runs_by_worker) == 2
    for spans in runs_by_worker.values():
        spans.sort()
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert s2 >= e1, f"two runs overlapped on one RAS=1 worker: {spans}"
    ds = batch.dataset()
    assert sorted(ds["plan"].values) == ["p01", "p04", "p05", "p06"]


def test_resubmission_skips_finished_plans_unless_forced(client, tmp_path):
    prj = project(tmp_path, 3, {"p02": {"seconds": 0.2, "outcome": "crash"}})
    results = tmp_path / "results"
    first = submit(client, Project(prj).plans, results_dir=results, retries=0).wait(timeout=120)
    assert [r.status for r in first.results()] == ["succeeded", "failed", "succeeded"]
    (prj.parent / "fake-ras.json").write_text("{}")  # the crash is fixed
    again = submit(client, Project(prj).plans, results_dir=results, retries=0)
    assert sorted(r.plan_id for r in again.skipped) == ["p01", "p03"] and len(again.futures) == 1
    again.wait(timeout=120)
    assert [r.status for r in again.results()] == ["succeeded"] * 3
    forced = submit(client, Project(prj).plans, results_dir=results, force=True).wait(timeout=120)
    assert not forced.skipped and len(forced.futures) == 3
    assert all(r.ok and r.batch == forced.id for r in forced.results())


def test_a_worker_killed_mid_run_does_not_lose_the_plan(client, tmp_path):
    prj = project(tmp_path, 3, {"p01": {"seconds": 6}, "p02": {"seconds": 1}, "p03": {"seconds": 1}})
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, results_dir=results, retries=1)
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = running_plans(client).get("run-Demo-p01")
        time.sleep(0.2)
    assert victim, "p01 never started"
    pid = client.run(os.getpid, workers=[victim])[victim]
    psutil.Process(pid).kill()  # the machine is gone; the nanny brings a new worker up
    batch.wait(timeout=180)
    results_ = {r.plan_id: r for r in batch.results()}
    assert all(r.ok for r in results_.values()), {k: r.reason for k, r in results_.items()}
    assert results_["p01"].worker  # it finished on a live worker
    assert len(list((results / "Demo").glob("p01*"))) == 1, "nothing duplicated in results_dir"


def test_a_finished_plan_is_not_run_again_when_its_worker_is_lost(client, tmp_path):
    """Dask computes a finished key again when the only worker holding it dies (a PC switched
    off overnight). The plan's results are already whole in results_dir: it is not run again."""
    prj = project(tmp_path, 2, {"p01": {"seconds": 0.5}, "p02": {"seconds": 0.5}})
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, results_dir=results, retries=1).wait(timeout=120)
    first = {r.plan_id: r for r in batch.results()}
    assert all(r.ok for r in first.values())
    kept = {p.name: p.stat().st_mtime_ns for p in (results / "Demo" / "p01").iterdir()}
    key = next(f.key for f in batch.futures if f.key.endswith("p01"))
    (holder,) = client.who_has()[key]
    pid = client.run(os.getpid, workers=[holder])[holder]
    psutil.Process(pid).kill()  # the nanny starts a new, empty worker
    deadline = time.monotonic() + 60
    while holder in client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.1)
    batch.wait(timeout=120)
    again = {r.plan_id: r for r in batch.results()}
    assert again["p01"].ok and again["p01"].run_start == first["p01"].run_start, "p01 ran again"
    assert len(all_attempts(results, prj)["p01"]) == 1, "one engine run of p01"
    assert {p.name: p.stat().st_mtime_ns for p in (results / "Demo" / "p01").iterdir()} == kept


def test_detached_batch_finishes_after_its_client_closed(cluster, tmp_path):
    prj = project(tmp_path, 4, {"p01": {"seconds": 1.5}, "p02": {"seconds": 1.0}})
    results = tmp_path / "results"
    with Client(cluster) as first:
        batch = submit(first, Project(prj).plans, results_dir=results, detach=True)
        batch_id = batch.id
    del batch
    # The notebook is closed. A later session finds the batch on disk.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        later = open_batch(results)
        if all(r.status in ("succeeded", "failed") for r in later.results()):
            break
        time.sleep(0.5)
    assert later.id == batch_id
    assert [r.status for r in later.results()] == ["succeeded"] * 4
    assert later.dataset().sizes["plan"] == 4


def test_plain_client_map_works_as_written(client, tmp_path):
    prj = project(tmp_path, 3, {"p02": {"seconds": 0.2, "outcome": "crash"}})
    results = tmp_path / "results"
    plans = Project(prj).plans
    futures = client.map(dask_hecras.run_plan, plans, engine="fake", results_dir=results,
                         resources={"RAS": 1}, retries=2)
    done = client.gather(futures, errors="skip")
    assert sorted(r.plan_id for r in done) == ["p01", "p03"] and all(r.ok for r in done)
    failed = futures[1]
    assert failed.status == "error"
    exc = failed.exception()
    assert isinstance(exc, dask_hecras.RetryableFailure) and exc.result.attempt == 3
    assert len(exc.result.attempts) == 3


def test_a_worker_without_hecras_is_taken_out_of_rotation(client, tmp_path):
    """One worker finds no HEC-RAS; the other has a stand-in Ras.exe. Every plan still succeeds,
    and the broken worker gets no more plans."""
    import sys

    import dask.config

    from .test_ras_exe import fake_install

    good_root, bad_root = tmp_path / "good", tmp_path / "bad"
    fake_install(good_root, "6.6", script=f'#!/bin/sh\nexec "{sys.executable}" -m dask_hecras.fake_ras "$@"\n')
    bad_root.mkdir()
    bad, good = sorted(client.scheduler_info()["workers"])
    client.run(lambda: dask.config.set({"hecras.ras-roots": [str(bad_root)]}) and None, workers=[bad])
    client.run(lambda: dask.config.set({"hecras.ras-roots": [str(good_root)]}) and None, workers=[good])
    prj = project(tmp_path, 4, {})
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, engine="ras", results_dir=results, retries=2).wait(timeout=180)
    assert all(r.ok for r in batch.results()), [r.reason for r in batch.results()]
    good_name = str(client.scheduler_info()["workers"][good]["name"])
    assert {r.worker for r in batch.results()} == {good_name}
    slots = {a: w["resources"].get("RAS") for a, w in client.scheduler_info()["workers"].items()}
    assert slots[bad] == 0 and slots[good] == 1
    (standing,) = [w for w in read_workers(results) if w["address"] == bad]
    assert standing["state"] == "out of rotation" and "not installed" in standing["reason"]
    client.run(lambda: dask.config.set({"hecras.ras-roots": []}) and None)


def test_drain_retires_a_worker_after_its_running_plan(tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, resources={"RAS": 1},
                      dashboard_address=":0") as own, Client(own) as client:
        prj = project(tmp_path, 4, {"p01": {"seconds": 4}, "p02": {"seconds": 1}, "p03": {"seconds": 1},
                                    "p04": {"seconds": 1}})
        results = tmp_path / "results"
        batch = submit(client, Project(prj).plans, results_dir=results)
        deadline = time.monotonic() + 60
        victim = None
        while victim is None and time.monotonic() < deadline:
            victim = running_plans(client).get("run-Demo-p01")
            time.sleep(0.1)
        assert victim
        drain(client, victim, results_dir=results)
        batch.wait(timeout=180)
        assert all(r.ok for r in batch.results())
        p01 = next(r for r in batch.results() if r.plan_id == "p01")
        assert len(p01.attempts) == 1, "the running plan was let finish, not restarted"
        deadline = time.monotonic() + 30
        while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert victim not in client.scheduler_info()["workers"], "the drained worker retired"
        assert [w["state"] for w in read_workers(results)] == ["draining"]


def test_a_run_placed_away_from_its_staged_files_stages_them_itself(client, tmp_path):
    """Dask may run the run task on another worker than the staging (stealing, a slot that
    closed, a lost worker): the run stages the plan again there and says so. Even on the
    same PC it does not use the other worker's folder, which that worker may remove."""
    from dask_hecras.batch import run_task
    from dask_hecras.pipeline import stage_step

    prj = project(tmp_path, 2, {})
    results = tmp_path / "results"
    a, b = sorted(client.scheduler_info()["workers"])
    plan, other = Project(prj).plans
    staged = client.submit(stage_step, plan, results_dir=results, workers=[a], key="stage-here")
    ran = client.submit(run_task, plan, staged, results_dir=str(results), workers=[b], resources={"RAS": 1})
    r = ran.result(timeout=120)
    assert r.ok and r.restaged and r.attempts[-1]["restaged"]
    staged_here = client.submit(stage_step, other, results_dir=results, workers=[a])
    same = client.submit(run_task, other, staged_here, results_dir=str(results), workers=[a], resources={"RAS": 1})
    assert same.result(timeout=120).ok and not same.result().restaged  # the worker that staged it


def _default_scratch():
    import dask.config
    from distributed import get_worker

    from dask_hecras.staging import scratch_root

    with dask.config.set({"hecras.scratch": None}):
        return str(scratch_root()), get_worker().local_directory


def test_scratch_defaults_to_the_workers_local_directory(client):
    for addr in client.scheduler_info()["workers"]:
        root, local = client.submit(_default_scratch, workers=[addr], pure=False).result(timeout=60)
        assert root == os.path.join(local, "hecras")


def test_a_staged_folder_is_removed_once_its_run_is_over_wherever_it_ran(client, tmp_path):
    """A plan staged on one PC and run on another (it restages there) leaves nothing on the
    first PC's disk once Dask forgets the stage result; a failed run's folder is kept."""
    from dask_hecras.batch import StagingCleanup, run_task, stage_task

    client.register_plugin(StagingCleanup())
    prj = project(tmp_path, 2, {"p02": {"seconds": 0.1, "outcome": "crash"}})
    results = str(tmp_path / "results")
    ok, crash = Project(prj).plans
    a, b = sorted(client.scheduler_info()["workers"])

    staged = client.submit(stage_task, ok, results_dir=results, workers=[a], key="stage-Demo-p01-cleanup")
    folder = staged.result(timeout=60).run_dir
    ran = client.submit(run_task, ok, staged, results_dir=results, workers=[b], resources={"RAS": 1})
    r = ran.result(timeout=120)
    assert r.ok and r.restaged
    del staged, ran  # (Dask may drop worker a's copy of the stage result even before this)
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not folder.exists(), "the unused staged folder stayed on the first PC"

    staged = client.submit(stage_task, crash, results_dir=results, workers=[a], key="stage-Demo-p02-cleanup")
    ran = client.submit(run_task, crash, staged, results_dir=results, workers=[a], resources={"RAS": 1}, retries=0)
    assert ran.exception(timeout=120) is not None
    kept = ran.exception().result.scratch
    assert kept == staged.result().run_dir and (kept / ".failed").is_file()
    del staged, ran
    time.sleep(2)
    assert kept.is_dir(), "a failed run's folder is kept for inspection"

