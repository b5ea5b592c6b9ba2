"""A HEC-RAS page in the Dask dashboard, and the state behind it.

Installed by the scheduler preload ``dask_hecras.scheduler`` (``local_cluster()`` and the
CLI switch it on). It adds

- ``/hecras`` (and ``/individual-hecras``, "HEC-RAS plans" in the dashboard's "More" menu): counts per
  state, a table of plans, the maximum depth of the plan picked in it on its mesh
  (``dashboard_map``), a panel per worker, and a timeline of plan runs per worker;
- ``/hecras/api/plans.json``: the same state as JSON.

Plans and runs come from the plan queue (``queue.PlanQueue``), which owns them; a small
plugin, :class:`WorkerPanel`, keeps what workers report about themselves (capabilities, the
owner policy's decisions, standing). Each event costs the same however many plans are kept:
nothing is rescanned per event. The dashboard hooks used here are internal Dask APIs: they
are all in this module.
"""

from __future__ import annotations

import html
import json
import logging
import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

TOPIC = "hecras"
MENU_NAME = "HEC-RAS plans"
FINAL = ("succeeded", "failed", "skipped", "cancelled")
STATES = ("queued", "staging", "running", "landing", "lost", "succeeded", "failed", "skipped", "cancelled")


class WorkerPanel(SchedulerPlugin):
    """What each worker reported last: capabilities, the owner policy's decision, standing."""

    name = "hecras-workers"

    def __init__(self) -> None:
        self.scheduler = None
        self.workers: dict[str, dict[str, Any]] = {}

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler

    def log_event(self, topic, msg) -> None:
        if topic != TOPIC or not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action in ("out of rotation", "draining", "in rotation"):
            self.workers.setdefault(msg.get("worker", ""), {}).update(standing=action, reason=msg.get("reason", ""))
        elif action == "worker":  # capabilities (dask_hecras.worker.CapabilityPlugin)
            w = self.workers.setdefault(msg.get("worker", ""), {})
            w.update({k: v for k, v in msg.items() if k not in ("action", "worker")})
            w["free_disk"] = msg.get("free_scratch_bytes")
        elif action == "owner":  # the owner policy's last decision (dask_hecras.owner.OwnerPlugin)
            self.workers.setdefault(msg.get("worker", ""), {})["owner"] = f"{msg.get('decision', '')}: {msg.get('reason', '')}"

    def remove_worker(self, scheduler=None, worker=None, **kwargs) -> None:
        self.workers.pop(worker, None)


def _shown_state(p: dict) -> str:
    if p["state"] == "running":
        return {"running": "running", "staging": "staging"}.get(p["step"], "staging")
    return p["state"]


def snapshot(scheduler) -> dict[str, Any]:
    """Every plan the queue holds, the workers, and the runs, as the page and JSON view show them."""
    from .queue import queue_of

    queue = queue_of(scheduler)
    snap = queue.snapshot() if queue is not None else {"time": time.time(), "batches": []}
    plans, counts, running = [], {}, {}
    for b in snap["batches"]:
        # what this batch's runs took against what was expected of them: before any history,
        # "expected" comes from steps and cells, and reads 1 s for runs of 5-12 s
        measured = [p for p in b["plans"] if p.get("run_seconds") and p.get("expected")]
        scale = sum(p["run_seconds"] for p in measured) / sum(p["expected"] for p in measured) if measured else 1.0
        for p in b["plans"]:
            state = _shown_state(p)
            counts[state] = counts.get(state, 0) + 1
            if state == "running":
                running[p["worker"]] = running.get(p["worker"], 0) + 1
            plans.append({"batch": b["batch"], "project": p["project"], "plan": p["plan"], "title": p["title"],
                          "state": state, "worker": p["worker"],
                          "worker_name": p["worker_name"], "attempt": p["attempt"], "failed_runs": p["failed_runs"],
                          "elapsed": p["elapsed"], "expected": p["expected"] * scale if p["expected"] else p["expected"],
                          "message": p["reason"],
                          "summary": p["summary"], "folder": p["folder"]})
    panel = scheduler.plugins.get(WorkerPanel.name)
    reported = panel.workers if panel is not None else {}
    workers = []
    for addr, ws in scheduler.workers.items():
        extra = reported.get(addr, {})
        slots = ws.resources.get("RAS")
        standing = extra.get("standing") or ("in rotation" if slots else "no RAS slots")
        workers.append({"worker": addr, "name": str(ws.name), "slots": slots, "in_use": running.get(addr, 0),
                        "cores": extra.get("cores"), "versions": extra.get("versions", ""),
                        "ras_exe": "; ".join(path for _, path in extra.get("installs", [])),
                        "free_disk": extra.get("free_disk"), "cache_bytes": extra.get("cache_bytes"),
                        "standing": standing, "owner": extra.get("owner", ""), "reason": extra.get("reason", "")})
    runs = list(queue.runs) if queue is not None else []
    return {"counts": counts, "plans": plans, "workers": workers, "runs": runs, "time": snap["time"]}


