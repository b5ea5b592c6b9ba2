"""A batch that cannot be lost, tried by breaking things on purpose: real ``dask scheduler`` and
``dask worker`` processes (started here, as an office starts them), killed with SIGKILL by the
pids started; a results folder made read-only or full for a while.

What is counted, every time: plans lost (must be 0), plans whose engine ran to success more
than once (0), engine starts without an attempt record (0), engines alive after the batch (0).
The fake engine's journal (``$FAKE_RAS_JOURNAL``) is the independent record of what the
engines really did.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import dask.config
import psutil
import pytest
from distributed import Client

from dask_hecras import Project, ledger
from dask_hecras.batch import open_batch, submit
from dask_hecras.examples import make_project

from .conftest import REPO, connect

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Office:
    """A scheduler and workers as separate processes of their own, on this machine."""

    def __init__(self, folder: Path, **settings: str):
        self.folder = folder
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True)
        self.journal = folder / "journal.txt"
        self.port, self.dash = free_port(), free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "FAKE_RAS_JOURNAL": str(self.journal),
                    "DASK_HECRAS__QUEUE__STATE": str(folder / "scheduler-state.json"),
                    "DASK_HECRAS__QUEUE__HEARTBEAT": "1s", "DASK_HECRAS__WORKER__RESTART_DELAY": "1s",
                    "DASK_HECRAS__WORKER__PORT": "0",  # several PCs' workers on this one machine
                    "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "False",
                    **{f"DASK_HECRAS__{k.upper()}": v for k, v in settings.items()}}
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, role: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{role}.log", "ab")
        p = subprocess.Popen(args, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[role] = p
        return p

    def scheduler(self) -> subprocess.Popen:
        return self._start("scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--dashboard-address", f"127.0.0.1:{self.dash}",
                                         "--preload", "dask_hecras.scheduler"])

    def worker(self, name: str, supervised: bool = False, preload: tuple[str, ...] = (),
               env: dict | None = None) -> subprocess.Popen:
        """A plain ``dask worker`` (its nanny starts it again when it dies), or, ``supervised``, the
        ``dask-hecras worker`` an office PC runs (which starts ``dask worker`` again when it ends)."""
        scratch = self.folder / name / "scratch"  # each PC its own disk
        if supervised:
            args = [str(BIN / "dask-hecras"), "worker", self.address, "--name", name, "--scratch", str(scratch),
                    "--log", str(self.logs / f"{name}-dask.log")]
        else:
            args = [str(BIN / "dask"), "worker", self.address, "--name", name, "--nworkers", "1", "--nthreads", "2",
                    "--resources", "RAS=1", "--no-dashboard", "--local-directory", str(self.folder / name)]
            for module in (*preload, "dask_hecras.worker"):  # the test's hooks first: before the sweep starts
                args += ["--preload", module]
        return self._start(name, args, {"DASK_HECRAS__SCRATCH": str(scratch), **(env or {})})

    def client(self, timeout: float = 60) -> Client:
        return connect(self.address, within=timeout, explain=self.tails, timeout="5s")

    def engines(self) -> list[psutil.Process]:
        """Fake engine processes of this office still alive."""
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "dask_hecras.fake_ras" in cmd and str(self.folder) in cmd:
                found.append(p)
        return found

    def journal_lines(self) -> list[list[str]]:
        return [line.split() for line in self.journal.read_text().splitlines()] if self.journal.is_file() else []

    def tails(self, lines: int = 30) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            out += [f"----- {log.name} -----", *text[-lines:]]
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        for e in self.engines():
            e.kill()


@pytest.fixture
def office(tmp_path):
    made = []

    def make(**settings) -> Office:
        o = Office(tmp_path / "office", **settings)
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()
        print(o.tails())  # shown when the test failed


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def check_nothing_lost_or_repeated(o: Office, batch, results: Path, prj: Path) -> dict:
    """The counts the issue asks for; returns them for the test's report."""
    plans = Project(prj).plans
    got = batch.results(timeout=900)
    assert len(got) == len(plans)
    lost = [r.plan_id for r in got if not r.ok]
    assert not lost, {r.plan_id: r.reason for r in got if not r.ok}
    lines = o.journal_lines()
    successes = Counter(line[1] for line in lines if line[0] == "end" and line[2] == "success")
    assert not [p for p, n in successes.items() if n > 1], f"engines ran to success more than once: {successes}"
    records = [json.loads(p.read_text()) for p in (results / prj.stem / ".attempts").glob("*/*.json")]
    recorded = {r["run_folder"] for r in records}
    starts = [line[3] for line in lines if line[0] == "start"]
    assert set(starts) <= recorded, f"engine starts without an attempt record: {set(starts) - recorded}"
    for r in got:
        mine = [a for a in records if a["batch"] == batch.id and Path(a["run_folder"]).name.startswith(f"Demo-{r.plan_id}-")]
        ok = [a for a in mine if a["status"] == "succeeded"]
        assert len(ok) == 1 and ok[0]["attempt_id"] == r.attempt_id, (r.plan_id, mine)
    leftovers = [p.name for p in (results / prj.stem).iterdir() if p.name.startswith(".") and
                 p.name not in (".attempts", ".project.json")]
    assert not leftovers, f"half-landed folders left behind: {leftovers}"
    alive = wait_for(lambda: not o.engines() or None, 10, "no engine alive after the batch") if o.engines() else True
    assert alive and not o.engines()
    st = ledger.status(results, batch.id)
    assert st.finished and st.counts() == {"succeeded": len(plans)}
    return {"plans": len(plans), "engine starts": len(starts), "engine successes": sum(successes.values()),
            "attempt records": len([a for a in records if a["batch"] == batch.id])}


