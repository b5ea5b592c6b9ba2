"""A scheduler and two workers on separate network hosts, with mutual TLS: one worker's link is
cut mid-run, and the batch still completes on the other with nothing lost or duplicated.

The hosts are Linux network namespaces (``ip netns``) joined by veth pairs to a bridge; each
process also gets its own UTS namespace, so its own host name, as separate PCs have. The
workers are started as an office PC starts them: ``dask-hecras worker --config`` with the
settings ``dask-hecras worker-config`` writes (TLS, the fixed port 8788 on every host, the PC's
name, RAS=1, the owner policy, restarted when it ends). Each has its own scratch and cache; the
results folder is shared (one file system, as an office share is). This test process, the
Dask client, stays in the root namespace and reaches the scheduler over the bridge. Needs
root, iproute2 and unshare; skipped, saying why, without.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from dask_hecras import Project, run_plan
from dask_hecras.batch import running_plans, submit
from dask_hecras.certs import make_certs, security
from dask_hecras.cli import main
from dask_hecras.examples import make_project
from dask_hecras.records import read_json
from dask_hecras.validation import validate

from .conftest import connect

BIN = Path(sys.executable).parent
ROLES = ("scheduler", "worker-a", "worker-b")
HOST_NUMBER = {"scheduler": 10, "worker-a": 11, "worker-b": 12}


# --------------------------------------------------------------------------- the network


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


def _free_subnet() -> str:
    """``10.231.N`` with N in no route or address here (a concurrent run picks another)."""
    used = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
    for n in random.sample(range(16, 250), 234):
        if f"10.231.{n}." not in used:
            return f"10.231.{n}"
    pytest.skip("no free 10.231.N.0/24 subnet for the test network")


class Network:
    """A bridge in the root namespace; per host a namespace with a veth whose other end is on the bridge."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:5]  # names of leftovers or concurrent runs never collide
        self.suffix = suffix
        self.subnet = _free_subnet()
        self.bridge = f"hrbr-{suffix}"  # interface names: 15 characters at most
        self.ns = {role: f"hecras-{suffix}-{role}" for role in ROLES}
        self.host_end = {role: f"hr{suffix}{role[0]}{role[-1]}" for role in ROLES}  # hr<suffix>sr, …wa, …wb
        self.ip = {role: f"{self.subnet}.{HOST_NUMBER[role]}" for role in ROLES}
        self.made_ns: list[str] = []
        self.made_links: list[str] = []

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for role in ROLES:
            ns, host_end, inside = self.ns[role], self.host_end[role], self.host_end[role] + "i"
            _ip("netns", "add", ns)
            self.made_ns.append(ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", inside)
            self.made_links.append(host_end)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge)
            _ip("link", "set", host_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", inside, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.ip[role]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, role: str) -> None:
        """Pull the host's network cable: the bridge's end of its veth goes down."""
        _ip("link", "set", self.host_end[role], "down")

    def mend(self, role: str) -> None:
        _ip("link", "set", self.host_end[role], "up")

    def pids(self, role: str) -> list[int]:
        """Every process on the host, engines orphaned by a dead worker included."""
        return [int(p) for p in _ip("netns", "pids", self.ns[role], check=False).stdout.split()]

    def signal(self, role: str, sig: int) -> None:
        for _ in range(2):  # a process started while the first round was being sent
            for pid in self.pids(role):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def down(self) -> None:
        """Kill whatever still runs on the hosts, then remove namespaces, veths and the bridge."""
        for role, ns in zip(ROLES, self.made_ns):
            deadline = time.monotonic() + 10
            while self.pids(role) and time.monotonic() < deadline:
                self.signal(role, signal.SIGCONT)  # a stopped ("asleep") process
                self.signal(role, signal.SIGKILL)
                time.sleep(0.1)
            _ip("netns", "del", ns, check=False)  # takes the veth ends inside with it
        for link in reversed(self.made_links):
            _ip("link", "del", link, check=False)


@pytest.fixture
def network():
    if sys.platform != "linux":
        pytest.skip("network namespaces are Linux only")
    if os.geteuid() != 0:
        pytest.skip("making network namespaces (ip netns, veth, a bridge) needs root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's `unshare` is not installed (each host gets its own host name)")
    probe = f"hecras-probe-{uuid.uuid4().hex[:6]}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot make network namespaces here: ip netns add: {r.stderr.strip()}")
    try:
        r = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--uts", "hostname", "probe"],
                           capture_output=True, text=True, timeout=30, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot give a namespace its own host name: unshare --uts: {r.stderr.strip()}")
    finally:
        _ip("netns", "del", probe, check=False)
    net = Network()
    try:
        net.up()
        yield net
    finally:
        net.down()


