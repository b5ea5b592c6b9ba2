"""The results storage on a real SMB share: Samba's ``smbd`` serving a folder on this machine,
each "PC" mounting it through an SMB client of its own (``smbnetfs``: FUSE over libsmbclient,
SMB3; see ``tests/smb_share.py``). Every lander and reader is a separate Python process; a PC
that dies is SIGKILLed by the pid started, together with its SMB client.

What is counted: what a reader saw while plans landed (never a plan that is not whole: its
``max_depth`` has the final plan's values, as many and the same), plans lost (0), plans seen
twice (0).

Run alone: ``.venv/bin/python -m pytest tests/test_smb_share.py -s`` (root; prints the figures).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import h5py
import psutil
import pytest

from dask_hecras import records
from dask_hecras.examples import make_project
from dask_hecras.project import Project
from dask_hecras.results import summary_files

from .conftest import REPO
from .smb_share import SmbShare, cannot_mount, missing, read_study, wait_for

PROJECT = "Demo"  # make_project's name: the project's folder on the share


@pytest.fixture
def smb(tmp_path):
    reason = cannot_mount()
    if reason:
        pytest.skip(reason)
    reason = missing()
    if reason:
        pytest.fail(reason)
    share = SmbShare(tmp_path / "smb").start()
    try:
        yield share
    finally:
        share.stop()


class Programs:
    """Processes of ``tests.smb_share`` (each its own session), all ended at teardown."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *args, env: dict | None = None, stdin=subprocess.DEVNULL) -> subprocess.Popen:
        out = open(self.folder / f"{name}.out", "ab")
        err = open(self.folder / f"{name}.err", "ab")
        p = subprocess.Popen([sys.executable, "-m", "tests.smb_share", *map(str, args)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                             stdout=out, stderr=err, stdin=stdin, start_new_session=True)
        out.close()
        err.close()
        p.name = name
        self.procs.append(p)
        return p

    def output(self, p: subprocess.Popen) -> list[dict]:
        text = (self.folder / f"{p.name}.out").read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def errors(self, p: subprocess.Popen) -> str:
        return (self.folder / f"{p.name}.err").read_text(errors="replace")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait(timeout=30)
        kill_engines(self.folder)


def kill_engines(folder: Path) -> int:
    """Fake engines run from run folders under ``folder`` still alive (an engine's helper outlives
    a lander SIGKILLed mid-run: see test_chaos); ended by pid. Returns how many."""
    n = 0
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "dask_hecras.fake_ras" in cmd and str(folder) in cmd:
            try:
                p.kill()
                n += 1
            except psutil.NoSuchProcess:
                pass
    return n


@pytest.fixture
def programs(tmp_path):
    progs = Programs(tmp_path)
    try:
        yield progs
    finally:
        progs.stop()


def leftovers(project_dir: Path) -> dict[str, list[str]]:
    """What landings left in the project's folder on the server besides plans: hidden folders
    (cut-short landings, folders swapped out), folders landed beside a plan, temporary files."""
    if not project_dir.is_dir():
        return {}
    out: dict[str, list[str]] = {}
    for p in sorted(project_dir.iterdir()):
        if p.name in (".attempts", records.PROJECT_MARK):
            continue
        kind = (".incoming" if ".incoming-" in p.name else ".old" if ".old-" in p.name else
                "landed-beside" if records.BESIDE in p.name else "failed" if p.name.endswith(".failed") else
                "hidden" if p.name.startswith(".") else None)
        if kind:
            out.setdefault(kind, []).append(p.name)
        elif p.is_dir():
            out.setdefault("tmp in plan", []).extend(f"{p.name}/{f.name}" for f in p.iterdir()
                                                     if f.name.startswith("."))
    return {k: v for k, v in out.items() if v}


def check_final(results: Path, plan_ids: list[str]) -> dict:
    """Every plan exactly once, succeeded, its summary.nc an HDF5 file that opens; returns the study."""
    files = summary_files(results)
    names = Counter(f.parent.name.split(records.BESIDE)[0] for f in files)
    assert sorted(names) == sorted(plan_ids) and set(names.values()) == {1}, f"plans in the study: {names}"
    for f in files:
        landed = records.load_result(f.parent)
        assert landed is not None and landed.status == "succeeded", (f, landed)
        with h5py.File(f, "r") as h:
            assert "max_depth" in h, f
    study = read_study(results)
    assert sorted(study["order"]) == sorted(plan_ids), study["order"]
    return study


def _outcome(action) -> str:
    try:
        action()
        return "allowed"
    except OSError as e:
        return f"{type(e).__name__} (errno {e.errno})"


def test_what_landing_relies_on_holds_on_the_smb_share(smb, tmp_path):
    """Two PCs (two SMB clients) on the share. What ``landing`` relies on: a folder renamed into
    place appears whole to the other PC at once; renaming a folder onto a folder that is not
    empty fails (two PCs landing one plan in the same instant); renaming a folder while the other
    PC has a file in it open fails with PermissionError, as on Windows (then landing lands beside
    it). Printed, not relied on: whether creating a file exclusively (O_EXCL, a project folder's
    mark) is exclusive between PCs through this client, and what the share does with files held
    open when they are replaced or removed."""
    a, b = smb.mount("a").path, smb.mount("b").path
    rounds = 20

    # exclusive creation, both PCs at once
    winners = []
    for i in range(rounds):
        gate, got = threading.Barrier(2), []

        def claim(root: Path, gate=gate, got=got, name=f"mark-{i}"):
            gate.wait(timeout=60)
            try:
                os.close(os.open(root / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                got.append(root)
            except FileExistsError:
                pass

        threads = [threading.Thread(target=claim, args=(root,)) for root in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        winners.append(len(got))
    assert all(n >= 1 for n in winners), winners
    both = sum(n > 1 for n in winners)  # smbnetfs creates with smbc_creat: O_EXCL never reaches smbd

    # a folder renamed into place by one PC, read by the other the moment it appears
    payload = {f"f{k}.bin": os.urandom(200_000 + k) for k in range(3)}
    partial, checks = [], 0
    for i in range(rounds):
        incoming = a / f".incoming-{i}"
        incoming.mkdir()
        for name, data in payload.items():
            (incoming / name).write_bytes(data)
        seen = threading.Event()

        def watch(final=b / f"plan-{i}", seen=seen):
            wait_for(final.is_dir, 60, f"{final} on the other PC", poll=0.001)
            seen.set()
            got = {p.name: p.read_bytes() for p in final.iterdir()}
            if got != payload:
                partial.append((final.name, {k: len(v) for k, v in got.items()}))

        t = threading.Thread(target=watch)
        t.start()
        os.replace(incoming, a / f"plan-{i}")
        t.join(timeout=120)
        checks += seen.is_set()
    assert checks == rounds and not partial, f"renamed folders seen not whole: {partial}"

    # a folder renamed onto one that is not empty: fails
    (a / "x").mkdir()
    (a / "y").mkdir()
    (a / "y" / "f").write_bytes(b"landed first")
    with pytest.raises(OSError):
        os.replace(a / "x", a / "y")
    assert (b / "y" / "f").read_bytes() == b"landed first"

    # a folder with a file the other PC holds open
    with open(b / "plan-0" / "f0.bin", "rb"), pytest.raises(PermissionError):
        os.replace(a / "plan-0", a / "plan-0-moved")
    os.replace(a / "plan-0", a / "plan-0-moved")  # once closed, it moves
    with open(a / "plan-1" / "f0.bin", "rb"):
        same_pc = _outcome(lambda: os.replace(a / "plan-1", a / "plan-1-moved"))
    # a file the other PC holds open: replaced (records.write_json's rename), removed
    (a / "r.json").write_text("{}")
    (a / "r.json.tmp").write_text("{}")
    with open(b / "r.json", "rb"):
        replace_open = _outcome(lambda: os.replace(a / "r.json.tmp", a / "r.json"))
        write_json = _outcome(lambda: records.write_json(a / "r.json", {"x": 1}))
        unlink_open = _outcome(lambda: os.unlink(a / "r.json"))
    print(f"\nSMB share semantics (smbd {smb.strict_rename and 'strict rename' or 'default'}, smbnetfs clients): "
          f"O_EXCL create raced by both PCs: both 'created' the file in {both}/{rounds} races; a folder renamed "
          f"into place seen whole by the other PC {rounds}/{rounds} times; rename onto a non-empty folder fails; "
          f"renaming a folder with a file open on the other PC: PermissionError, on the same PC: {same_pc}; "
          f"replacing a file open on the other PC: {replace_open} (records.write_json: {write_json}); "
          f"removing it: {unlink_open}")


def test_many_pcs_land_at_once_onto_an_smb_share(smb, programs, tmp_path):
    """Twelve plans of one project, three PCs landing their share of them at the same moment onto
    the SMB share, each through its own SMB client; a fourth PC reads the study over and over
    meanwhile (``open_results`` and every plan's ``max_depth``). The reader never fails, never sees
    a plan that is not whole, never loses sight of one; at the end every plan is there once."""
    n_plans, n_pcs = 12, 3
    rng = random.Random(3)
    prj = make_project(tmp_path / "project", n_plans=n_plans,
                       behaviour={f"p{i:02d}": {"seconds": round(rng.uniform(0.2, 1.0), 1)}
                                  for i in range(1, n_plans + 1)})
    plan_ids = [p.id for p in Project(prj).plans]
    go, stop, seen_file = tmp_path / "go", tmp_path / "stop", tmp_path / "reader.jsonl"

    reader_pc = smb.mount("reader")
    study_dir = reader_pc.path / "study"
    # Nothing claims the project's folder first: the PCs claim it at the same instant (before
    # records.claim_project_folder waited for a mark another PC had just created, still empty,
    # they split one project over Demo and Demo_project in 7 of 30 tries on this share).
    reader = programs.start("reader", "read", study_dir, seen_file, stop)
    landers = []
    for k in range(n_pcs):
        pc = smb.mount(f"pc{k}")
        ready = tmp_path / f"ready-{k}"
        p = programs.start(f"pc{k}", "land", prj, pc.path / "study", tmp_path / f"pc{k}-scratch", ready, go,
                           *plan_ids[k::n_pcs])
        landers.append((p, ready))
    wait_for(lambda: all(r.exists() or p.poll() is not None for p, r in landers), 180, "the landers to start")
    wait_for(lambda: seen_file.exists() and seen_file.read_text().count("\n") >= 1, 120, "the reader's first read")
    go.touch()
    started = time.monotonic()
    for p, _ in landers:
        try:
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{p.name} did not finish:\n{programs.errors(p)[-3000:]}")
    landing_seconds = time.monotonic() - started
    stop.touch()
    reader.wait(timeout=300)

    # the landers: every plan landed once, each succeeded
    landed = [r for p, _ in landers for r in programs.output(p)]
    for p, _ in landers:
        assert p.returncode == 0, f"{p.name} exited with {p.returncode}:\n{programs.errors(p)[-3000:]}"
    assert sorted(r["plan"] for r in landed) == sorted(plan_ids), landed
    assert all(r["status"] == "succeeded" for r in landed), [r for r in landed if r["status"] != "succeeded"]
    retries = sum(programs.errors(p).count("trying again") for p, _ in landers)

    # the end: each plan once, whole, through the reader's client and as the server holds it
    final = check_final(study_dir, plan_ids)
    served = smb.served / "study" / PROJECT
    left = leftovers(served)
    assert not left, f"half-landed or stray folders left on the share: {left}"
    assert sorted(p.name for p in served.iterdir() if not p.name.startswith(".")) == sorted(plan_ids)

    # what the reader saw meanwhile
    rows = [json.loads(line) for line in seen_file.read_text().splitlines()]
    assert rows and reader.returncode == 0, programs.errors(reader)
    first = next((i for i, r in enumerate(rows) if r.get("plans")), None)
    assert first is not None, rows[-1]
    errors = [r for i, r in enumerate(rows) if "error" in r and not (i < first and r["kind"] == "FileNotFoundError")]
    assert not errors, f"the reader failed {len(errors)} times; first:\n{errors[0]['error']}"
    half, gone, shown, before = [], [], set(), set()
    for r in rows[first:]:
        plans = r["plans"]
        assert len(r["order"]) == len(set(r["order"])), f"a plan read twice: {r['order']}"
        for plan, digest in plans.items():
            if digest != final["plans"][plan]:
                half.append((plan, digest, final["plans"][plan]))
            assert r["statuses"].get(plan) == ["succeeded"], (plan, r["statuses"])  # once, succeeded
        gone += sorted(before - set(plans))
        before = set(plans)
        shown.add(len(plans))
    assert not half, f"the reader saw plans that are not whole (plan, seen, final): {half[:5]}"
    assert not gone, f"plans the reader had seen went out of sight: {gone}"
    between = [r for r in rows if r.get("plans") and len(r["plans"]) < n_plans]
    assert between, "the reader never read while plans were landing: the test showed nothing"
    reads = [r for r in rows if "plans" in r]
    print(f"\nSMB share, {n_pcs} PCs landing {n_plans} plans at once (each PC its own SMB client): "
          f"{len(landed)} landings in {landing_seconds:.1f} s, {retries} landing retries; the reader read the study "
          f"{len(rows)} times ({len(rows) - len(reads)} before the first plan landed, {len(between)} while plans "
          f"were landing, each read {min(r['seconds'] for r in reads):.2f}-{max(r['seconds'] for r in reads):.2f} s), "
          f"saw {sorted(shown)} plans at a time, 0 errors, 0 plans not whole, 0 out of sight; "
          f"at the end {len(final['order'])} plans, each once, {final['plans'][plan_ids[0]][0]} cells each")


class Keeper:
    """A PC that stays up: lands the plans it is given (``serve``), one JSON line each."""

    def __init__(self, programs: Programs, name: str, prj: Path, results: Path, scratch: Path):
        self.proc = programs.start(name, "serve", prj, results, scratch, stdin=subprocess.PIPE)
        self.programs = programs
        self.lines: queue.Queue = queue.Queue()
        self.seen = 0
        threading.Thread(target=self._follow, daemon=True).start()
        self.next(180)  # {"ready": true}

    def _follow(self) -> None:
        out = self.programs.folder / f"{self.proc.name}.out"
        while True:
            alive = self.proc.poll() is None
            text = out.read_text()
            lines = text[:text.rfind("\n") + 1].splitlines()  # whole lines only
            for line in lines[self.seen:]:
                self.lines.put(json.loads(line))
            self.seen = len(lines)
            if not alive:
                return
            time.sleep(0.05)

    def next(self, timeout: float) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.proc.name} said nothing for {timeout} s:\n"
                                 f"{self.programs.errors(self.proc)[-3000:]}") from None

    def land(self, plan: str, timeout: float = 240) -> dict:
        self.proc.stdin.write(f"{plan}\n".encode())
        self.proc.stdin.flush()
        return self.next(timeout)


def server_state(project_dir: Path, plan: str) -> str:
    """Where a plan's landing stands, as the server's folder shows it."""
    if not project_dir.is_dir():
        return "nothing on the share yet"
    names = [p.name for p in project_dir.iterdir()]
    parts = []
    if any(n.startswith(f".{plan}.incoming-") for n in names):
        parts.append("incoming copy")
    if any(n.startswith(f".{plan}.old-") for n in names):
        parts.append("earlier results swapped out")
    final = project_dir / plan
    if final.is_dir():
        files = {p.name for p in final.iterdir()}
        parts.append("plan folder" + (" + summary" if "summary.nc" in files else "") +
                     (" + summary tmp" if any(f.startswith(".summary.nc.") for f in files) else ""))
    return ", ".join(parts) or "nothing of it"


def test_a_pc_dying_mid_landing_on_an_smb_share_loses_and_doubles_no_plan(smb, programs, tmp_path):
    """A PC is killed (SIGKILL: its lander process and its SMB client) at moments inside a
    landing: while it copies into the hidden incoming folder, right after the rename into place,
    while it writes the summary, at a random moment of its run, and while it replaces results
    landed before. After each death another PC reads the study (it opens and computes, and shows
    no plan that is not whole); then a third PC lands the plan again: it is there once."""
    seed = int(os.environ.get("SMB_CHAOS_SEED") or random.randrange(1 << 30))  # printed: to run it again
    rng = random.Random(seed)
    n_plans = 6
    prj = make_project(tmp_path / "project", n_plans=n_plans,
                       behaviour={f"p{i:02d}": {"seconds": 0.3, "cells": 20000} for i in range(1, n_plans + 1)})
    plan_ids = [p.id for p in Project(prj).plans]
    rounds = [(pid, phase) for pid, phase in zip(plan_ids, ["copying", "landed", "summarising", "random",
                                                            "copying", "random"])]
    rounds += [(plan_ids[0], "copying"), (plan_ids[1], "replaced"), (plan_ids[2], "random")]  # replacing

    reader = smb.mount("reader")
    study = reader.path / "study"
    served = smb.served / "study" / PROJECT
    keeper = Keeper(programs, "keeper", prj, smb.mount("keeper").path / "study", tmp_path / "keeper-scratch")

    def victim(i: int, plan: str):
        pc = smb.mount(f"dying{i}")
        go, ready, journal = tmp_path / f"go-{i}", tmp_path / f"ready-{i}", tmp_path / f"journal-{i}.txt"
        p = programs.start(f"dying{i}", "land", prj, pc.path / "study", tmp_path / f"dying{i}-scratch", ready, go,
                           plan, env={"FAKE_RAS_JOURNAL": str(journal)})
        return pc, p, go, ready, journal

    def attempt_of(plan: str):
        return (records.read_json(served / plan / "result.json") or {}).get("attempt_id")

    def trigger(phase: str, plan: str, before, journal: Path):
        """When to kill, as the server's folder (or the engine's journal) shows the landing."""
        if phase == "copying":
            return lambda: served.is_dir() and any(n.startswith(f".{plan}.incoming-") for n in os.listdir(served))
        if phase == "landed":
            return lambda: (served / plan / "result.json").is_file() and not (served / plan / "summary.nc").exists()
        if phase == "summarising":
            return lambda: (served / plan).is_dir() and any(n.startswith(".summary.nc.") for n in
                                                             os.listdir(served / plan))
        if phase == "replaced":
            return lambda: attempt_of(plan) not in (None, before)
        assert phase == "random"
        return lambda: journal.is_file() and "start" in journal.read_text()

    reference: dict[str, list] = {}  # plan -> its max_depth digest once landed whole
    pending: list[tuple[int, str, list]] = []  # seen right after a kill, before any reference
    landed: set[str] = set()
    figures: Counter = Counter()
    states: list[str] = []
    hidden, lost, doubled, not_whole = [], [], [], []

    def look(after: str, allowed: set[str], i: int) -> dict:
        """Another PC reads the study: no error, every plan whole and once."""
        try:
            seen = read_study(study)
        except FileNotFoundError:
            assert not landed, f"{after}: the study's plans {sorted(landed)} are gone"
            return {"plans": {}, "order": [], "statuses": {}}
        for plan, st in seen["statuses"].items():
            if st != ["succeeded"]:
                doubled.append((after, plan, st))
        for plan in seen["order"]:
            if seen["order"].count(plan) > 1:
                doubled.append((after, plan))
        unexpected = set(seen["plans"]) - allowed
        assert not unexpected, f"{after}: plans that never landed are in the study: {unexpected}"
        for plan, digest in seen["plans"].items():
            if plan in reference:
                if digest != reference[plan]:
                    not_whole.append((after, plan, digest, reference[plan]))
            else:
                pending.append((i, plan, digest))
        return seen

    nxt = victim(0, rounds[0][0])
    started = time.monotonic()
    for i, (plan, phase) in enumerate(rounds):
        pc, p, go, ready, journal = nxt
        wait_for(lambda p=p, ready=ready: ready.exists() or p.poll() is not None, 180, f"the dying PC {i} to start",
                 explain=lambda p=p: programs.errors(p)[-3000:])
        before = attempt_of(plan)
        fire = trigger(phase, plan, before, journal)
        go.touch()
        deadline = time.monotonic() + 240
        while not fire():
            if p.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if phase == "random" and p.poll() is None:
            time.sleep(rng.uniform(0.05, 1.5))  # the moment to die, drawn after the engine started
        killed = p.poll() is None
        if killed:
            os.kill(p.pid, signal.SIGKILL)  # the PC dies: its lander ...
            pc.kill()  # ... and its SMB client, mid-call (smbd sees the connection drop)
        p.wait(timeout=60)
        figures["engines left running, ended"] += kill_engines(tmp_path / f"dying{i}-scratch")
        state = server_state(served, plan)
        states.append(f"{plan} {phase}: {'killed' if killed else 'finished first'} -> {state}")
        figures["kills" if killed else "finished before the kill"] += 1
        pc.unmount()
        if i + 1 < len(rounds):
            nxt = victim(i + 1, rounds[i + 1][0])  # the next PC starts while this death is looked at

        seen = look(f"after killing the PC landing {plan} ({phase})", landed | {plan}, i)
        missing_now = sorted(landed - set(seen["plans"]))
        assert set(missing_now) <= {plan}, f"plans not being landed went missing: {missing_now}"
        if missing_now:
            hidden.append(f"{plan} ({phase}: {state})")  # swapped out, not yet replaced: see landing.land

        r = keeper.land(plan)
        assert r["status"] == "succeeded", r
        figures["landings again"] += 1
        seen = look(f"after landing {plan} again", landed | {plan}, i)
        if plan not in seen["plans"]:
            lost.append(plan)
            continue
        reference.setdefault(plan, seen["plans"][plan])
        if seen["plans"][plan] != reference[plan]:
            not_whole.append((f"after landing {plan} again", plan, seen["plans"][plan], reference[plan]))
        landed.add(plan)

    for i, plan, digest in pending:  # seen right after a kill, before the plan was landed again
        if digest != reference.get(plan):
            not_whole.append((f"after kill {i}", plan, digest, reference.get(plan)))
    final = check_final(study, plan_ids)
    lost += sorted(set(plan_ids) - set(final["order"]))
    left = leftovers(served)
    print(f"\nSMB share, a PC dying mid-landing (seed {seed}): {n_plans} plans, {len(rounds)} rounds in "
          f"{time.monotonic() - started:.0f} s, {figures['kills']} PCs killed (lander + SMB client), "
          f"{figures['finished before the kill']} finished before the kill, {figures['landings again']} plans "
          f"landed again by another PC, {figures['engines left running, ended']} orphaned engines ended;\n"
          "  at each kill the server held: " + "; ".join(states) + "\n"
          f"  plans out of sight between the kill and the next landing: {hidden or 'none'}; lost: {len(lost)}; "
          f"seen twice: {len(doubled)}; not whole: {len(not_whole)}; left on the share: "
          f"{ {k: len(v) for k, v in left.items()} or 'nothing' }")
    assert not lost, f"plans lost: {lost}"
    assert not doubled, f"plans seen twice or not succeeded: {doubled}"
    assert not not_whole, f"plans not whole: {not_whole}"
    assert figures["kills"] >= len(rounds) // 2, f"too few PCs died inside a landing to show anything: {states}"
    assert not [k for k in left if k in ("landed-beside", "failed")], left
    keeper.proc.stdin.close()
    keeper.proc.wait(timeout=60)
