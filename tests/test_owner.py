"""The owner policy: colleagues come first. Decisions with injected idle time and CPU load."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from distributed import Client, LocalCluster

from dask_hecras import Project
from dask_hecras.batch import running_plans, submit
from dask_hecras.examples import make_project
from dask_hecras.owner import OwnerPlugin, OwnerPolicy

DAY = datetime(2026, 11, 23, 10, 30)  # a Monday morning
NIGHT = datetime(2026, 11, 23, 23, 15)


@pytest.mark.parametrize("idle,cpu,now,may_start,action,words", [
    (30, 5, DAY, False, "suspend", "owner is active"),
    (3600, 5, DAY, True, "run", "owner is away"),
    (3600, 80, DAY, False, "suspend", "80% of the CPU"),
    (30, 80, NIGHT, True, "run", "night window"),
    (None, 5, DAY, True, "run", "no interactive owner"),
    (30, 5, datetime(2026, 11, 23, 6, 59), True, "run", "night window"),
    (30, 5, datetime(2026, 11, 23, 7, 0), False, "suspend", "owner is active"),
])
def test_policy_decisions(idle, cpu, now, may_start, action, words):
    d = OwnerPolicy(idle_minutes=15, cpu_percent=30, night="19:00-07:00", on_return="suspend").decide(idle, cpu, now)
    assert (d.may_start, d.action) == (may_start, action) and words in d.reason


def test_policy_from_config_checks_the_rule():
    import dask.config

    with dask.config.set({"hecras.owner.on-return": "explode"}), pytest.raises(ValueError, match="on-return"):
        OwnerPolicy.from_config()


@pytest.mark.parametrize("uptime_days", [1, 24.8, 25, 49.7 + 1 / 24])
def test_idle_time_on_windows_is_right_at_any_uptime(uptime_days, monkeypatch):
    """GetLastInputInfo and GetTickCount are 32-bit millisecond counts: past 24.9 days they no
    longer fit a signed int, past 49.7 days they wrap. Five minutes idle reads five minutes."""
    import ctypes
    import sys

    from dask_hecras import owner

    from .fake_windows import FakeWindll

    fake = FakeWindll(uptime_ms=int(uptime_days * 86_400_000), idle_ms=300_000)
    assert owner.windows_idle_seconds(fake) == 300.0
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", fake, raising=False)
    assert owner.default_idle_seconds() == 300.0  # the branch a Windows worker takes
    assert fake.user32.GetLastInputInfo.calls == 2


def test_idle_time_on_windows_unreadable_is_none():
    from dask_hecras import owner

    from .fake_windows import FakeWindll

    fake = FakeWindll(uptime_ms=1000, idle_ms=0)
    fake.LASTINPUTINFO_SIZE = 24  # a structure Windows would refuse: GetLastInputInfo fails
    assert owner.windows_idle_seconds(fake) is None


def test_our_own_engines_do_not_count_as_other_programs_cpu(tmp_path):
    """HEC-RAS running flat out must not read as the owner's programs being busy, or the
    policy would suspend or requeue its own run."""
    import subprocess
    import sys

    from dask_hecras import owner

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # an engine using a whole core
    owner.RUNNING["run-Demo-p01"] = burner.pid
    try:
        meter = owner.OtherCpu()
        meter()
        readings = []
        for _ in range(3):
            time.sleep(1.0)
            readings.append((meter(), meter.ours))
    finally:
        owner.RUNNING.pop("run-Demo-p01", None)
        burner.kill()
        burner.wait()
    machine_share = 100 / (psutil.cpu_count() or 1)  # one core, in percent of the machine
    assert all(ours > 0.6 * machine_share for _, ours in readings), readings  # it was seen...
    assert min(other for other, _ in readings) < 0.5 * machine_share, readings  # ...and left out


class FileIdle:
    """Idle seconds read from a file the test writes: the owner at the keyboard, or not."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self):
        return float(Path(self.path).read_text())


class NoLoad:
    def __call__(self):
        return 0.0


def set_idle(path: Path, seconds: float) -> None:
    path.write_text(str(seconds))