def test_workers_killed_every_few_seconds_lose_no_plan_and_run_none_twice(office, tmp_path):
    """60 plans of 1-4 s on 4 workers; a worker process is SIGKILLed every 3-5 s and its nanny
    starts it again: 0 plans lost, 0 engines run to success twice, every engine start recorded,
    no engine alive after the batch."""
    rng = random.Random(11)
    prj = make_project(tmp_path / "project", n_plans=60,
                       behaviour={f"p{i:02d}": {"seconds": round(rng.uniform(1, 4), 1)} for i in range(1, 61)})
    o = office()
    o.scheduler()
    for i in range(4):
        o.worker(f"pc{i}")
    results = tmp_path / "results"
    with o.client() as client:
        client.wait_for_workers(4, timeout=120)
        started = time.monotonic()
        batch = submit(client, Project(prj).plans, results_dir=results, retries=2)
        kills = 0
        while not batch.done():
            time.sleep(rng.uniform(3, 5))
            workers = list(client.scheduler_info()["workers"])
            if not workers:
                continue
            victim = rng.choice(workers)
            try:
                pid = client.run(os.getpid, workers=[victim], on_error="raise")[victim]
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except Exception:  # it died or left meanwhile
                pass
        figures = check_nothing_lost_or_repeated(o, batch, results, prj)
        snap = batch.snapshot()
        lost = sum(p["lost"] for p in snap["plans"])
    print(f"{kills} workers killed in {time.monotonic() - started:.0f} s; {lost} runs lost with them and run "
          f"again; {figures}")
    assert kills >= 8, "the test broke too little to show anything"


