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

import asyncio
import html
import json
import logging
import time
from typing import Any
from urllib.parse import quote

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
    from .queue import eta_of, expected_scale, plan_left, queue_of

    queue = queue_of(scheduler)
    snap = queue.snapshot() if queue is not None else {"time": time.time(), "batches": []}
    plans, counts, running, lefts = [], {}, {}, []
    for b in snap["batches"]:
        # what this batch's runs took against what was expected of them: before any history,
        # "expected" comes from steps and cells, and reads 1 s for runs of 5-12 s
        scale = expected_scale(b["plans"])
        for p in b["plans"]:
            state = _shown_state(p)
            counts[state] = counts.get(state, 0) + 1
            if state == "running":
                running[p["worker"]] = running.get(p["worker"], 0) + 1
            if p["state"] in ("queued", "running", "lost"):
                lefts.append(plan_left(p, scale))
            progress = p.get("progress") or {}
            plans.append({"batch": b["batch"], "index": p["index"], "project": p["project"], "plan": p["plan"],
                          "title": p["title"], "state": state, "worker": p["worker"],
                          "worker_name": p["worker_name"], "attempt": p["attempt"], "failed_runs": p["failed_runs"],
                          "elapsed": p["elapsed"], "expected": p["expected"] * scale if p["expected"] else p["expected"],
                          "progress": progress.get("fraction"), "pace": progress.get("pace"),
                          "still": progress.get("still_seconds"), "left": p.get("left"),
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
    slots = queue.slots() if queue is not None else 0
    eta = eta_of(lefts, slots)
    return {"counts": counts, "plans": plans, "workers": workers, "runs": runs, "time": snap["time"], "eta": eta}


# --------------------------------------------------------------------------- JSON


def _json_handler():
    from distributed.http.utils import RequestHandler

    class PlansJSON(RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(snapshot(self.server), default=str))

    return PlansJSON


def _log_handler():
    from distributed.http.utils import RequestHandler

    class PlanLog(RequestHandler):
        """``/hecras/api/log?batch=B&index=I&which=engine|messages``: a plan's engine log or
        computation messages, as text (``actions.plan_log``)."""

        async def get(self):
            from .actions import plan_log
            from .queue import ActionRefused, queue_of

            queue = queue_of(self.server)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            try:
                batch, index = self.get_argument("batch"), int(self.get_argument("index"))
                which = self.get_argument("which", "engine")
                if queue is None:
                    raise ActionRefused("this scheduler has no plan queue")
                text, where = await plan_log(queue, batch, index, which)
            except (ActionRefused, ValueError) as e:
                self.set_status(404)
                self.write(f"{e}\n")
                return
            self.write(f"# {where or 'nothing written yet'}\n{text}")

    return PlanLog


# --------------------------------------------------------------------------- Bokeh page

_STATE_COLOURS = {"queued": "#9e9e9e", "staging": "#80cbc4", "running": "#1e88e5", "landing": "#7e57c2",
                  "lost": "#fb8c00", "succeeded": "#43a047", "failed": "#e53935", "skipped": "#a5d6a7",
                  "cancelled": "#757575"}


def _fmt_seconds(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def _fmt_pace(seconds_per_hour) -> str:
    """Wall time per simulated hour, as engineers say it: "2.5 min per hour" simulated."""
    if seconds_per_hour is None:
        return ""
    return f"{_fmt_seconds(seconds_per_hour)}/h"


def _fmt_bytes(value) -> str:
    from dask.utils import format_bytes

    return "" if value is None else format_bytes(value)


def hecras_doc(scheduler, extra, doc) -> None:
    """The /hecras page: refreshed every second from the queue's state."""
    from bokeh.layouts import column, row
    from bokeh.models import Button, ColumnDataSource, DataTable, Div, HTMLTemplateFormatter, TableColumn
    from bokeh.plotting import figure

    from . import actions
    from .queue import ActionRefused, queue_of

    request = doc.session_context.request if doc.session_context is not None else None
    key = ((request.arguments.get("key") or [b""])[0] if request is not None else b"")
    key = key.decode() if isinstance(key, bytes) else str(key)

    # Dask's own pages, as its navigation bar names them (this page has none of its own)
    nav = Div(text="Dask dashboard: " + " &middot; ".join(
        f'<a class="hecras-nav" href="{page}">{label}</a>' for page, label in
        (("status", "Status"), ("workers", "Workers"), ("tasks", "Tasks"), ("system", "System"),
         ("profile", "Profile"), ("graph", "Graph"), ("info/main/workers.html", "Info"))),
        sizing_mode="stretch_width")
    counts = Div(text="", sizing_mode="stretch_width", css_classes=["hecras-counts"])
    plan_cols = ["project", "plan", "title", "state", "progress", "left", "pace", "worker", "attempt", "elapsed",
                 "expected", "message"]
    plans_src = ColumnDataSource({c: [] for c in plan_cols + ["folder", "batch", "index"]},
                                 name="hecras-plans")
    state_fmt = HTMLTemplateFormatter(template='<span class="hecras-state" data-state="<%= value %>" '
                                               'style="color:<%= value == \'failed\' ? \'#e53935\' : '
                                               'value == \'succeeded\' ? \'#43a047\' : \'#1e88e5\' %>">'
                                               '<%= value %></span>')
    widths = {"project": 110, "plan": 50, "title": 180, "state": 90, "progress": 130, "left": 70, "pace": 80,
              "worker": 170, "attempt": 60, "elapsed": 70, "expected": 70, "message": 600}
    # a message cut at the table's edge is whole in its tooltip, and under the table when it failed
    message_fmt = HTMLTemplateFormatter(template='<span title="<%- value %>"><%- value %></span>')
    # a bar per running plan: the fraction of its simulation window its engine has reached
    progress_fmt = HTMLTemplateFormatter(template=(
        '<% if (value !== "") { %><div class="hecras-progress" data-fraction="<%= value %>" '
        'style="position:relative;height:14px;margin-top:4px;background:#e0e0e0;border-radius:2px">'
        '<div style="height:14px;width:<%= Math.round(100 * value) %>%;background:#1e88e5;border-radius:2px"></div>'
        '<span style="position:absolute;left:4px;top:-1px;font-size:11px;color:#000">'
        '<%= Math.round(100 * value) %>%</span></div><% } %>'))
    formats = {"state": state_fmt, "message": message_fmt, "progress": progress_fmt}
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

    # --- actions: retry, cancel, drain, logs -------------------------------------------------
    chosen: dict[str, Any] = {"plan": None, "worker": None}
    picked_div = Div(text='<span class="hecras-picked">Pick a plan in the table (and a worker in the workers\' '
                          'table) to act on it.</span>')
    retry_button = Button(label="Retry plan", button_type="success", disabled=True, name="hecras-retry", width=110)
    cancel_button = Button(label="Cancel plan", button_type="danger", disabled=True, name="hecras-cancel", width=110)
    drain_button = Button(label="Drain worker", button_type="warning", disabled=True, name="hecras-drain", width=120)
    logs_div = Div(text="")
    said = Div(text="", sizing_mode="stretch_width")
    who = actions.keys_of(scheduler).who(key)
    access = Div(text='<span class="hecras-access">' + (
        f"Acting as <b>{html.escape(who)}</b>: every action is recorded in the batch's ledger." if who else
        "This page only shows. To retry, cancel or drain from it, open the link <code>dask-hecras dashboard</code> "
        "prints (it needs the cluster's certificate).") + "</span>", sizing_mode="stretch_width")

    def say(text: str, ok: bool = True) -> None:
        said.text = (f'<span class="hecras-said-{"ok" if ok else "refused"}" style="color:'
                     f'{"#2e7d32" if ok else "#c62828"}">{html.escape(text)}</span>')

    def still_allowed() -> str | None:
        current = actions.keys_of(scheduler).who(key)
        if current is None:
            say("This link's key is not valid (any more): ask for a new one with dask-hecras dashboard.", ok=False)
        return current

    def plan_action(do) -> None:
        acting = still_allowed()
        queue = queue_of(scheduler)
        if acting is None or chosen["plan"] is None or queue is None:
            return
        batch, index, label = chosen["plan"]
        try:
            say(do(queue, batch, index, acting))
        except ActionRefused as e:
            say(str(e), ok=False)
        update()

    def drain_worker() -> None:
        acting = still_allowed()
        queue = queue_of(scheduler)
        if acting is None or chosen["worker"] is None or queue is None:
            return
        address = chosen["worker"]

        async def go() -> None:
            try:
                text, ok = await actions.drain(scheduler, queue, address, acting), True
            except (ActionRefused, OSError) as e:
                text, ok = str(e), False
            doc.add_next_tick_callback(lambda: say(text, ok))

        say(f"draining {address} ...")
        asyncio.ensure_future(go())

    retry_button.on_click(lambda: plan_action(actions.retry))
    cancel_button.on_click(lambda: plan_action(actions.cancel))
    drain_button.on_click(drain_worker)

    def show_choice() -> None:
        data = plans_src.data
        plan = chosen["plan"]
        state = None
        if plan is not None:
            rows = [k for k, (b_, i_) in enumerate(zip(data["batch"], data["index"])) if (b_, i_) == plan[:2]]
            state = data["state"][rows[0]] if rows else None
        retry_button.disabled = not (who and state in ("failed", "cancelled"))
        cancel_button.disabled = not (who and state in ("queued", "staging", "running", "lost"))
        drain_button.disabled = not (who and chosen["worker"])
        text = []
        if plan is not None:
            text.append(f"Plan <b>{html.escape(plan[2])}</b> ({html.escape(str(state or 'gone'))})")
            q = f"batch={quote(plan[0])}&index={plan[1]}"
            logs_div.text = (f'<a class="hecras-log-link" data-which="engine" href="hecras/api/log?{q}&which=engine" '
                             f'target="_blank">engine log</a> &middot; <a class="hecras-log-link" data-which="messages" '
                             f'href="hecras/api/log?{q}&which=messages" target="_blank">compute messages</a>')
        if chosen["worker"]:
            text.append(f"worker <b>{html.escape(chosen['worker_name'])}</b>")
        if text:
            picked_div.text = '<span class="hecras-picked">Picked: ' + ", ".join(text) + "</span>"

    def plan_picked(attr, old, new) -> None:
        data = plans_src.data
        if new and new[0] < len(data["plan"]):
            k = new[0]
            chosen["plan"] = (data["batch"][k], int(data["index"][k]), f'{data["project"][k]} {data["plan"][k]}')
        show_choice()

    def worker_picked(attr, old, new) -> None:
        data = workers_src.data
        if new and new[0] < len(data["worker"]):
            chosen["worker"], chosen["worker_name"] = data["worker"][new[0]], data["name"][new[0]]
        show_choice()

    plans_src.selected.on_change("indices", plan_picked)
    workers_src.selected.on_change("indices", worker_picked)
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
        eta = snap.get("eta")
        counts.text = "<b>HEC-RAS plans</b> &nbsp; " + " &nbsp; ".join(
            f'<span class="hecras-count" data-state="{s}" style="color:{_STATE_COLOURS[s]}">{s}: '
            f'<b>{snap["counts"].get(s, 0)}</b></span>' for s in shown) + (
            f' &nbsp; <span class="hecras-eta" data-seconds="{eta:.0f}">done in ~<b>{_fmt_seconds(eta)}</b></span>'
            if eta is not None else "")
        plans = snap["plans"]
        plans_src.data.update({
            "project": [p["project"] for p in plans], "plan": [p["plan"] for p in plans],
            "title": [p["title"] for p in plans], "state": [p["state"] for p in plans],
            "progress": ["" if p["progress"] is None or p["state"] != "running" else p["progress"] for p in plans],
            "left": [_fmt_seconds(p["left"]) for p in plans],
            "pace": [_fmt_pace(p["pace"]) for p in plans],
            "batch": [p["batch"] for p in plans], "index": [p["index"] for p in plans],
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
        show_choice()
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
    doc.add_root(column(nav, counts, plans_table, access, row(picked_div, retry_button, cancel_button, drain_button,
                                                              logs_div), said,
                        failures, plan_map.mode, plan_map.figure, plan_map.note, Div(text="<b>Workers</b>"),
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
    """The worker panel's plugin, the JSON and log routes, the action links' handler and the menu
    name (the pages are registered at import)."""
    from . import actions

    actions.install(scheduler)
    if WorkerPanel.name not in scheduler.plugins:
        scheduler.add_plugin(WorkerPanel(), name=WorkerPanel.name)
        panel = scheduler.plugins[WorkerPanel.name]
        panel.scheduler = scheduler
    app = getattr(scheduler, "http_application", None)
    if app is not None and not getattr(scheduler, "_hecras_json_route", False):
        app.add_handlers(r".*", [(r"/hecras/api/plans\.json", _json_handler(), {"dask_server": scheduler}),
                                 (r"/hecras/api/log", _log_handler(), {"dask_server": scheduler})])
        scheduler._hecras_json_route = True
        _name_in_more_menu(scheduler)


def dask_setup(scheduler) -> None:
    """``--preload dask_hecras.dashboard``, the earlier name of ``dask_hecras.scheduler``."""
    from .scheduler import dask_setup as setup

    setup(scheduler)
