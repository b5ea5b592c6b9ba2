"""The HEC-RAS dashboard page and its JSON view, on a real LocalCluster, in a real browser."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import dask.config
import numpy as np
import psutil
import pytest
from distributed import Client

from dask_hecras import Project
from dask_hecras.batch import local_cluster, submit
from dask_hecras.examples import make_project

from .conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BEHAVIOUR = {"p01": {"seconds": 4}, "p02": {"seconds": 1.5, "outcome": "unstable"},
             "p03": {"seconds": 0.5, "outcome": "crash"}, "p04": {"seconds": 1}}
EXPECTED = {"p01": "succeeded", "p02": "failed", "p03": "failed", "p04": "succeeded"}


@pytest.fixture
def dashboard(tmp_path):
    """A local cluster with the preload on, and ``start()`` to submit a batch of fake plans to it
    (a test watching the batch run starts it once it is watching: a browser may take longer to
    start on a busy machine than a plan takes to run)."""
    prj = make_project(tmp_path / "project", n_plans=4, behaviour=BEHAVIOUR)
    with dask.config.set({"hecras.scratch": str(tmp_path / "scratch")}), \
            local_cluster(2, dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        base = client.dashboard_link.rsplit("/", 1)[0]
        yield base, lambda: submit(client, Project(prj).plans, results_dir=tmp_path / "results", retries=1)


def plans_json(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/hecras/api/plans.json", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return json.load(r)


def test_json_view_follows_the_batch(dashboard):
    base, start = dashboard
    batch = start()
    seen: dict[str, set] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = plans_json(base)
        for p in state["plans"]:
            seen.setdefault(p["plan"], set()).add(p["state"])
        if {p["plan"]: p["state"] for p in state["plans"]} == EXPECTED:
            break
        time.sleep(0.3)
    assert {p["plan"]: p["state"] for p in state["plans"]} == EXPECTED
    assert "running" in seen["p01"], seen  # a 4 s plan is seen running
    by_plan = {p["plan"]: p for p in state["plans"]}
    assert "went unstable" in by_plan["p02"]["message"]
    assert by_plan["p03"]["attempt"] == 2 and "code 157" in by_plan["p03"]["message"]
    assert by_plan["p01"]["title"] == "10-year storm" and by_plan["p01"]["worker"].startswith("tcp://")
    # "expected" follows what this batch's runs took (the demo's estimate from steps and cells
    # alone is a fraction of the fake plans' 0.5-4 s)
    runs = {r["plan"]: r["run_seconds"] for r in batch.snapshot()["plans"]}
    assert all(runs.values()) and len(runs) == 4, runs  # every plan ran at least once
    shown = sum(p["expected"] for p in state["plans"])
    assert abs(shown - sum(runs.values())) < 0.01 * sum(runs.values()), (shown, runs)
    assert state["counts"] == {"succeeded": 2, "failed": 2}
    assert sorted(w["slots"] for w in state["workers"]) == [1, 1]
    assert all(w["free_disk"] > 0 and w["cache_bytes"] > 0 for w in state["workers"])
    assert all(w["cores"] == psutil.cpu_count() for w in state["workers"]), state["workers"]  # worker preload
    assert {r["plan"] for r in state["runs"]} == {"Demo-p01", "Demo-p02", "Demo-p03", "Demo-p04"}
    assert all(p["batch"] == batch.id for p in state["plans"])
    with urllib.request.urlopen(f"{base}/individual-plots.json", timeout=10) as r:
        assert "/individual-hecras" in json.load(r).values()
    with urllib.request.urlopen(f"{base}/status", timeout=30) as r:  # Dask's "More" menu names our page
        assert '<a href="individual-hecras">HEC-RAS plans</a>' in r.read().decode(), "not named in the More menu"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_in_a_real_browser(dashboard):
    from playwright.sync_api import sync_playwright

    base, start = dashboard
    shots = REPO / "test-artifacts"
    shots.mkdir(exist_ok=True)
    seen: dict[str, set] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        js_errors: list[str] = []  # the page's own scripts (our map's unpacking among them) fail nowhere
        page.on("pageerror", lambda e: js_errors.append(str(e)))
        page.on("console", lambda m: js_errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/hecras")
        # Bokeh's DataTable, inside shadow DOM: the worker panel's rows show first
        page.locator(".slick-row", has_text="in rotation").first.wait_for(timeout=60_000)
        start()
        deadline = time.monotonic() + 120
        rows: dict[str, str] = {}
        while time.monotonic() < deadline:
            rows = {}
            for row in page.locator(".slick-row").all_inner_texts():
                cells = row.split("\n")
                plan = next((c for c in cells if c in EXPECTED), None)
                state = next((c for c in cells if c in ("queued", "staging", "running", "landing", "lost",
                                                           "succeeded", "failed")), None)
                if plan and state:
                    rows[plan] = state
                    seen.setdefault(plan, set()).add(state)
            if rows == EXPECTED:
                break
            time.sleep(0.5)
        page.screenshot(path=str(shots / "hecras-dashboard.png"), full_page=True)
        counts = page.locator(".hecras-count").all_inner_texts()
        nav = {a.inner_text(): a.get_attribute("href") for a in page.locator("a.hecras-nav").all()}
        failures = page.locator(".hecras-failure").all_inner_texts()
        tooltips = [t for t in page.locator(".slick-row span[title]").evaluate_all("els => els.map(e => e.title)") if t]
        labels = page.evaluate("""() => {
            const r = Bokeh.documents[0].get_model_by_name('hecras-run-labels');
            return r === null ? null : {plans: Array.from(r.data_source.data.plan),
                                        workers: Array.from(r.data_source.data.worker)};
        }""")
        worker_rows = [r for r in page.locator(".slick-row").all_inner_texts() if "in rotation" in r]
        # the map: the latest landed plan's maximum depth, then the other succeeded plan when picked
        map_js = """() => {
            const s = Bokeh.documents[0].get_model_by_name('hecras-map-cells').data;
            const t = Bokeh.documents[0].get_model_by_name('hecras-map').title.text;
            return {n: s.xs.length, wet: Array.from(s.value).filter(v => !Number.isNaN(v)).length,
                    sum: Array.from(s.value).filter(v => !Number.isNaN(v)).reduce((a, b) => a + b, 0), title: t,
                    value: Array.from(s.value).map(v => Number.isNaN(v) ? -1 : v), plan: Array.from(s.plan)};
        }"""
        page.wait_for_function(f"({map_js})().n > 0", timeout=30_000)
        first_map = page.evaluate(map_js)
        other = "p04" if "p01" in first_map["title"] else "p01"
        page.locator(".slick-row", has_text="succeeded").filter(has_text=other).first.click()
        page.wait_for_function(f"({map_js})().title.includes('{other}')", timeout=30_000)
        second_map = page.evaluate(map_js)
        page.locator(".bk-btn", has_text="Envelope so far").click()  # the envelope of the landed plans
        page.wait_for_function(f"({map_js})().title.includes('envelope of 2 landed plans')", timeout=30_000)
        envelope = page.evaluate(map_js)
        page.screenshot(path=str(shots / "hecras-dashboard-map.png"), full_page=True)
        page.locator(".bk-btn", has_text="Plan picked").click()  # and back to the plan picked
        page.wait_for_function(f"({map_js})().title.includes('{other}')", timeout=30_000)
        browser.close()
    assert not js_errors, js_errors
    assert rows == EXPECTED, (rows, seen)
    assert any(s not in ("succeeded", "failed") for s in seen["p01"]), f"the page never showed p01 in progress: {seen}"
    assert len(worker_rows) == 2 and all(f"\n{psutil.cpu_count()}\n" in r for r in worker_rows), worker_rows
    assert "succeeded: 2" in " ".join(counts) and "failed: 2" in " ".join(counts)
    assert nav.get("Status") == "status" and nav.get("Workers") == "workers", nav  # back to Dask's pages
    # failures whole, under the table (not cut at the page edge), and in each message's tooltip
    assert len(failures) == 2 and any("went unstable" in f for f in failures) and any("code 157" in f for f in failures)
    assert any("went unstable" in t for t in tooltips), tooltips
    # each timeline bar carries its plan, on a worker named as the worker table names it
    assert labels is not None and {"Demo-p01", "Demo-p02", "Demo-p03", "Demo-p04"} <= set(labels["plans"]), labels
    table_names = {r.split("\n")[0] for r in worker_rows}
    assert set(labels["workers"]) <= table_names, (labels["workers"], table_names)
    assert (shots / "hecras-dashboard.png").stat().st_size > 10_000
    # drawn, not blank: every real cell a polygon, some of them wet; another plan, another map
    assert first_map["n"] == second_map["n"] == 600 and first_map["wet"] > 0 and second_map["wet"] > 0, (first_map, second_map)
    assert first_map["sum"] != second_map["sum"] and "Maximum depth [m]" in second_map["title"]
    # the envelope: each cell the deeper of the two plans, and which plan that was
    deepest = np.maximum(first_map["value"], second_map["value"])
    np.testing.assert_allclose(envelope["value"], deepest, rtol=1e-6)
    setter = np.where(np.asarray(first_map["value"]) > np.asarray(second_map["value"]),  # ties: the plan shown
                      first_map["plan"][0], second_map["plan"][0])
    wet = deepest > 0
    assert list(np.asarray(envelope["plan"])[wet]) == list(setter[wet]), set(setter[wet])


def test_worker_panel_keeps_what_workers_report():
    """The panel on its own: capability, owner and standing events in; one entry per worker."""
    from dask_hecras.dashboard import WorkerPanel

    p = WorkerPanel()
    p.log_event("hecras", {"action": "worker", "worker": "tcp://a:1", "cores": 8, "versions": "6.6",
                           "free_scratch_bytes": 10})
    p.log_event("hecras", {"action": "owner", "worker": "tcp://a:1", "decision": "no new plans", "reason": "active"})
    p.log_event("hecras", {"action": "out of rotation", "worker": "tcp://a:1", "reason": "no HEC-RAS"})
    p.log_event("other", {"action": "worker", "worker": "tcp://b:1"})
    assert p.workers == {"tcp://a:1": {"cores": 8, "versions": "6.6", "free_scratch_bytes": 10, "free_disk": 10,
                                       "owner": "no new plans: active", "standing": "out of rotation",
                                       "reason": "no HEC-RAS"}}
    p.remove_worker(worker="tcp://a:1")
    assert p.workers == {}


def test_the_earlier_preload_name_still_installs_the_queue(tmp_path):
    """Scripts written for earlier versions say --preload dask_hecras.dashboard."""
    from dask_hecras.batch import _has_queue

    with dask.config.set({"hecras.scratch": str(tmp_path / "scratch")}), \
            local_cluster(1, dashboard_address="127.0.0.1:0",
                          scheduler_kwargs={"preload": ["dask_hecras.dashboard"]}) as cluster, Client(cluster) as client:
        assert client.run_on_scheduler(_has_queue)
        prj = make_project(tmp_path / "project", n_plans=1)
        assert submit(client, Project(prj).plans, results_dir=tmp_path / "results").results(timeout=60)[0].ok


def test_a_closed_tab_leaves_no_traceback_and_other_errors_still_show():
    """Bokeh's keep-alive may detach a closing tab's session before the tab's own close runs,
    which then fails an assert in Bokeh's ServerConnection: a traceback per closed tab in the
    user's console. That one is dropped; every other error, asserts included, still shows."""
    import io
    import logging

    from bokeh.server.connection import ServerConnection

    import dask_hecras.dashboard  # noqa: F401  (installs the filter, as the scheduler preload does)

    class Session:  # what ServerConnection asks of its session: book-keeping only
        def subscribe(self, connection):
            pass

        def unsubscribe(self, connection):
            pass

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(n) for n in ("tornado.application", "bokeh.server.protocol_handler")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        connection = ServerConnection(None, None, None, Session())
        connection.detach_session()  # what bokeh's keep-alive does to a tab whose socket is gone
        for logger in loggers:
            try:
                connection.session  # what the tab's late close (or last message) then does
            except AssertionError:
                logger.error("Uncaught exception GET /hecras/ws", exc_info=True)
        assert stream.getvalue() == "", stream.getvalue()
        try:
            assert 1 + 1 == 3, "a real bug"
        except AssertionError:
            loggers[0].error("Uncaught exception GET /hecras/ws", exc_info=True)
        try:
            {}["missing"]
        except KeyError:
            loggers[1].error("error handling message", exc_info=True)
        assert "a real bug" in stream.getvalue() and "KeyError: 'missing'" in stream.getvalue()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_the_map_draws_polygons_for_small_meshes_and_centres_for_big_ones(tmp_path):
    """A browser does not want a quarter of a million polygons: past MAX_POLYGONS cells the map
    shows cell centres, with the same depths."""
    from dask_hecras import summarise
    from dask_hecras.dashboard_map import MAX_POLYGONS, read_depth

    from .test_fake_ras import fake

    for cells, shape in ((None, "polygons"), (MAX_POLYGONS + 5_000, "points")):
        prj = make_project(tmp_path / f"p{cells}" / "Demo" / "project", n_plans=1)
        assert fake(prj, "p01", *(["--cells", str(cells), "--steps", "3"] if cells else [])).returncode == 0
        folder = prj.parent / "p01"
        folder.mkdir()
        prj.with_suffix(".p01.hdf").rename(folder / "Demo.p01.hdf")
        data = read_depth(folder)
        depth = summarise(folder / "Demo.p01.hdf", time_series=False)["max_depth"].values
        assert data["shape"] == shape and data["units"] == "m"
        np.testing.assert_array_equal(np.isnan(data["value"]), depth <= 0.01)
        assert len(data["start"] if shape == "polygons" else data["x"]) == depth.size
    with pytest.raises(FileNotFoundError):
        read_depth(tmp_path)


