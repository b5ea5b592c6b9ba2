"""Plans on a real Dask cluster through the scheduler's plan queue: LocalCluster with worker
processes, no mocks of Dask."""

from __future__ import annotations

import json
import os
import time

import dask.config
import psutil
import pytest
from distributed import Client, LocalCluster

import dask_hecras
from dask_hecras import Project, ProjectError
from dask_hecras.batch import cluster_on_other_pcs, drain, local_cluster, open_batch, restore, running_plans, submit
from dask_hecras.examples import make_project
from dask_hecras.records import read_workers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("scratch")
    with dask.config.set({"hecras.scratch": str(scratch)}):  # the nanny hands its config to the workers
        with local_cluster(2, dashboard_address=":0") as c:
            c.scratch = scratch
            yield c


@pytest.fixture
def client(cluster, tmp_path):
    with Client(cluster) as c:
        yield c
        restore(c, results_dir=tmp_path / "restore")  # a test may take workers out of rotation


def project(tmp_path, n_plans, behaviour, name="Demo", folder=None):
    return make_project(tmp_path / (folder or name), n_plans=n_plans, name=name, behaviour=behaviour)


def all_attempts(results, prj, folder=None):
    out = {}
    for plan_dir in (results / (folder or prj.stem) / ".attempts").iterdir():
        out[plan_dir.name] = [json.loads(p.read_text()) for p in sorted(plan_dir.glob("*.json"))]
    return out


def wait_for(predicate, timeout=60.0, poll=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s")


def test_runs_respect_ras_slots_and_failures_retry_only_when_useful(client, tmp_path):
    prj = project(tmp_path, 6, {
        "p01": {"seconds": 1.5}, "p02": {"seconds": 0.3, "outcome": "unstable"},
        "p03": {"seconds": 0.3, "outcome": "crash"}, "p04": {"seconds": 1.0}, "p05": {"seconds": 0.5},
        "p06": {"seconds": 0.8},
    })
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, engine="fake", results_dir=results, retries=2)
    by_id = {r.plan_id: r for r in batch.results(timeout=240)}
    assert {k: r.status for k, r in by_id.items()} == {
        "p01": "succeeded", "p02": "failed", "p03": "failed", "p04": "succeeded", "p05": "succeeded",
        "p06": "succeeded"}
    attempts = all_attempts(results, prj)
    assert len(attempts["p02"]) == 1, "an unstable model is not retried"
    assert len(attempts["p03"]) == 3, "a crash runs retries + 1 times"
    assert [a["attempt"] for a in by_id["p03"].attempts] == [1, 2, 3]
    assert all(a["worker"] and a["attempt_id"].startswith(batch.id) for a in by_id["p03"].attempts)
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


def test_results_wait_and_a_snapshot_does_not(client, tmp_path):
    prj = project(tmp_path, 2, {"p01": {"seconds": 2}, "p02": {"seconds": 2}})
    batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results")
    assert set(batch.counts()) <= {"queued", "running"}, "right after submit nothing has ended"
    with pytest.raises(TimeoutError, match="not finished"):
        batch.results(timeout=0.5)
    assert [r.status for r in batch.results(timeout=120)] == ["succeeded", "succeeded"]
    assert batch.counts() == {"succeeded": 2} and batch.snapshot()["source"] == "queue"


def test_resubmission_skips_landed_plans_unless_their_inputs_changed_or_forced(client, tmp_path):
    prj = project(tmp_path, 3, {"p02": {"seconds": 0.2, "outcome": "crash"}})
    results = tmp_path / "results"
    first = submit(client, Project(prj).plans, results_dir=results, retries=0)
    assert [r.status for r in first.results(timeout=120)] == ["succeeded", "failed", "succeeded"]
    (prj.parent / "fake-ras.json").write_text("{}")  # the crash is fixed
    again = submit(client, Project(prj).plans, results_dir=results, retries=0)
    assert sorted(r.plan_id for r in again.skipped) == ["p01", "p03"]
    assert [r.status for r in again.results(timeout=120)] == ["succeeded"] * 3
    assert {r.plan_id: r.batch for r in again.results()} == {"p01": first.id, "p02": again.id, "p03": first.id}
    # an edited plan is a different plan: it runs again, the others stay skipped
    plan_file = prj.parent / "Demo.p03"
    plan_file.write_bytes(plan_file.read_bytes().replace(b"Plan Title=", b"Plan Title=Edited "))
    edited = submit(client, Project(prj).plans, results_dir=results)
    assert sorted(r.plan_id for r in edited.skipped) == ["p01", "p02"]
    assert {r.plan_id: r.batch for r in edited.results(timeout=120)}["p03"] == edited.id
    forced = submit(client, Project(prj).plans, results_dir=results, force=True)
    assert not forced.skipped and all(r.ok and r.batch == forced.id for r in forced.results(timeout=120))