def test_the_scheduler_killed_mid_batch_resumes_by_itself(office, tmp_path):
    """The scheduler is SIGKILLed mid-batch and started again with the same preload: the batch
    finishes by itself, no landed plan runs again, and `dask-hecras status` tells the truth at
    every moment (never counts a plan that has not landed; says when the scheduler is gone)."""
    rng = random.Random(5)
    prj = make_project(tmp_path / "project", n_plans=20,
                       behaviour={f"p{i:02d}": {"seconds": round(rng.uniform(2, 4), 1)} for i in range(1, 21)})
    o = office(queue__lost_grace="10s")
    o.scheduler()
    for i in range(3):
        o.worker(f"pc{i}", supervised=True)  # an office PC: starts its Dask worker again when it ends
    results = tmp_path / "results"
    seen: list[tuple[float, int, bool | None]] = []
    stop = threading.Event()

    with o.client() as client:
        client.wait_for_workers(3, timeout=120)
        batch = submit(client, Project(prj).plans, results_dir=results, retries=2)
        batch_id = batch.id

        def watch() -> None:  # what `dask-hecras status` would say, over and over
            with dask.config.set({"hecras.queue.heartbeat": "1s"}):
                while not stop.is_set():
                    st = ledger.status(results, batch_id)
                    landed = {p.plan for p in st.plans if p.state == "succeeded"}
                    for plan in landed:  # only what really landed for this batch
                        saved = json.loads((Path(st.plans[0].folder).parent / plan / "result.json").read_text())
                        assert saved["batch"] == batch_id and saved["status"] == "succeeded"
                    seen.append((time.monotonic(), len(landed), st.alive))
                    time.sleep(0.3)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_for(lambda: batch.counts().get("succeeded", 0) >= 5, 180, "five plans to land")
        landed_before = {p["plan"] for p in batch.snapshot()["plans"] if p["state"] == "succeeded"}
        os.kill(o.procs["scheduler"].pid, signal.SIGKILL)
        killed = time.monotonic()
        o.procs["scheduler"].wait(timeout=10)
    time.sleep(12)  # long enough for status to see that nobody records the batch any more
    r = subprocess.run([str(BIN / "dask-hecras"), "status", str(results)], capture_output=True, text=True,
                       env={**o.env}, timeout=60)
    assert "NOT RUNNING" in r.stdout and "gone" in r.stdout, r.stdout
    o.scheduler()  # the same command, the same preload: nobody submits anything again
    with o.client() as client:
        later = open_batch(results, client=client)
        assert later.id == batch_id
        got = later.results(timeout=600)
        stop.set()
        watcher.join(timeout=10)
        figures = check_nothing_lost_or_repeated(o, later, results, prj)
    starts = Counter(line[1].split(".")[1] for line in o.journal_lines() if line[0] == "start")
    assert all(starts[p] == 1 for p in landed_before), f"plans landed before the kill ran again: {starts}"
    counts = [n for _, n, _ in seen]
    assert counts == sorted(counts), "status never counts a plan as landed and then not"
    down = [alive for t, _, alive in seen if killed + 9 < t < killed + 12]
    assert down and not any(down), "while nobody records the batch, status says it is not running"
    assert seen[-1][2] is True or ledger.status(results, batch_id).finished
    print(f"landed before the kill: {sorted(landed_before)}; {figures}; {len(got)} results")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _can_mount(folder: Path) -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        return "making a folder read-only or full needs root and mount (Linux)"
    probe = folder / "probe"
    probe.mkdir(parents=True)
    try:
        _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe))
        subprocess.run(["umount", str(probe)], check=True, timeout=30)
    except (subprocess.CalledProcessError, OSError) as e:
        return f"cannot mount here: {getattr(e, 'stderr', b'') or e}"
    finally:
        probe.rmdir()
    return None