def test_the_envelope_folds_plans_in_as_they_land_and_leaves_other_meshes_out(tmp_path):
    """The map's envelope equals the study's (ensemble.envelope over open_results) at each step,
    reading each landed plan once; a plan of another mesh is counted, not drawn."""
    from pathlib import Path

    from dask_hecras import Project, combine, ensemble, run_plan
    from dask_hecras.dashboard_map import Envelope

    results = tmp_path / "results"
    demo = Project(make_project(tmp_path / "demo", n_plans=3))
    small = Project(make_project(tmp_path / "small", n_plans=1, name="Small", cells=(6, 4)))
    landed = []
    for plan, label in zip(demo.plans + small.plans, ["p01", "p02", "p03", "small"]):
        r = run_plan(plan, engine="fake", results_dir=results)
        assert r.ok
        landed.append((str(r.summary.parent), label))
    envelope = Envelope(*landed[0])
    for k in (1, 2, 3):
        envelope.fold(landed[:k])
        value, code = envelope.values()
        names = np.asarray(envelope.labels + [""])[code]
        study = ensemble.envelope(combine([Path(f) / "summary.nc" for f, _ in landed[:k]]), "max_depth")
        expected = study["envelope"].values
        np.testing.assert_allclose(np.nan_to_num(value), np.where(expected > 0.01, expected, 0), rtol=1e-6)
        wet = expected > 0.01
        assert list(np.asarray(names)[wet]) == list(study["envelope_plan"].values[wet])
    envelope.fold(landed)
    assert envelope.other_meshes == 1 and envelope.labels == ["p01", "p02", "p03"]
    value, code = envelope.values()
    assert set(code[np.isfinite(value)]) <= {0, 1, 2} and set(code[np.isnan(value)]) <= {-1} and len(value) == 600
