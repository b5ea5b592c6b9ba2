"""Batches through a real Slurm: dask-jobqueue submits the workers as Slurm jobs, adaptive
scaling follows the plan queue up and back down to no jobs.

Slurm here is Debian's (``slurm-wlm``: slurmctld, slurmd, the client commands) with ``munge``
(``.ci/run`` installs them), one node: this machine. The session fixture writes a slurm.conf of
its own into a temporary folder (its own ports, state and spool folders, munge socket and key;
no cgroups: proctrack/linuxproc, task/none), runs munged, slurmctld and slurmd in the foreground
as child processes, waits until ``sinfo`` shows the node idle, and at the end cancels every job
and stops them, leaving nothing running. Clients find it through ``SLURM_CONF``. Needs root
(slurmd runs jobs as their user). Where Slurm cannot start, the test fails saying why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dask.config
import psutil
import pytest
import yaml
from distributed import Client

from dask_hecras import Project
from dask_hecras.batch import submit
from dask_hecras.examples import make_project
from dask_hecras.records import load_result

NEEDED = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scancel")
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons live in sbin
REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout, what, poll=0.2, explain=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(poll)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slurm:
    """One-node Slurm in ``folder``: munged, slurmctld and slurmd as child processes."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.logs = folder / "logs"
        # munged wants its socket's folder, and every folder above it, searchable by everyone;
        # pytest's own temporary folders are not (mode 700).
        self.socket_dir = Path(tempfile.mkdtemp(prefix="hecras-munge-"))
        self.socket_dir.chmod(0o755)
        self.socket = self.socket_dir / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH}
        self.procs: dict[str, subprocess.Popen] = {}

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "logs"):
            (self.folder / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(128))
        key.chmod(0o600)
        node = self.run(["slurmd", "-C"]).splitlines()[0].split()  # NodeName=vm CPUs=2 ... RealMemory=24105
        fields = dict(f.split("=", 1) for f in node)
        self.node = fields["NodeName"]
        fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.9))  # what jobs may ask for (--mem)
        self.cpus = int(fields["CPUs"])
        f = self.folder
        self.conf.write_text("\n".join([
            "ClusterName=hecrastest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
            f"SlurmdLogFile={self.logs / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",  # no cgroups
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            "ReturnToService=2",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            " ".join([*(f"{k}={v}" for k, v in fields.items()), "NodeAddr=127.0.0.1", "State=UNKNOWN"]),  # NodeName first
            f"PartitionName=hecras Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")

    def run(self, args: list[str], timeout: float = 30) -> str:
        r = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def start(self, name: str, args: list[str]) -> None:
        with open(self.logs / f"{name}.out", "wb") as out:
            self.procs[name] = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}\n{self.tails()}")

    def tails(self, lines: int = 25) -> str:
        out = []
        for log in sorted(self.logs.glob("*")):
            text = log.read_text(errors="replace").splitlines()
            out.append(f"----- {log.name} (last {min(lines, len(text))} of {len(text)} lines) -----")
            out.extend(text[-lines:])
        return "\n".join(out)

    def up(self) -> None:
        self.write_config()
        f = self.folder / "munge"
        self.start("munged", ["munged", "--foreground", f"--key-file={f / 'munge.key'}", f"--socket={self.socket}",
                              f"--pid-file={f / 'munged.pid'}", f"--seed-file={f / 'munged.seed'}",
                              f"--log-file={self.logs / 'munged.log'}"])
        wait_for(lambda: self.check_alive() or self.socket.exists(), 30, "munged's socket", explain=self.tails)
        self.start("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self.start("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        wait_for(lambda: self.check_alive() or self.node_state() == "idle", 90, "sinfo to show the node idle",
                 explain=lambda: f"sinfo: {self.node_state()!r}\n{self.tails()}")

    def node_state(self) -> str:
        try:
            return self.run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10).strip()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            return str(e)

    def jobs(self) -> list[tuple[str, str, str]]:
        """(job id, name, state) of every job Slurm still lists."""
        out = self.run(["squeue", "-h", "-o", "%i %j %T"], timeout=20)
        return [tuple(line.split()) for line in out.splitlines() if line.strip()]

    def down(self) -> None:
        """Cancel every job, stop the daemons, then end whatever still runs with this SLURM_CONF
        (slurmstepd and a job's processes are not the daemons' children)."""
        try:
            if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
                ids = [j[0] for j in self.jobs()]
                if ids:
                    self.run(["scancel", *ids])
                    wait_for(lambda: not self.jobs(), 60, "cancelled jobs to leave squeue")
        except Exception as e:  # noqa: BLE001 - the daemons are stopped anyway
            print(f"cancelling the jobs: {e}", file=sys.stderr)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and p.environ().get("SLURM_CONF") == str(self.conf):
                    p.send_signal(signal.SIGKILL)
            except (psutil.Error, OSError):
                pass
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("Slurm (slurmctld, slurmd) runs on Linux only")
    missing = [b for b in NEEDED if shutil.which(b, path=SEARCH) is None]
    if missing:
        pytest.fail(f"Slurm cannot start here: {', '.join(missing)} not found (PATH, /usr/sbin); install "
                    f"Debian's slurm-wlm and munge (`apt-get install slurm-wlm munge`, as .ci/run does)",
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("Slurm cannot start here: slurmd must run as root to start jobs (run the test as root, "
                    "as CI does)", pytrace=False)
    s = Slurm(tmp_path_factory.mktemp("slurm"))
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(s.conf)  # sbatch, squeue, scancel as dask-jobqueue calls them
    try:
        s.up()
        yield s
    finally:
        s.down()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


class Watch(threading.Thread):
    """Samples Slurm's jobs, the scheduler's workers and the plans running while batches run."""

    def __init__(self, slurm: Slurm, cluster, job_name: str):
        super().__init__(daemon=True)
        self.slurm, self.cluster, self.job_name = slurm, cluster, job_name
        self.samples: list[Sample] = []
        self.halt = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                jobs = [(j[0], j[2]) for j in self.slurm.jobs() if j[1] == self.job_name]
                scheduler = self.cluster.scheduler  # runs in another thread: read, and read again if changed
                workers = [str(ws.name) for ws in list(scheduler.workers.values())]
                running = scheduler.plugins["hecras-queue"].workload()["plans"].get("running", 0)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            self.samples.append(Sample(time.monotonic() - self.start_time, jobs, workers, running))
            self.halt.wait(0.25)

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.t >= t]

    def timeline(self, samples: list[Sample]) -> str:
        out, last = [], None
        for s in samples:
            states: dict[str, int] = {}
            for _, state in s.jobs:
                states[state] = states.get(state, 0) + 1
            now = (", ".join(f"{n} {st}" for st, n in sorted(states.items())) or "no job", len(s.workers), s.running)
            if now != last:
                out.append(f"{s.t:.1f}s {now[0]}, {now[1]} workers, {now[2]} plans running")
                last = now
        return "; ".join(out)


@dataclass
class Sample:
    t: float  # seconds since the watch started
    jobs: list  # (job id, Slurm state) of the cluster's jobs
    workers: list  # worker names on the scheduler
    running: int  # plans running (released, staging or computing)


def attempts(results: Path, project: str) -> dict[str, list[dict]]:
    folder = results / project / ".attempts"
    return {d.name: [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] for d in folder.iterdir()}


def check_ran_once(results: Path, project: str, batch, workers: set[str]) -> dict[str, list[dict]]:
    """Every plan of ``batch`` ran once, on one of ``workers``, and landed in the results folder."""
    runs = attempts(results, project)
    assert sorted(runs) == sorted(p.id for p in batch.plans)
    for plan, records in runs.items():
        assert len(records) == 1, f"{plan} ran {len(records)} times: {records}"
        assert records[0]["worker"] in workers, records[0]
        landed = load_result(results / project / plan)
        assert landed is not None and landed.ok and landed.batch == batch.id
        assert (results / project / plan / landed.hdf.name).is_file()
    return runs


def test_batches_through_slurm_scale_jobs_with_the_plans_waiting(slurm, tmp_path, monkeypatch):
    """Adaptive from no job: 6 plans of 2 s bring 2 jobs (maximum_jobs), each plan runs once,
    the jobs end after the batch. Then 2 plans, one of 30 s: the worker that ran the short one is
    released while the long one still runs on the other, which is not disturbed."""
    from dask_hecras.slurm import slurm_cluster

    node_tmp = tmp_path / "node-tmp"  # the node's local disk: the jobs' TMPDIR (sbatch passes the environment)
    node_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(node_tmp))
    first = make_project(tmp_path / "First", n_plans=6, name="First",
                         behaviour={f"p{i:02d}": {"seconds": 2.0} for i in range(1, 7)})
    second = make_project(tmp_path / "Second", n_plans=2, name="Second",
                          behaviour={"p01": {"seconds": 30.0}, "p02": {"seconds": 1.0}})
    results = tmp_path / "results"
    job_name = f"hecras-{os.getpid()}"
    maximum = 2
    with dask.config.set({"hecras.slurm.interval": "0.5s", "hecras.slurm.idle": "3s"}):
        # Jobs are made later, reading jobqueue.slurm.* then: what they need is given here.
        cluster = slurm_cluster(cores=2, job_cpu=1, memory="1GiB", walltime="00:15:00", job_name=job_name,
                                log_directory=str(tmp_path / "job-logs"), maximum_jobs=maximum,
                                scheduler_options={"dashboard_address": ":0"}, worker_config={"timeout": "5min"})
    watch = Watch(slurm, cluster, job_name)

    def explain() -> str:
        logs = "\n".join(f"----- {p.name} -----\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((tmp_path / "job-logs").glob("*")))
        return f"{watch.timeline(watch.samples)}\n{logs}\n{slurm.tails()}"

    def all_released() -> bool:
        seen = watch.samples[-1] if watch.samples else None
        return (not cluster.scheduler.workers and not slurm.jobs() and not cluster.worker_spec
                and seen is not None and not seen.jobs and not seen.workers)  # the watch saw it too

    try:
        assert "--resources RAS=1 --preload dask_hecras.worker" in cluster.job_script()
        assert not slurm.jobs(), "no job before any plan is waiting (adaptive from 0)"
        watch.start()
        with Client(cluster) as client:
            # 1. Six plans: up to maximum_jobs, back to none.
            t0 = time.monotonic()
            batch = submit(client, Project(first).plans, engine="fake", results_dir=results, retries=0)
            wait_for(lambda: len(cluster.scheduler.workers) == maximum, 150, f"{maximum} Slurm workers to join",
                     explain=explain)
            joined = time.monotonic() - t0
            done = batch.results(timeout=180)
            finished = time.monotonic() - t0
            assert [r.status for r in done] == ["succeeded"] * 6, [(r.plan_id, r.status, r.reason) for r in done]
            wait_for(all_released, 120, "the jobs to be released after the batch", explain=explain)
            released = time.monotonic() - t0
            one = watch.since(t0 - watch.start_time)

            # 2. A long plan and a short one: the idle worker goes, the busy one stays to the end.
            t1 = time.monotonic()
            long_batch = submit(client, Project(second).plans, engine="fake", results_dir=results, retries=0)
            assert [r.status for r in long_batch.results(timeout=180)] == ["succeeded"] * 2
            wait_for(all_released, 120, "the jobs to be released after the second batch", explain=explain)
            two = watch.since(t1 - watch.start_time)
            events = [m for _, m in client.get_events("hecras") if isinstance(m, dict) and m.get("action") == "worker"]
        watch.halt.set()
        watch.join(10)
        assert len(list((tmp_path / "job-logs").glob("*.err"))) == 4, "each job's output in the log folder"

        workers_one = {w for s in one for w in s.workers}
        check_ran_once(results, "First", batch, workers_one)
        # Scaled up to the plans waiting (6 plans, 1 slot each) capped at maximum_jobs; jobs
        # showed in squeue before their workers joined; back down to none.
        assert max(len(s.jobs) for s in one) == maximum and max(len(s.workers) for s in one) == maximum
        assert len(workers_one) == maximum, f"workers of other jobs came: {sorted(workers_one)}"
        assert next(s.t for s in one if s.jobs) < next(s.t for s in one if s.workers)
        assert not one[-1].jobs and not one[-1].workers

        workers_two = {w for s in two for w in s.workers}
        check_ran_once(results, "Second", long_batch, workers_two)
        assert not workers_two & workers_one, "new jobs for the second batch"
        both = next(i for i, s in enumerate(two) if len(s.workers) == 2)
        assert any(len(s.jobs) == 1 and len(s.workers) == 1 and s.running == 1 for s in two[both:]), \
            f"no worker was released while the long plan ran: {watch.timeline(two)}"
        # Each worker's scratch on the node's disk, as its job's shell expanded it.
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        assert {e["scratch"] for e in events} == {str(node_tmp / f"dask-hecras-{user}")}, events
        print(f"\nfirst batch: workers joined {joined:.1f} s, batch done {finished:.1f} s, jobs released "
              f"{released:.1f} s after submit; {watch.timeline(one)}\nsecond batch: {watch.timeline(two)}")
    finally:
        watch.halt.set()
        cluster.close()
    assert not slurm.jobs()


def test_the_site_example_makes_jobs_for_plans():
    """cluster/slurm.yaml as a site would install it: the job script asks Slurm for what it says,
    starts a worker with its RAS slots and the preload, and gives the workers their settings."""
    from dask_hecras.slurm import slurm_cluster

    site = yaml.safe_load((REPO / "cluster" / "slurm.yaml").read_text())
    dask.config.update(dask.config.config, site, priority="new")  # as from ~/.config/dask/
    cluster = slurm_cluster(scheduler_options={"dashboard_address": ":0"}, adaptive=False)
    try:
        script = cluster.job_script()
        assert "hecras-queue" in cluster.scheduler.plugins
    finally:
        cluster.close()
    for line in ("#SBATCH -J dask-hecras", "#SBATCH -p compute", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G",
                 "#SBATCH -t 24:00:00", 'export DASK_HECRAS__SCRATCH="${TMPDIR:-/tmp}/dask-hecras-$(id -un)"'):
        assert line in script.splitlines(), (line, script)
    command = script.splitlines()[-1]
    assert "--nthreads 8" in command and "--resources RAS=2" in command and "--preload dask_hecras.worker" in command
    assert "--local-directory $TMPDIR" in command
    exports = [line for line in script.splitlines() if line.startswith("export DASK_HECRAS__")]
    shown = subprocess.run(["bash", "-c", "\n".join(exports) + "\nenv"], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "TMPDIR": "/node/tmp"}, check=True).stdout
    env = dict(line.split("=", 1) for line in shown.splitlines() if line.startswith("DASK_HECRAS__"))
    got = dask.config.collect_env(env)["hecras"]
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    assert got == {"scratch": f"/node/tmp/dask-hecras-{user}", "timeout": "12h", "cores_per_plan": 4,
                   "linux_roots": ["/opt/hec-ras"]}