def test_two_studies_with_the_same_project_name_never_share_results(client, tmp_path):
    """Two studies both have a River.prj (different plans behave differently); run into one
    results folder, each gets its own folder, and the second is not "already done"."""
    a = project(tmp_path, 2, {"p01": {"seconds": 0.2}, "p02": {"seconds": 0.2}}, name="River", folder="study-a/River")
    b = project(tmp_path, 2, {"p01": {"seconds": 0.2, "outcome": "unstable"}, "p02": {"seconds": 0.2}},
                name="River", folder="study-b/River")
    results = tmp_path / "results"
    first = submit(client, Project(a).plans, results_dir=results)
    assert all(r.ok for r in first.results(timeout=120))
    second = submit(client, Project(b).plans, results_dir=results, retries=0)
    assert not second.skipped, "another study's results counted as this one's"
    got = {r.plan_id: r for r in second.results(timeout=120)}
    assert got["p01"].status == "failed" and "unstable" in got["p01"].reason and got["p02"].ok
    assert {r.folder.parent for r in second.results()} == {results / "River_study-b"}, "named after the study"
    assert {r.folder.parent for r in first.results()} == {results / "River"}
    assert {p.name for p in results.iterdir() if not p.name.startswith(".")} == {"River", "River_study-b"}
    assert all(r.project_path == str(a) for r in first.results())
    assert all(r.project_path == str(b) for r in second.results())


def _pid(dask_worker=None):
    return os.getpid()


def test_two_users_with_the_same_project_at_once_each_get_their_own_batch(client, cluster, tmp_path):
    """Same project, submitted at once by two clients into two results folders with different
    timeouts: two batches, different tasks, each folder complete, each timeout honoured. (The
    margins leave a busy machine's engine start-up, seconds, well inside the short timeout.)"""
    prj = project(tmp_path, 2, {"p01": {"seconds": 20}, "p02": {"seconds": 0.3}})
    with Client(cluster) as other:
        mine = submit(client, Project(prj).plans, results_dir=tmp_path / "mine", timeout="8s", retries=0)
        theirs = submit(other, Project(prj).plans, results_dir=tmp_path / "theirs", timeout="1min", retries=0)
        assert mine.id != theirs.id
        mine_results = {r.plan_id: r for r in mine.results(timeout=120)}
        theirs_results = {r.plan_id: r for r in theirs.results(timeout=120)}
    assert not mine_results["p01"].ok and "Timed out after 8 s" in mine_results["p01"].reason
    assert mine_results["p02"].ok and all(r.ok for r in theirs_results.values())
    assert all(r.folder.is_relative_to(tmp_path / "mine") for r in mine_results.values())
    assert all(r.folder.is_relative_to(tmp_path / "theirs") for r in theirs_results.values())
    assert {a["batch"] for r in theirs_results.values() for a in r.attempts} == {theirs.id}
    assert {a["batch"] for r in mine_results.values() for a in r.attempts} == {mine.id}


def test_mistakes_are_refused_before_anything_is_submitted(client, tmp_path, demo):
    plans = Project(demo).plans
    assert submit(client, plans[:1], results_dir=tmp_path / "ok", timeout="90min").results(timeout=60)[0].ok
    for kwargs, words in [({"timeout": "90 minuets"}, "cannot read '90 minuets' as a duration"),
                          ({"retries": -1}, "retries must be"),
                          ({"engine": "ras.exe"}, "engine must be one of"),
                          ({"results_dir": demo.parent / "out"}, "inside the project folder")]:
        with pytest.raises(ValueError, match=words):
            submit(client, plans, **{"results_dir": tmp_path / "results", **kwargs})
    (demo.parent / "Terrain" / "Terrain.hdf").unlink()
    with pytest.raises(ProjectError, match="Terrain.hdf"):
        submit(client, plans, results_dir=tmp_path / "results")
    assert not (tmp_path / "results" / ".batches").exists(), "nothing reached the queue"