def fill(path: Path) -> None:
    """Fill the disk that holds ``path`` to the last byte (unbuffered: nothing fails on close)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 4096, 1):
            block = b"\0" * chunk
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(path.parent).free < 1 << 20, "the disk did not fill up"


@pytest.mark.parametrize("trouble", ["read-only", "full"])
def test_a_results_share_unwritable_for_a_while_costs_no_engine_run(office, tmp_path, trouble):
    """The results folder turns read-only (or fills up) for 10 s mid-batch. Finished runs keep
    their results in their run folders and land once the folder can be written again: every
    plan lands, no engine runs twice."""
    reason = _can_mount(tmp_path)
    if reason:
        pytest.skip(reason)
    prj = make_project(tmp_path / "project", n_plans=8,
                       behaviour={f"p{i:02d}": {"seconds": 1 + (i % 3) * 0.5} for i in range(1, 9)})
    results = tmp_path / "results"
    results.mkdir()
    filler = results / "filler"
    if trouble == "full":
        _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(results))
    o = office(landing_patience="2s", queue__landing_retry="2s")
    o.scheduler()
    for i in range(2):
        o.worker(f"pc{i}")
    states: set[str] = set()
    try:
        with o.client() as client:
            client.wait_for_workers(2, timeout=120)
            batch = submit(client, Project(prj).plans, results_dir=results, retries=0)
            wait_for(lambda: batch.counts().get("succeeded", 0) >= 1, 120, "a plan to land")
            if trouble == "read-only":
                _mount("--bind", str(results), str(results))
                _mount("-o", "remount,bind,ro", str(results))
            else:
                fill(filler)
            t = time.monotonic()
            while time.monotonic() - t < 10:
                states |= {p["state"] for p in batch.snapshot()["plans"]}
                time.sleep(0.2)
            if trouble == "read-only":
                subprocess.run(["umount", "-l", str(results)], check=True, timeout=30)
            else:
                filler.unlink()
            figures = check_nothing_lost_or_repeated(o, batch, results, prj)
            starts = Counter(line[1] for line in o.journal_lines() if line[0] == "start")
            assert set(starts.values()) == {1}, f"an engine ran twice: {starts}"
            assert "landing" in states, f"no run had to wait to land: {states}"
            assert all(r.summary is not None for r in batch.results())
        print(f"{trouble}: plan states seen while the folder could not be written: {sorted(states)}; {figures}")
    finally:
        if trouble == "full":
            o.stop()
            subprocess.run(["umount", "-l", str(results)], timeout=30)


def test_a_worker_killed_while_its_results_wait_to_land_costs_no_engine_run(office, tmp_path):
    """The share is read-only when a run ends, so its results wait in the run folder; then the
    worker process is SIGKILLed. The PC's next worker finds the finished run and reports it, and
    lands it once the share can be written again: the engine ran once."""
    reason = _can_mount(tmp_path)
    if reason:
        pytest.skip(reason)
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 1}})
    results = tmp_path / "results"
    results.mkdir()
    o = office(landing_patience="1s", queue__landing_retry="1s")
    o.scheduler()
    o.worker("pc0")
    with o.client() as client:
        client.wait_for_workers(1, timeout=120)
        batch = submit(client, Project(prj).plans, results_dir=results, retries=0)
        plan = lambda: batch.snapshot()["plans"][0]  # noqa: E731
        wait_for(lambda: plan()["state"] == "running", 60, "the run to start")
        _mount("--bind", str(results), str(results))
        try:
            _mount("-o", "remount,bind,ro", str(results))
            wait_for(lambda: plan()["state"] == "landing", 60, "the results to wait in the run folder")
            (first,) = client.scheduler_info()["workers"]
            os.kill(client.run(os.getpid, workers=[first])[first], signal.SIGKILL)
            wait_for(lambda: plan()["state"] == "landing" and plan()["worker"] not in ("", first), 60,
                     "the PC's next worker to report the finished run")
        finally:
            subprocess.run(["umount", "-l", str(results)], check=True, timeout=30)
        figures = check_nothing_lost_or_repeated(o, batch, results, prj)
        assert figures["engine starts"] == 1, figures
        assert batch.results()[0].summary is not None


def test_an_engine_dies_with_its_worker_and_its_folder_goes_only_once_it_is_dead(tmp_path):
    """Linux: the worker process is SIGKILLed mid-run. Ras.exe's stand-in dies with it at once
    (PR_SET_PDEATHSIG); the helper it started (RasUnsteady's part) is orphaned, and the PC's
    next worker ends it before removing the run folder."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 1, "outcome": "hang"}})
    scratch = tmp_path / "scratch"
    script = tmp_path / "worker.py"
    script.write_text(
        "import sys, dask.config\n"
        "from pathlib import Path\n"
        "from dask_hecras import Project\n"
        "from dask_hecras.pipeline import new_result, run_once\n"
        "from dask_hecras import records\n"
        "prj, scratch, results = map(Path, sys.argv[1:4])\n"
        "with dask.config.set({'hecras.scratch': str(scratch)}):\n"
        "    plan = Project(prj).plan('p01')\n"
        "    folder = records.claim_project_folder(results, plan.project)\n"
        "    r = new_result(plan, 'fake', attempt=1, batch='B', attempt_id='B-0000-a1')\n"
        "    run_once(plan, r, folder, engine='fake', scratch=scratch)\n")
    worker = subprocess.Popen([sys.executable, str(script), str(prj), str(scratch), str(tmp_path / "results")])
    try:
        def engine_tree():
            return [p for p in psutil.process_iter(["cmdline"])
                    if "dask_hecras.fake_ras" in " ".join(p.info["cmdline"] or []) and str(scratch) in
                    " ".join(p.info["cmdline"] or [])]

        front, helper = sorted(wait_for(lambda: len(engine_tree()) == 2 and engine_tree(), 60, "the engine tree"),
                               key=lambda p: "--compute" in " ".join(p.cmdline()))
        worker.kill()
        worker.wait(timeout=10)
        psutil.wait_procs([front], timeout=10)
        assert not front.is_running(), "the engine outlived its worker"
        assert helper.is_running(), "(the orphaned helper is what the next worker's sweep is for)"
        (folder,) = [p for p in scratch.iterdir() if p.name.startswith("Demo-p01-")]
        from dask_hecras.runs import sweep_and_recover

        (outcome,) = sweep_and_recover(scratch, "pc0")
        assert outcome.kind == "lost" and outcome.attempt_id == "B-0000-a1"
        assert not helper.is_running() and not folder.exists() and not engine_tree()
    finally:
        worker.kill()
        for p in psutil.process_iter(["cmdline"]):
            if str(scratch) in " ".join(p.info["cmdline"] or []) and "fake_ras" in " ".join(p.info["cmdline"] or []):
                p.kill()


def _worker_dies_while_its_engine_finishes(office, tmp_path, behaviour: dict, env: dict | None = None):
    """One plan on one PC: its worker is SIGKILLed once the engine started, the engine runs to its
    end without it, and only then does the PC's next worker start (held by ``tests.worker_hooks``).
    Returns the office, results folder, batch and the batch's results."""
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": behaviour})
    hold = tmp_path / "hold"
    results = tmp_path / "results"
    o = office()
    o.scheduler()
    o.worker("pc0", preload=("tests.worker_hooks",),
             env={"HECRAS_TEST_HOLD": str(hold), "PYTHONPATH": str(REPO), **(env or {})})
    with o.client() as client:
        client.wait_for_workers(1, timeout=120)
        batch = submit(client, Project(prj).plans, results_dir=results, retries=2)
        wait_for(lambda: [line for line in o.journal_lines() if line[0] == "start"], 60, "the engine to start")
        hold.touch()  # the PC's next worker waits at its start
        pid = client.run(os.getpid)
        os.kill(next(iter(pid.values())), signal.SIGKILL)
        wait_for(lambda: [line for line in o.journal_lines() if line[0] == "end"], 60,
                 "the engine to finish without its worker")
        hold.unlink()
        got = batch.results(timeout=300)
    return o, results, batch, got


def test_a_run_hec_ras_judged_failed_is_not_run_again_when_its_worker_died(office, tmp_path):
    """A PC's worker dies mid-run; its engine finishes anyway, and HEC-RAS says the model went
    unstable. The PC's next worker finds that verdict in the run folder: the plan is failed, with
    HEC-RAS's reason, not lost and run again (a retry of an unstable model gives the same)."""
    o, results, batch, got = _worker_dies_while_its_engine_finishes(
        office, tmp_path, {"seconds": 3, "outcome": "unstable"})
    assert [(r.plan_id, r.status) for r in got] == [("p01", "failed")], [r.reason for r in got]
    assert "went unstable" in got[0].reason and got[0].reason.startswith("FAKE ENGINE"), got[0].reason
    starts = [line for line in o.journal_lines() if line[0] == "start"]
    assert len(starts) == 1, f"a run HEC-RAS had judged was started again: {starts}"
    assert ledger.status(results, batch.id).counts() == {"failed": 1}


def test_a_run_landed_by_a_worker_that_died_before_reporting_is_not_run_again(office, tmp_path):
    """A PC's worker dies mid-run; its engine finishes anyway; the PC's next worker lands that run
    and dies before its report gets out; the worker after it reports only what it swept. The
    results folder says the plan landed: it is never run again (it was, before: chaos found it)."""
    o, results, batch, got = _worker_dies_while_its_engine_finishes(
        office, tmp_path, {"seconds": 3}, {"HECRAS_TEST_MUTE": "recovered"})
    assert [(r.plan_id, r.status) for r in got] == [("p01", "succeeded")], [r.reason for r in got]
    starts = [line for line in o.journal_lines() if line[0] == "start"]
    assert len(starts) == 1, f"the landed run was started again: {starts}"
    assert ledger.status(results, batch.id).counts() == {"succeeded": 1}
