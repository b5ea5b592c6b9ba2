"""Issue 17 end to end: a run's progress on the page, in the CLI's lines and in the ledger; stalls
caught and retried; and the page's actions (retry, cancel, drain, logs) in a real browser, each
recorded in the ledger with who and when."""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dask.config
import psutil
import pytest
from distributed import Client

from dask_hecras import Project, RetryableFailure, run_plan
from dask_hecras.actions import dashboard_link
from dask_hecras.batch import local_cluster, submit
from dask_hecras.examples import make_project

from .conftest import REPO
from .test_dashboard import CHROMIUM

PERCENT = re.compile(r"p01@\S+ (\d+)%")  # the CLI's "(p01@<worker> 43% 7 s left)"
FAST = {"hecras.progress.interval": "0.2s", "hecras.progress.report-every": "0.5s", "hecras.queue.heartbeat": "1s"}


def engines_of(plan_file: str, under: Path) -> list[psutil.Process]:
    """Fake engine processes running this plan file (``Demo.p02``) in a run folder under ``under``
    (this test's scratch: not another test's engines)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any("fake_ras" in c for c in cmd) and any(c.endswith(plan_file) and c.startswith(str(under)) for c in cmd):
            found.append(p)
    return found


def open_log(page, which: str) -> str:
    """The text the page's log link (``engine`` or ``messages``) opens in a new tab."""
    with page.expect_popup() as popup:
        page.locator(f"a.hecras-log-link[data-which={which}]").click()
    tab = popup.value
    tab.wait_for_load_state()
    text = tab.inner_text("body")
    tab.close()
    return text


def ledger_of(results: Path) -> dict:
    [path] = list((results / ".batches").glob("*/ledger.json"))
    return json.loads(path.read_text())


def test_a_run_stuck_before_any_progress_is_stopped_as_a_stall(tmp_path):
    """A run held by a dialog at start-up (the fake's "hang": no progress file, no CPU) is stopped
    after hecras.stall-startup, its tree killed, as a failure another run may fix."""
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 60, "outcome": "hang"}})
    [plan] = Project(prj).plans
    with dask.config.set({"hecras.stall-startup": "3s", "hecras.progress.interval": "0.2s",
                          "hecras.scratch": str(tmp_path / "scratch")}):
        started = time.monotonic()
        with pytest.raises(RetryableFailure) as e:
            run_plan(plan, engine="fake", results_dir=tmp_path / "results")
    took = time.monotonic() - started
    r = e.value.result
    assert r.problem == "stall" and r.retryable, r
    assert "no progress for" in r.reason and "before any simulation time was reached: a dialog or a hang" in r.reason
    assert "of CPU meanwhile" in r.reason and "process tree killed" in r.reason
    assert took < 30, took  # not the plan's 60 s, nor a timeout (none was set)
    assert not engines_of("Demo.p01", tmp_path), "the stalled engine is still running"
    landed = json.loads((tmp_path / "results" / "Demo" / "p01" / "result.json").read_text())
    assert landed["problem"] == "stall" and landed["retryable"]