def engine_processes(tmp_path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "dask_hecras.fake_ras" in cmd and str(tmp_path) in cmd:
            out.append(p)
    return out


@pytest.fixture
def owned_cluster(tmp_path):
    idle = tmp_path / "idle"
    set_idle(idle, 0)  # the owner is at the keyboard
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, resources={"RAS": 1},
                      dashboard_address=":0", env={"DASK_HECRAS__SCRATCH": str(tmp_path / "scratch")}) as cluster, \
            Client(cluster) as client:
        yield client, idle


def ras_slots(client) -> int:
    (w,) = client.scheduler_info()["workers"].values()
    return w["resources"].get("RAS")


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_no_plans_while_the_owner_works_and_suspend_on_return(owned_cluster, tmp_path):
    client, idle = owned_cluster
    policy = OwnerPolicy(idle_minutes=10, cpu_percent=90, night=None, on_return="suspend")
    client.register_plugin(OwnerPlugin(policy, interval=0.3, idle_seconds=FileIdle(idle), cpu_percent=NoLoad()))
    assert wait_for(lambda: ras_slots(client) == 0), "the owner is active: no RAS slot"
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 4}})
    batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results")
    time.sleep(2)
    assert not engine_processes(tmp_path), "no plan starts while the owner works"
    assert not list((tmp_path / "scratch").glob("Demo-p01-*")), "nothing is staged (copied) while the owner works"
    set_idle(idle, 3600)  # the owner goes home
    assert wait_for(lambda: len(engine_processes(tmp_path)) >= 2), "the plan starts once the owner is away"
    set_idle(idle, 0)  # ... and comes back for a forgotten umbrella
    assert wait_for(lambda: all(p.status() == psutil.STATUS_STOPPED for p in engine_processes(tmp_path))), \
        "Ras.exe's process tree is suspended"
    time.sleep(1.5)
    set_idle(idle, 3600)
    batch.wait(timeout=120)
    (r,) = batch.results()
    assert r.ok and r.run_seconds > 4 + 1.0 and r.paused_seconds >= 1.0, "the run was paused, then finished"
    events = [e for _, e in client.get_events("hecras") if e.get("action") == "owner"]
    assert [e["decision"] for e in events][:4] == ["no new plans", "takes plans", "no new plans", "suspended"]


def test_requeue_stops_the_run_and_it_runs_again(owned_cluster, tmp_path):
    """The owner comes back three times during one plan: each time its run is stopped and the
    plan goes back in the queue. That is not a failure: it spends none of the plan's retries."""
    client, idle = owned_cluster
    set_idle(idle, 3600)
    policy = OwnerPolicy(idle_minutes=10, cpu_percent=90, night=None, on_return="requeue")
    client.register_plugin(OwnerPlugin(policy, interval=0.3, idle_seconds=FileIdle(idle), cpu_percent=NoLoad()))
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 4}})
    batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results", retries=1)
    for _ in range(3):
        assert wait_for(lambda: len(engine_processes(tmp_path)) >= 2), "the plan (re)starts once the owner is away"
        set_idle(idle, 0)  # the owner is back: stop the run
        assert wait_for(lambda: not engine_processes(tmp_path)), "the run was stopped, its whole tree killed"
        time.sleep(1)
        set_idle(idle, 3600)
    batch.wait(timeout=120)
    (r,) = batch.results()
    assert r.ok and [a["status"] for a in r.attempts] == ["failed"] * 3 + ["succeeded"], r.attempts
    assert all("the PC's owner came back" in a["reason"] and a["problem"] == "cancelled" for a in r.attempts[:3])
    saved = json.loads((tmp_path / "results" / "Demo" / "p01" / "result.json").read_text())
    assert saved["status"] == "succeeded"
    (plan,) = batch.snapshot()["plans"]
    assert plan["attempt"] == 4 and plan["failed_runs"] == 0, "three requeues, none counted as a failed run"