def test_a_worker_killed_mid_run_loses_no_plan(client, tmp_path):
    prj = project(tmp_path, 3, {"p01": {"seconds": 6}, "p02": {"seconds": 1}, "p03": {"seconds": 1}})
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, results_dir=results, retries=0)
    victim = wait_for(lambda: running_plans(client).get("Demo-p01"), 60)
    pid = client.run(_pid, workers=[victim])[victim]
    psutil.Process(pid).kill()  # the machine is gone; the nanny brings a new worker up
    got = {r.plan_id: r for r in batch.results(timeout=180)}
    assert all(r.ok for r in got.values()), {k: r.reason for k, r in got.items()}
    p01 = [a["status"] for a in got["p01"].attempts]
    assert p01 == ["running", "succeeded"], f"a lost run is recorded as it was left, and is no failed run: {p01}"
    assert sorted(p.name for p in (results / "Demo").iterdir() if not p.name.startswith(".")) == ["p01", "p02", "p03"]


def test_a_run_whose_engine_finished_is_landed_by_the_pcs_next_worker_not_run_again(client, tmp_path):
    """The worker dies after the engine wrote its final results but before they landed (Ras.exe
    still post-processing): the PC's next worker lands them; the engine does not run again."""
    journal = tmp_path / "journal.txt"
    client.run(lambda: os.environ.__setitem__("FAKE_RAS_JOURNAL", str(journal)))
    prj = project(tmp_path, 1, {"p01": {"seconds": 0.5, "post-seconds": 20}})
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, results_dir=results)
    wait_for(lambda: journal.is_file() and "\nend " in "\n" + journal.read_text(), 60)  # results are final
    victim = wait_for(lambda: running_plans(client).get("Demo-p01"), 10)
    pid = client.run(_pid, workers=[victim])[victim]
    psutil.Process(pid).kill()
    (r,) = batch.results(timeout=120)
    client.run(lambda: os.environ.pop("FAKE_RAS_JOURNAL", None))
    assert r.ok and r.summary is not None and r.summary.is_file()
    lines = journal.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["start", "end"], f"the engine ran again: {lines}"
    assert [(a["attempt"], a["status"]) for a in r.attempts] == [(1, "succeeded")]


def test_detached_batch_finishes_after_its_client_closed(cluster, tmp_path):
    prj = project(tmp_path, 4, {"p01": {"seconds": 1.5}, "p02": {"seconds": 1.0}})
    results = tmp_path / "results"
    with Client(cluster) as first:
        batch_id = submit(first, Project(prj).plans, results_dir=results).id
    # The notebook is closed. A later session finds the batch on disk.
    later = open_batch(results)
    assert later.id == batch_id
    assert [r.status for r in later.results(timeout=120)] == ["succeeded"] * 4
    assert later.snapshot()["source"] == "ledger" and later.dataset().sizes["plan"] == 4


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


def _reported_engines(dask_scheduler=None) -> dict:
    from dask_hecras.queue import queue_of

    return dict(queue_of(dask_scheduler).engines)


def test_a_worker_without_hecras_gets_no_hecras_plan(client, tmp_path):
    """One worker finds no HEC-RAS; the other has a stand-in Ras.exe. Every plan goes to the one
    that has it (the queue places plans by what workers report), and succeeds."""
    import sys

    from dask_hecras.worker import report_now

    from .test_ras_exe import fake_install

    good_root, bad_root = tmp_path / "good", tmp_path / "bad"
    fake_install(good_root, "6.6", script=f'#!/bin/sh\nexec "{sys.executable}" -m dask_hecras.fake_ras "$@"\n')
    bad_root.mkdir()
    bad, good = sorted(client.scheduler_info()["workers"])
    client.run(lambda: dask.config.set({"hecras.ras-roots": [str(bad_root)]}) and None, workers=[bad])
    client.run(lambda: dask.config.set({"hecras.ras-roots": [str(good_root)]}) and None, workers=[good])
    client.run(report_now)
    wait_for(lambda: list((client.run_on_scheduler(_reported_engines).get(good) or {}).get("ras") or []) == ["6.6"], 30)
    prj = project(tmp_path, 4, {})
    results = tmp_path / "results"
    batch = submit(client, Project(prj).plans, engine="ras", results_dir=results, retries=2, timeout="1h")
    assert all(r.ok for r in batch.results(timeout=180)), [r.reason for r in batch.results()]
    good_name = str(client.scheduler_info()["workers"][good]["name"])
    assert {r.worker for r in batch.results()} == {good_name}
    assert all(len(r.attempts) == 1 for r in batch.results()), "no plan was tried on the worker without HEC-RAS"
    client.run(lambda: dask.config.set({"hecras.ras-roots": []}) and None)
    client.run(report_now)