# --------------------------------------------------------------------------- JSON


def _json_handler():
    from distributed.http.utils import RequestHandler

    class PlansJSON(RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(snapshot(self.server), default=str))

    return PlansJSON


# --------------------------------------------------------------------------- Bokeh page

_STATE_COLOURS = {"queued": "#9e9e9e", "staging": "#80cbc4", "running": "#1e88e5", "landing": "#7e57c2",
                  "lost": "#fb8c00", "succeeded": "#43a047", "failed": "#e53935", "skipped": "#a5d6a7",
                  "cancelled": "#757575"}


def _fmt_seconds(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def _fmt_bytes(value) -> str:
    from dask.utils import format_bytes

    return "" if value is None else format_bytes(value)


def hecras_doc(scheduler, extra, doc) -> None:
    """The /hecras page: refreshed every second from the queue's state."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, DataTable, Div, HTMLTemplateFormatter, TableColumn
    from bokeh.plotting import figure

    # Dask's own pages, as its navigation bar names them (this page has none of its own)
    nav = Div(text="Dask dashboard: " + " &middot; ".join(
        f'<a class="hecras-nav" href="{page}">{label}</a>' for page, label in
        (("status", "Status"), ("workers", "Workers"), ("tasks", "Tasks"), ("system", "System"),
         ("profile", "Profile"), ("graph", "Graph"), ("info/main/workers.html", "Info"))),
        sizing_mode="stretch_width")
    counts = Div(text="", sizing_mode="stretch_width", css_classes=["hecras-counts"])
    plan_cols = ["project", "plan", "title", "state", "worker", "attempt", "elapsed", "expected", "message"]
    plans_src = ColumnDataSource({c: [] for c in plan_cols + ["folder"]}, name="hecras-plans")
    state_fmt = HTMLTemplateFormatter(template='<span class="hecras-state" data-state="<%= value %>" '
                                               'style="color:<%= value == \'failed\' ? \'#e53935\' : '
                                               'value == \'succeeded\' ? \'#43a047\' : \'#1e88e5\' %>">'
                                               '<%= value %></span>')
    widths = {"project": 110, "plan": 50, "title": 180, "state": 90, "worker": 170, "attempt": 60,
              "elapsed": 70, "expected": 70, "message": 600}
    # a message cut at the table's edge is whole in its tooltip, and under the table when it failed
    message_fmt = HTMLTemplateFormatter(template='<span title="<%- value %>"><%- value %></span>')
    formats = {"state": state_fmt, "message": message_fmt}
    plans_table = DataTable(source=plans_src, sizing_mode="stretch_width", height=120, index_position=None,
                            columns=[TableColumn(field=c, title=c, width=widths[c],
                                                 **({"formatter": formats[c]} if c in formats else {}))
                                     for c in plan_cols])
    failures = Div(text="", sizing_mode="stretch_width", css_classes=["hecras-failures"])
    worker_cols = ["name", "worker", "slots", "in_use", "cores", "versions", "ras_exe", "free_disk", "cache",
                   "standing", "owner", "reason"]
    workers_src = ColumnDataSource({c: [] for c in worker_cols}, name="hecras-workers")
    worker_widths = {"name": 110, "worker": 170, "slots": 50, "in_use": 60, "cores": 50, "versions": 90,
                     "ras_exe": 260, "free_disk": 90, "cache": 80, "standing": 110, "owner": 260, "reason": 300}
    workers_table = DataTable(source=workers_src, sizing_mode="stretch_width", height=160, index_position=None,
                              columns=[TableColumn(field=c, title="Ras.exe" if c == "ras_exe" else c.replace("_", " "),
                                                   width=worker_widths[c])
                                       for c in worker_cols])
    runs_src = ColumnDataSource({"worker": [], "start": [], "end": [], "plan": [], "colour": []})
    timeline = figure(height=240, sizing_mode="stretch_width", x_axis_type="datetime", y_range=[""],
                      title="Plan runs per worker", tools="xpan,xwheel_zoom,reset",
                      tooltips=[("plan", "@plan"), ("worker", "@worker")])
    timeline.hbar(y="worker", left="start", right="end", height=0.7, color="colour", source=runs_src)
    timeline.text(x="start", y="worker", text="plan", source=runs_src, x_offset=3, text_font_size="9pt",
                  text_baseline="middle", text_color="white", name="hecras-run-labels")  # which bar is which plan

    from .dashboard_map import PlanMap

    plan_map = PlanMap(doc)

    def picked(attr, old, new) -> None:  # a row picked in the plan table: its map
        data = plans_src.data
        if new and new[0] < len(data["plan"]) and data["state"][new[0]] == "succeeded":
            k = new[0]
            plan_map.show(data["folder"][k], f'{data["project"][k]} {data["plan"][k]} {data["title"][k]}')

    plans_src.selected.on_change("indices", picked)
    tick = [0]

    def refresh(table) -> None:
        # BokehJS redraws a DataTable when its CDSView changes, and the view changes only
        # when the row count does: touching the view's tags redraws same-length updates
        # too, keeping the reader's scroll position.
        tick[0] += 1
        table.view.tags = [tick[0]]

    def update() -> None:
        snap = snapshot(scheduler)
        shown = [s for s in STATES if s in ("queued", "running", "succeeded", "failed") or snap["counts"].get(s)]
        counts.text = "<b>HEC-RAS plans</b> &nbsp; " + " &nbsp; ".join(
            f'<span class="hecras-count" data-state="{s}" style="color:{_STATE_COLOURS[s]}">{s}: '
            f'<b>{snap["counts"].get(s, 0)}</b></span>' for s in shown)
        plans = snap["plans"]
        plans_src.data.update({
            "project": [p["project"] for p in plans], "plan": [p["plan"] for p in plans],
            "title": [p["title"] for p in plans], "state": [p["state"] for p in plans],
            "worker": [p["worker_name"] or p["worker"] for p in plans],
            "attempt": [p["attempt"] or "" for p in plans],
            "elapsed": [_fmt_seconds(p["elapsed"]) for p in plans],
            "expected": [_fmt_seconds(p["expected"]) for p in plans],
            "message": [(p["message"] or "")[:2000] for p in plans],
            "folder": [p["folder"] for p in plans],
        })
        landed = [(p["folder"], f'{p["project"]} {p["plan"]} {p["title"]}') for p in plans
                  if p["state"] == "succeeded" and p["folder"]]
        if plan_map.shown is None and not plans_src.selected.indices and landed:
            plan_map.show(*landed[-1])  # until one is picked: the latest landed
        plan_map.landed(landed)
        plans_table.height = min(600, 30 + 26 * max(1, len(plans)))  # no blank gap under a short table
        refresh(plans_table)
        failed = [p for p in plans if p["state"] == "failed"]
        failures.text = ("" if not failed else "<b>Failed plans</b><ul>" + "".join(
            f'<li class="hecras-failure"><b>{html.escape(p["project"])} {html.escape(p["plan"])}</b> '
            f'{html.escape(p["title"] or "")}: {html.escape(p["message"] or "")}</li>' for p in failed) + "</ul>")
        ws = snap["workers"]
        workers_src.data.update({
            "name": [w["name"] for w in ws], "worker": [w["worker"] for w in ws],
            "slots": [str(w["slots"] if w["slots"] is not None else "-") for w in ws],
            "in_use": [str(w["in_use"]) for w in ws], "cores": [str(w["cores"] or "-") for w in ws],
            "versions": [w["versions"] or "-" for w in ws], "ras_exe": [w["ras_exe"] or "-" for w in ws],
            "free_disk": [_fmt_bytes(w["free_disk"]) or "-" for w in ws],
            "cache": [_fmt_bytes(w["cache_bytes"]) or "-" for w in ws],
            "standing": [w["standing"] for w in ws], "owner": [w["owner"] for w in ws],
            "reason": [w["reason"] for w in ws],
        })
        workers_table.height = min(400, 30 + 26 * max(1, len(ws)))
        refresh(workers_table)
        now = snap["time"]
        runs = snap["runs"][-2000:]
        named = [r.get("worker_name") or r["worker"] for r in runs]  # as the tables name workers
        timeline.y_range.factors = sorted(set(named)) or [""]
        runs_src.data = {
            "worker": named, "plan": [r["plan"] for r in runs],
            "start": [r["start"] * 1000 for r in runs], "end": [(r["end"] or now) * 1000 for r in runs],
            "colour": [_STATE_COLOURS.get("running" if r["end"] is None else
                                          "succeeded" if r["status"] == "landed" else "failed")
                       for r in runs],
        }

    update()
    doc.add_periodic_callback(update, 1000)
    doc.title = "Dask: HEC-RAS plans"
    doc.add_root(column(nav, counts, plans_table, failures, plan_map.mode, plan_map.figure, plan_map.note, Div(text="<b>Workers</b>"),
                        workers_table, timeline, sizing_mode="stretch_width"))


# --------------------------------------------------------------------------- wiring


class ClosedTabNoise(logging.Filter):
    """Drops the traceback Bokeh logs when a browser tab closes mid-exchange, and only that one.

    Bokeh's keep-alive (every 500 ms under Dask) can find a closing tab's socket gone and detach
    its session before the socket's own close, or a last message, is handled; those then fail
    ``assert self._session is not None`` in ``ServerConnection.session`` and print a traceback
    for a tab that is simply gone. Any other error, an ``AssertionError`` raised anywhere else
    included, is logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        if not exc or not isinstance(exc[1], AssertionError) or exc[2] is None:
            return True
        tb = exc[2]
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        detached = code.co_name == "session" and code.co_filename.replace("\\", "/").endswith("bokeh/server/connection.py")
        return not detached


_CLOSED_TAB_NOISE = ClosedTabNoise()


def _quieten_closed_tabs() -> None:
    for name in ("tornado.application", "bokeh.server.protocol_handler"):
        logger = logging.getLogger(name)
        if _CLOSED_TAB_NOISE not in logger.filters:
            logger.addFilter(_CLOSED_TAB_NOISE)


def _register_pages() -> None:
    from distributed.dashboard import scheduler as dashboard

    dashboard.applications["/hecras"] = hecras_doc
    dashboard.applications["/individual-hecras"] = hecras_doc  # listed in the "More" menu


_register_pages()  # at import: the dashboard is wired after preloads are imported
_quieten_closed_tabs()


def _name_in_more_menu(scheduler) -> None:
    """Dask names "More" menu entries after their URL ("Hecras"); ours is "HEC-RAS plans".
    The menu is built from the scheduler's memoized template variables, shared with its pages."""
    from distributed.dashboard.scheduler import template_variables

    for plot in template_variables(scheduler)["plots"]:
        if plot["url"] == "individual-hecras":
            plot["name"] = MENU_NAME


def install(scheduler) -> None:
    """The worker panel's plugin, the JSON route and the menu name (the pages are registered at import)."""
    if WorkerPanel.name not in scheduler.plugins:
        scheduler.add_plugin(WorkerPanel(), name=WorkerPanel.name)
        panel = scheduler.plugins[WorkerPanel.name]
        panel.scheduler = scheduler
    app = getattr(scheduler, "http_application", None)
    if app is not None and not getattr(scheduler, "_hecras_json_route", False):
        app.add_handlers(r".*", [(r"/hecras/api/plans\.json", _json_handler(), {"dask_server": scheduler})])
        scheduler._hecras_json_route = True
        _name_in_more_menu(scheduler)


def dask_setup(scheduler) -> None:
    """``--preload dask_hecras.dashboard``, the earlier name of ``dask_hecras.scheduler``."""
    from .scheduler import dask_setup as setup

    setup(scheduler)