# --------------------------------------------------------------------------- the cluster


class Cluster:
    def __init__(self, net: Network, folder: Path):
        self.net = net
        self.folder = folder
        self.certs = folder / "certs"
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.address = f"tls://{net.ip['scheduler']}:8786"
        self.dashboard = f"http://{net.ip['scheduler']}:8787"

    def start(self, role: str, args: list[str], env: dict[str, str]) -> None:
        """``ARGS`` on host ``role`` (its network, its host name ``role``), in a process group of its own."""
        cmd = ["ip", "netns", "exec", self.net.ns[role], "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
               role, *args]
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
        with open(self.logs / f"{role}.log", "wb") as log:
            self.procs[role] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)

    def worker_log(self, role: str) -> str:
        """What the Dask worker (under the ``dask-hecras worker`` supervisor) printed."""
        path = self.logs / f"{role}-dask.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def tls(self, role: str) -> list[str]:
        return ["--tls-ca-file", str(self.certs / "ca.pem"), "--tls-cert", str(self.certs / f"{role}.pem"),
                "--tls-key", str(self.certs / f"{role}-key.pem")]

    def tails(self, lines: int = 40) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            text = [t for t in log.read_text(errors="replace").splitlines() if "Run out-of-band function" not in t]
            out.append(f"----- {log.name} (last {min(lines, len(text))} of {len(text)} lines) -----")
            out.extend(text[-lines:])
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)