def test_the_owner_never_reopens_a_worker_out_of_rotation(owned_cluster, tmp_path):
    """Two reasons close a PC's slot: its owner, and being out of rotation (no HEC-RAS here).
    Either one keeps it closed: the owner leaving does not undo the rotation, and restoring
    the worker does not open it while its owner works."""
    from dask_hecras.batch import restore

    client, idle = owned_cluster
    set_idle(idle, 3600)
    policy = OwnerPolicy(idle_minutes=10, cpu_percent=90, night=None, on_return="finish")
    client.register_plugin(OwnerPlugin(policy, interval=0.3, idle_seconds=FileIdle(idle), cpu_percent=NoLoad()))
    assert wait_for(lambda: ras_slots(client) == 1)
    prj = make_project(tmp_path / "project", n_plans=1)
    (r,) = submit(client, Project(prj).plans, engine="ras", results_dir=tmp_path / "results",
                  retries=0).wait(timeout=120).results()
    assert not r.ok and "not installed" in r.reason  # no HEC-RAS on this machine: out of rotation
    assert wait_for(lambda: ras_slots(client) == 0)

    set_idle(idle, 0)  # the owner comes and goes
    time.sleep(1.5)
    set_idle(idle, 3600)
    time.sleep(1.5)
    assert ras_slots(client) == 0, "the owner leaving reopened a worker out of rotation"

    set_idle(idle, 0)
    time.sleep(1.5)
    restore(client, results_dir=tmp_path / "results")
    time.sleep(1.5)
    assert ras_slots(client) == 0, "restore opened the slot while the owner works"
    set_idle(idle, 3600)
    assert wait_for(lambda: ras_slots(client) == 1), "in rotation and the owner away: the slot opens"


async def _add_owner_policy(idle_file: str, dask_worker=None) -> None:
    policy = OwnerPolicy(idle_minutes=10, cpu_percent=90, night=None, on_return="finish")
    await dask_worker.plugin_add(OwnerPlugin(policy, interval=0.3, idle_seconds=FileIdle(idle_file),
                                             cpu_percent=NoLoad()))


@pytest.fixture
def two_pcs(tmp_path):
    """Two office PCs (workers "0" and "1"), their owners away, six plans of 2 s submitted, both PCs busy."""
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, resources={"RAS": 1},
                      dashboard_address=":0", env={"DASK_HECRAS__SCRATCH": str(tmp_path / "scratch")}) as cluster, \
            Client(cluster) as client:
        for address, w in client.scheduler_info()["workers"].items():  # each PC its own owner
            set_idle(tmp_path / f"idle-{w['name']}", 3600)
            client.run(_add_owner_policy, str(tmp_path / f"idle-{w['name']}"), workers=[address])
        prj = make_project(tmp_path / "project", n_plans=6, behaviour={f"p{i:02d}": {"seconds": 2} for i in range(1, 7)})
        batch = submit(client, Project(prj).plans, results_dir=tmp_path / "results")
        assert wait_for(lambda: len(set(running_plans(client).values())) == 2), "both PCs run a plan"
        yield client, batch, tmp_path


def runs_per_pc(client, batch) -> dict[str, int]:
    names = {a: str(w["name"]) for a, w in client.scheduler_info()["workers"].items()}
    out = {"0": 0, "1": 0}
    for r in batch.results():
        for a in r.attempts:
            out[a["worker"]] += 1
    assert set(out) == set(names.values())
    return out


def test_plans_queued_on_a_pc_whose_owner_returns_move_to_a_free_pc(two_pcs):
    client, batch, folder = two_pcs
    set_idle(folder / "idle-0", 0)  # PC 0's owner is back: its run finishes, its queue moves to PC 1
    batch.wait(timeout=60)
    assert all(r.ok for r in batch.results())
    assert runs_per_pc(client, batch)["0"] <= 1, "PC 0 started plans while its owner worked"


def test_plans_waiting_on_busy_pcs_go_to_the_first_pc_that_frees_up(two_pcs):
    client, batch, folder = two_pcs
    for pc in ("0", "1"):
        set_idle(folder / f"idle-{pc}", 0)  # both owners back: nowhere to go, the runs in progress finish
    assert wait_for(lambda: not engine_processes(folder), timeout=30)
    time.sleep(1)
    assert not engine_processes(folder), "a plan started while every owner worked"
    set_idle(folder / "idle-1", 3600)  # PC 1's owner leaves: every waiting plan comes to PC 1
    batch.wait(timeout=60)
    assert all(r.ok for r in batch.results())
    assert runs_per_pc(client, batch) == {"0": 1, "1": 5}