def test_drain_retires_a_worker_after_its_running_plan(tmp_path):
    with dask.config.set({"hecras.scratch": str(tmp_path / "scratch")}), \
            local_cluster(2, dashboard_address=":0") as own, Client(own) as client:
        prj = project(tmp_path, 4, {"p01": {"seconds": 4}, "p02": {"seconds": 1}, "p03": {"seconds": 1},
                                    "p04": {"seconds": 1}})
        results = tmp_path / "results"
        batch = submit(client, Project(prj).plans, results_dir=results)
        victim = wait_for(lambda: running_plans(client).get("Demo-p01"), 60)
        drain(client, victim, results_dir=results)
        assert all(r.ok for r in batch.results(timeout=180))
        p01 = next(r for r in batch.results() if r.plan_id == "p01")
        assert len(p01.attempts) == 1, "the running plan was let finish, not restarted"
        wait_for(lambda: victim not in client.scheduler_info()["workers"], 30)
        assert [w["state"] for w in read_workers(results)] == ["draining"]


def test_a_queue_without_the_preload(tmp_path):
    """A scheduler started without --preload dask_hecras.scheduler: submit installs the queue."""
    with dask.config.set({"hecras.scratch": str(tmp_path / "scratch")}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=True, resources={"RAS": 1},
                         dashboard_address=":0") as plain, Client(plain) as client:
        prj = project(tmp_path, 2, {})
        batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results")
        assert [r.status for r in batch.results(timeout=120)] == ["succeeded"] * 2


def _default_scratch():
    from distributed import get_worker

    from dask_hecras.staging import scratch_root

    with dask.config.set({"hecras.scratch": None}):
        return str(scratch_root()), get_worker().local_directory


def test_scratch_defaults_to_the_workers_local_directory(client):
    for addr in client.scheduler_info()["workers"]:
        root, local = client.submit(_default_scratch, workers=[addr], pure=False).result(timeout=60)
        assert root == os.path.join(local, "hecras")


def test_run_folders_go_once_their_run_is_over(client, cluster, tmp_path):
    """A batch leaves nothing in the workers' scratch but the cache and failed runs kept for inspection."""
    prj = project(tmp_path, 3, {"p02": {"seconds": 0.1, "outcome": "crash"}})
    batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results", retries=0)
    got = {r.plan_id: r for r in batch.results(timeout=120)}
    kept = got["p02"].attempts and [p for p in cluster.scratch.iterdir() if (p / ".failed").exists()
                                     and p.name.startswith("Demo-p02")]
    assert kept, "the failed run's folder is kept"
    left = [p.name for p in cluster.scratch.iterdir() if p.name.startswith("Demo-p0") and not (p / ".failed").exists()]
    assert not left, left


def test_a_notebooks_dask_is_left_as_it_was(tmp_path):
    """With a LocalCluster the scheduler, and so the queue's own client, runs in the user's
    process: that client must never become their default one, nor leave its settings in their
    Dask config once their cluster closed (their next ``.compute()`` then failed: "Requested
    dask.distributed scheduler but no Client active")."""
    import dask.array as da
    from distributed import default_client

    assert dask.config.get("scheduler", None) is None
    with dask.config.set({"hecras.scratch": str(tmp_path / "scratch")}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=True, resources={"RAS": 1},
                         dashboard_address=":0") as c, Client(c) as client:  # submit installs the queue
        prj = project(tmp_path, 2, {})
        batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results")
        assert [r.status for r in batch.results(timeout=120)] == ["succeeded"] * 2
        assert default_client() is client, "the queue's client took the user's place"
        assert not cluster_on_other_pcs(client)  # so a path on this PC's own disk would be fine
    assert dask.config.get("scheduler", None) is None, "a closed client's setting left behind"
    assert da.ones(4).sum().compute() == 4
    ds = dask_hecras.open_results(tmp_path / "results")
    assert list(ds.plan.values) == ["p01", "p02"]