@pytest.fixture
def cluster(network, tmp_path):
    """The scheduler on one host, worker-a and worker-b on two others; mutual TLS everywhere."""
    c = Cluster(network, tmp_path)
    make_certs(c.certs, [network.ip["scheduler"]])
    try:
        c.start("scheduler", [str(BIN / "dask"), "scheduler", "--protocol", "tls", "--host", network.ip["scheduler"],
                              "--port", "8786", "--dashboard-address", ":8787", "--preload", "dask_hecras.scheduler",
                              *c.tls("scheduler")],
                {"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "8s",
                 "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "10",
                 # a lost PC's runs wait this long for it to report, then the results folder decides
                 "DASK_HECRAS__QUEUE__LOST_GRACE": "10s",
                 # a silent host is given up on in seconds, not after the default 30 s per try
                 "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
                 "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "12s"})
        for role in ("worker-a", "worker-b"):
            settings = tmp_path / role / "worker.yaml"  # what install-worker.ps1 writes on a PC
            assert main(["worker-config", str(settings), "--scheduler", f"{network.ip['scheduler']}:8786",
                         "--certs", str(c.certs), "--scratch", str(tmp_path / role / "scratch")]) == 0
            c.start(role, [str(BIN / "dask-hecras"), "worker", "--config", str(settings),
                           "--log", str(c.logs / f"{role}-dask.log")],
                    {"DASK_HECRAS__WORKER__RESTART_DELAY": "1s"})  # the office default waits 15 s
        yield c
    finally:
        c.stop()
        print(c.tails())  # pytest shows it when the test failed


def _connect(c: Cluster):
    def started():
        dead = [r for r, p in c.procs.items() if p.poll() is not None]
        assert not dead, f"{dead} exited at start\n{c.tails()}"

    return connect(c.address, within=90, between=started, explain=c.tails,
                   security=security(c.certs, "client"), timeout="10s")


def _workers(client) -> dict[str, str]:
    """Worker name → address."""
    return {str(w["name"]): a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}


def _wait(condition, timeout: float, what: str, c: Cluster, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{c.tails()}")


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root``, with its size and modification time: any change shows."""
    return {str(p.relative_to(root)): f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in sorted(root.rglob("*")) if p.is_file()}


def _attempts(project_dir: Path, plan_id: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((project_dir / ".attempts" / plan_id).glob("*.json"))]


def _start_batch(c: Cluster, client, prj: Path, results: Path):
    """Submit every plan; return the batch, worker-a's address and the plan it is running."""
    _wait(lambda: {"worker-a", "worker-b"} <= set(_workers(client)), 90, "both workers to join", c)
    a, b = _workers(client)["worker-a"], _workers(client)["worker-b"]
    # Named after the PC, on the office's fixed worker port, the same on every host.
    assert (a, b) == (f"tls://{c.net.ip['worker-a']}:8788", f"tls://{c.net.ip['worker-b']}:8788")
    batch = submit(client, Project(prj).plans, results_dir=results, retries=2)
    on_a = _wait(lambda: [k for k, w in running_plans(client).items() if w == a], 60, "worker-a to run a plan", c)
    return batch, a, on_a[0].rsplit("-", 1)[1]  # Demo-pNN → pNN


def _check_results(c: Cluster, client, batch, prj: Path, results: Path) -> None:
    """Every plan ended, whole, in its one folder: nothing lost, nothing duplicated, and what is
    kept is the latest run's."""
    plans = Project(prj).plans
    by_plan = {r.plan_id: r for r in batch.results(timeout=180)}
    assert sorted(by_plan) == [p.id for p in plans]
    assert all(r.ok for r in by_plan.values()), {k: (r.status, r.reason) for k, r in by_plan.items()}

    assert sorted(p.name for p in results.iterdir()) == [".batches", prj.stem], "no worker taken out of rotation"
    project_dir = results / prj.stem
    names = sorted(p.name for p in project_dir.iterdir())
    assert names == [".attempts", ".project.json", *(p.id for p in plans)], \
        f"one folder per plan and nothing else (no .incoming-, .old-, .failed): {names}"
    for plan in plans:
        folder = project_dir / plan.id
        saved = read_json(folder / "result.json")
        assert saved and saved["status"] == "succeeded" and saved["batch"] == batch.id, (plan.id, saved)
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [plan.results_name, f"{prj.stem}.{plan.id}.computeMsgs.txt", f"{prj.stem}.{plan.id}.engine.log",
             f"{prj.stem}.bco{plan.id[1:]}", f"{prj.stem}.dss", "result.json", "summary.nc"]), (plan.id, sorted(p.name for p in folder.iterdir()))
        dss = (folder / f"{prj.stem}.dss").read_text().splitlines()
        assert len([line for line in dss if line.startswith("fake DSS record")]) == 1, "one run's hydrographs"
        assert Path(saved["folder"]) == folder and Path(saved["hdf"]) == folder / plan.results_name
        assert validate(folder / plan.results_name, plan=plan).ok
        # The files and result.json tell of one and the same run: the engine log names the run
        # folder, under the scratch of the worker result.json names.
        log = (folder / f"{prj.stem}.{plan.id}.engine.log").read_text()
        assert str(c.folder / saved["worker"] / "scratch") in log, (plan.id, saved["worker"], log[:300])
        on_disk = _attempts(project_dir, plan.id)
        # an attempt still "running" is one whose worker went away mid-run (its engine with it)
        assert {r["status"] for r in on_disk} <= {"succeeded", "running"}, (plan.id, on_disk)
        assert len({r["attempt_id"] for r in on_disk}) == len(on_disk), "one record per attempt"
        assert all(r in on_disk for r in saved["attempts"] if r["status"] == "succeeded"), (plan.id, on_disk)
        done = [r for r in on_disk if r["status"] == "succeeded"]
        latest = max(done, key=lambda r: r["run_start"])  # what is kept is the latest run's
        assert (latest["worker"], latest["run_start"]) == (saved["worker"], saved["run_start"]), (plan.id, on_disk)


def _left_behind(c: Cluster) -> dict[str, list[str]]:
    """Run folders still on each PC's disk, other than failed runs kept for inspection."""
    out = {}
    for role in ("worker-a", "worker-b"):
        scratch = c.folder / role / "scratch"
        out[role] = sorted(p.name for p in scratch.iterdir()
                           if (p / ".staged-by").exists() and not (p / ".failed").exists())
    return out


def _dashboard_states(c: Cluster, batch) -> dict[str, str]:  # noqa: D103
    with urllib.request.urlopen(f"{c.dashboard}/hecras/api/plans.json", timeout=10) as resp:
        return {p["plan"]: p["state"] for p in json.load(resp)["plans"] if p["batch"] == batch.id}


# --------------------------------------------------------------------------- the tests


def _a_windows_client_sends_shares(client) -> None:
    """This cluster runs on other hosts than the client: a Windows client's mapped drive goes
    out as its share, and a path on its own disk is refused before anything is submitted."""
    import ctypes
    from pathlib import PureWindowsPath

    from dask_hecras.batch import cluster_on_other_pcs, paths_for_cluster

    from .fake_windows import FakeDrives

    assert cluster_on_other_pcs(client)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "platform", "win32")
        mp.setattr(ctypes, "windll", FakeDrives({"C:": 3, "P:": 4}, {"P:": "\\\\fs\\projects"}), raising=False)
        river, own = PureWindowsPath("P:/studies/River.prj"), PureWindowsPath("C:/studies/River.prj")
        assert paths_for_cluster(client, [river]) == {river: "\\\\fs\\projects\\studies\\River.prj"}
        with pytest.raises(ValueError, match=r"cannot reach C:\\studies\\River.prj: C: is a local disk"):
            paths_for_cluster(client, [river, own])


def test_a_worker_cut_off_mid_run_loses_and_duplicates_nothing(cluster, tmp_path):
    """worker-a's cable is pulled while it runs a plan. The scheduler gives up on it; the queue
    holds that plan back. worker-a's engine finishes and lands the results in the shared folder
    (the share is still reachable), so when the grace ends the results folder says the plan is
    done: it is not run again. Every plan ends once, whole, in one folder."""
    c, net = cluster, cluster.net
    prj = make_project(tmp_path / "project", n_plans=6,
                       behaviour={f"p{i:02d}": {"seconds": 3 + i % 3} for i in range(1, 7)})
    results = tmp_path / "results"
    client = _connect(c)
    try:
        _a_windows_client_sends_shares(client)
        batch, a, cut_plan = _start_batch(c, client, prj, results)
        net.cut("worker-a")
        cut = time.monotonic()
        _check_results(c, client, batch, prj, results)
        assert "worker-a" not in _workers(client), "the cut-off worker is still a member"
        ran = {p.id: [(r["worker"], r["status"]) for r in _attempts(results / prj.stem, p.id)]
               for p in Project(prj).plans}
        print(f"{cut_plan} cut off on worker-a; the batch ended {time.monotonic() - cut:.0f} s later; runs: {ran}")
        assert ran[cut_plan] == [("worker-a", "succeeded")], "the run that finished on the cut-off PC ran again"
        assert all(w == "worker-b" for p, runs in ran.items() if p != cut_plan for w, _ in runs)
        assert _dashboard_states(c, batch) == {p.id: "succeeded" for p in Project(prj).plans}

        # The cable goes back in: the old worker learns it was given up on and ends; the
        # PC's dask-hecras worker starts a new one, which joins; the results do not change.
        before = _tree(results)
        net.mend("worker-a")
        _wait(lambda: _workers(client).get("worker-a") == a, 90, "worker-a to join again", c)
        assert c.procs["worker-a"].poll() is None, "the supervisor is still there"
        assert c.worker_log("worker-a").count("Registered to:") == 2
        assert "the Dask worker ended" in (c.logs / "worker-a.log").read_text(), "a new worker process joined"
        assert client.scheduler_info(n_workers=-1)["workers"][a]["resources"] == {"RAS": 1}
        assert {k: v for k, v in _tree(results).items() if not k.startswith(".batches/")} == \
            {k: v for k, v in before.items() if not k.startswith(".batches/")}
        assert _dashboard_states(c, batch) == {p.id: "succeeded" for p in Project(prj).plans}
        # Nothing left on either PC's disk.
        _wait(lambda: not any(_left_behind(c).values()), 30, f"the PCs' scratch to be cleared: {_left_behind(c)}", c)
    finally:
        client.close()


def test_a_worker_that_sleeps_mid_run_and_wakes_later_overwrites_nothing(cluster, tmp_path):
    """A laptop goes to sleep mid-run (its link is cut, its processes stopped). The queue waits
    for it, then, with nothing landed, runs the plan on worker-b. The laptop wakes after the
    batch finished: its stale run either completes and is refused (a later run landed) or dies
    with its worker; either way it must not replace the plan's newer, whole results."""
    c, net = cluster, cluster.net
    prj = make_project(tmp_path / "project", n_plans=4, behaviour={f"p{i:02d}": {"seconds": 3} for i in range(1, 5)})
    results = tmp_path / "results"
    client = _connect(c)
    try:
        _a_windows_client_sends_shares(client)
        batch, a, cut_plan = _start_batch(c, client, prj, results)
        net.cut("worker-a")
        net.signal("worker-a", signal.SIGSTOP)
        _check_results(c, client, batch, prj, results)
        runs = [(r["worker"], r["status"]) for r in _attempts(results / prj.stem, cut_plan)]
        assert runs == [("worker-a", "running"), ("worker-b", "succeeded")], runs
        project_dir = results / prj.stem
        before = {k: v for k, v in _tree(results).items() if "/.attempts/" not in k and not k.startswith(".batches/")}

        # It wakes before its network is back, then the cable goes back in.
        net.signal("worker-a", signal.SIGCONT)
        time.sleep(5)  # long enough for the stale engine to end, one way or the other
        net.mend("worker-a")
        _wait(lambda: _workers(client).get("worker-a") == a, 90, "worker-a to join again", c)
        _wait(lambda: not any(_left_behind(c).values()), 30, f"the PCs' scratch to be cleared: {_left_behind(c)}", c)
        after = {k: v for k, v in _tree(results).items() if "/.attempts/" not in k and not k.startswith(".batches/")}
        assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                                 if before.get(k) != after.get(k)}
        late = [r for r in _attempts(project_dir, cut_plan) if r["worker"] == "worker-a"]
        assert len(late) == 1, late
        assert late[0]["status"] == "running" or "was not kept" in late[0]["reason"], late
        assert late[0]["run_start"] < read_json(project_dir / cut_plan / "result.json")["run_start"]
        print(f"the woken worker's stale attempt: {late[0]['status']}: {late[0]['reason']}")
    finally:
        client.close()