def test_progress_reaches_the_json_view_the_cli_and_the_ledger(tmp_path):
    """The real CLI on a local cluster: its lines carry the running plan's percentage and time
    left, rising; meanwhile the ledger on disk and the page's JSON view carry the same progress."""
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 12}})
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_HECRAS__SCRATCH": str(tmp_path / "scratch"),
           **{"DASK_" + k.upper().replace(".", "__").replace("-", "_"): v for k, v in FAST.items()}}
    cli = subprocess.Popen([sys.executable, "-m", "dask_hecras.cli", "run", str(prj), "--engine", "fake",
                            "--workers", "1", "--results", str(results)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines, page_link, ledger_progress, json_progress = [], None, [], []
    try:
        deadline = time.monotonic() + 180
        for line in cli.stdout:
            lines.append(line.rstrip())
            if "HEC-RAS page:" in line:
                page_link = line.split("HEC-RAS page:", 1)[1].strip()
            if PERCENT.search(line):
                try:  # the ledger on disk, as written at its heartbeat
                    entry = ledger_of(results)["plans"][0]
                    if entry.get("progress"):
                        ledger_progress.append(entry["progress"]["fraction"])
                except (ValueError, FileNotFoundError, OSError):
                    pass
                if page_link:
                    base = page_link.split("/hecras", 1)[0]
                    with urllib.request.urlopen(f"{base}/hecras/api/plans.json", timeout=10) as r:
                        state = json.load(r)
                    json_progress += [(p["progress"], p["left"], p["pace"]) for p in state["plans"]
                                      if p["progress"] is not None]
            assert time.monotonic() < deadline, lines
        assert cli.wait(timeout=60) == 0, "\n".join(lines)
    finally:
        if cli.poll() is None:
            cli.kill()
    shown = [line for line in lines if PERCENT.search(line)]
    percents = [int(PERCENT.search(line).group(1)) for line in shown]
    assert len(set(percents)) >= 4, lines  # followed, not only "running"
    assert percents == sorted(percents) and 0 < percents[-1] <= 100, percents
    assert all(" s left" in line for line in shown if not line.endswith("0%)")), shown
    etas = [float(line.split("ETA ~", 1)[1].split(" s")[0]) for line in shown if " s left" in line]
    assert etas[0] > etas[-1], etas  # the batch's ETA follows the run's own estimate down
    assert page_link and "key=" in page_link, lines  # the page's link lets its buttons act
    assert any(0 < f < 1 for f in ledger_progress) and all(0 <= f <= 1 for f in ledger_progress), ledger_progress
    assert any(0 < f < 1 and pace > 0 and left > 0 for f, left, pace in json_progress if pace), json_progress
    assert any(line.startswith("1 succeeded, 0 failed") for line in lines), lines[-8:]
    # the attempt's record keeps how far the engine got; the .bco landed with the results
    landed = json.loads((results / "Demo" / "p01" / "result.json").read_text())
    assert landed["progress"] == 1.0
    assert (results / "Demo" / "p01" / "Demo.bco01").is_file()


def test_a_stalled_run_is_retried_and_the_page_acts_as_its_user(tmp_path):
    """A batch of three: p01 stalls mid-run (both runs), p02 runs long, p03 is quick. In a real
    browser: the page without the link's key only shows; with it, p01 is retried (now healthy) and
    succeeds, the running p02 is cancelled (its engine tree goes), a worker is drained and retires,
    and the logs open. The ledger records each action with who and when."""
    from playwright.sync_api import expect, sync_playwright

    behaviour = {"p01": {"seconds": 6, "outcome": "stall"}, "p02": {"seconds": 200}, "p03": {"seconds": 1}}
    prj = make_project(tmp_path / "project", n_plans=3, behaviour=behaviour)
    results = tmp_path / "results"
    # the stall limit from each run's own pace (auto): p01 moves every 0.3 s and stalls a few seconds after
    # it stops; p02, moving every 10 s, may stand still far longer before it counts as stalled
    settings = {**FAST, "hecras.stall-after": "auto", "hecras.stall-floor": "3s",
                "hecras.scratch": str(tmp_path / "scratch")}
    shots = REPO / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with dask.config.set(settings), local_cluster(2, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        base = client.dashboard_link.rsplit("/", 1)[0]
        link = dashboard_link(client)
        batch = submit(client, Project(prj).plans, engine="fake", results_dir=results, retries=1)

        def plan(pid: str) -> dict:
            return next(p for p in batch.snapshot()["plans"] if p["plan"] == pid)

        deadline = time.monotonic() + 120
        while plan("p01")["state"] != "failed" or plan("p02")["state"] != "running" or \
                (plan("p02").get("progress") or {}).get("fraction") is None:
            assert time.monotonic() < deadline, [(p["plan"], p["state"], p["step"], p["failed_runs"], p.get("progress"),
                                                  p["reason"]) for p in batch.snapshot()["plans"]]
            time.sleep(0.3)
        p01 = plan("p01")
        assert p01["failed_runs"] == 2 and "Stalled: no progress for" in p01["reason"], p01
        assert "% of the simulation: a dialog or a hang" in p01["reason"], p01["reason"]
        behaviour["p01"] = {"seconds": 1}  # the cause gone (a dialog answered), the engineer retries it
        (prj.parent / "fake-ras.json").write_text(json.dumps(behaviour))

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            js_errors: list[str] = []
            # without the key: the page shows, and its buttons stay off
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("pageerror", lambda e: js_errors.append(str(e)))
            page.goto(f"{base}/hecras")
            page.locator(".slick-row", has_text="p01").first.wait_for(timeout=60_000)
            page.locator(".slick-row", has_text="p01").first.click()
            expect(page.locator(".hecras-picked")).to_contain_text("p01", timeout=10_000)
            readonly = page.locator(".hecras-access").inner_text()
            assert "only shows" in readonly, readonly
            assert page.locator(".bk-btn", has_text="Retry plan").is_disabled()
            page.close()

            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("pageerror", lambda e: js_errors.append(str(e)))
            page.on("console", lambda m: js_errors.append(m.text) if m.type == "error" else None)
            page.goto(link)
            who = f"{getpass.getuser()}@{socket.gethostname()}"
            assert who in page.locator(".hecras-access").inner_text(timeout=60_000)
            # a bar for the running plan, at its engine's fraction
            bar = page.locator(".hecras-progress").first
            bar.wait_for(timeout=30_000)
            assert 0 < float(bar.get_attribute("data-fraction")) < 1
            page.screenshot(path=str(shots / "hecras-progress.png"), full_page=True)

            # retry the stalled plan
            page.locator(".slick-row", has_text="p01").first.click()
            retry = page.locator(".bk-btn", has_text="Retry plan")
            expect(page.locator(".bk-btn", has_text="Retry plan")).to_be_enabled(timeout=10_000)
            retry.click()
            page.locator(".hecras-said-ok", has_text="queued again").wait_for(timeout=10_000)

            # cancel the long running one: its engine tree goes
            assert engines_of("Demo.p02", tmp_path), "p02's engine is not running"
            page.locator(".slick-row", has_text="p02").first.click()
            expect(page.locator(".bk-btn", has_text="Cancel plan")).to_be_enabled(timeout=10_000)
            # its engine log, read on its worker while it runs
            running_log = open_log(page, "engine")
            page.locator(".bk-btn", has_text="Cancel plan").click()
            page.locator(".hecras-said-ok", has_text="cancelled").wait_for(timeout=10_000)
            deadline = time.monotonic() + 60
            while engines_of("Demo.p02", tmp_path):
                assert time.monotonic() < deadline, "p02's engine outlived its cancellation"
                time.sleep(0.2)

            # p01 runs again and lands; p03 ran meanwhile
            deadline = time.monotonic() + 120
            while not batch.snapshot()["finished"]:
                assert time.monotonic() < deadline, batch.snapshot()
                time.sleep(0.3)
            # the compute messages of the landed p01
            page.locator(".slick-row", has_text="p01").first.click()
            expect(page.locator(".hecras-picked")).to_contain_text("succeeded", timeout=10_000)
            messages = open_log(page, "messages")

            # drain a worker: it takes no new plan and retires (nothing runs now)
            page.locator(".slick-row", has_text="in rotation").first.click()
            expect(page.locator(".bk-btn", has_text="Drain worker")).to_be_enabled(timeout=10_000)
            page.locator(".bk-btn", has_text="Drain worker").click()
            page.locator(".hecras-said-ok", has_text="draining").wait_for(timeout=30_000)
            deadline = time.monotonic() + 60
            while len(client.scheduler_info()["workers"]) != 1:
                assert time.monotonic() < deadline, client.scheduler_info()["workers"]
                time.sleep(0.3)
            page.screenshot(path=str(shots / "hecras-actions.png"), full_page=True)
            browser.close()
        final = {p["plan"]: p for p in batch.snapshot()["plans"]}
        time.sleep(2.5)  # the ledger's next write (heartbeat 1 s) carries the last action
        book = ledger_of(results)
    assert not js_errors, js_errors
    assert final["p01"]["state"] == "succeeded" and final["p03"]["state"] == "succeeded", final
    assert final["p02"]["state"] == "cancelled" and f"cancelled from the dashboard by {who}" in final["p02"]["reason"]
    assert "$ " in running_log and "fake_ras" in running_log, running_log[:2000]
    assert "Finished" in messages or "Complete" in messages, messages[:2000]
    acts = [(a["action"], a.get("plan") or a.get("worker"), a["who"]) for a in book["actions"]]
    assert acts[:2] == [("retry", "Demo-p01", who), ("cancel", "Demo-p02", who)], acts
    assert len(acts) == 3 and acts[2][0] == "drain" and acts[2][2] == who, acts
    assert all(a["when"][:4].isdigit() for a in book["actions"])