def test_a_run_that_ends_late_never_replaces_a_later_whole_result(tmp_path):
    """The same without a cluster: a slow run of a plan ends after a later run of it landed whole."""
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 4}})
    plan = Project(prj).plan("p01")
    results = tmp_path / "results"
    late: dict = {}
    slow = threading.Thread(target=lambda: late.update(result=run_plan(plan, results_dir=results)))
    slow.start()
    deadline = time.monotonic() + 60
    while not list((tmp_path / "scratch").rglob("Demo.p01.tmp.hdf")):  # the slow engine is computing
        assert slow.is_alive() and time.monotonic() < deadline, "the slow run never started"
        time.sleep(0.05)
    (prj.parent / "fake-ras.json").write_text(json.dumps({"p01": {"seconds": 0.2}}))
    later = run_plan(plan, results_dir=results)
    assert later.ok and slow.is_alive(), "the later run finished first"
    kept = _tree(later.folder)
    slow.join(timeout=60)
    stale = late["result"]
    assert stale.ok and "was not kept" in stale.reason
    assert stale.run_start < later.run_start
    assert _tree(later.folder) == kept, "the late run changed the later run's results"
    assert read_json(later.folder / "result.json")["run_start"] == later.run_start
    assert stale.hdf == later.hdf and stale.folder == later.folder  # it points at the results kept
    assert sorted(p.name for p in (results / "Demo").iterdir()) == [".attempts", ".project.json", "p01"]
    assert sorted(r["status"] for r in _attempts(results / "Demo", "p01")) == ["succeeded", "succeeded"]
