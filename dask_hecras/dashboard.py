"""A HEC-RAS page in the Dask dashboard, and the plan state behind it.

Use as a scheduler preload::

    dask scheduler --preload dask_hecras.dashboard

``local_cluster()`` and the CLI switch it on. It adds

- ``/hecras`` (and ``/individual-hecras``, listed in the dashboard's "More" menu): counts per
  state, a table of plans, a panel per worker, and a timeline of plan runs per worker;
- ``/hecras/api/plans.json``: the same state as JSON.

The state comes from the scheduler itself: a :class:`HecrasPlugin` follows the transitions
of ``stage-/run-/validate-/summarise-<project>-<plan>`` tasks and the ``hecras`` events the
tasks log. It serves many batches and clients, and forgets finished plans after
``hecras.dashboard.forget-after``. The dashboard hooks used here are internal Dask APIs:
they are all in this module.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from . import config

TOPIC = "hecras"
STEPS = ("stage", "run", "validate", "summarise")
FINAL = ("succeeded", "failed")
_KEY = re.compile(r"^(stage|run|validate|summarise)-(.+-p\d{2})(?:-[0-9a-f]{6})?$")


def split_key(key) -> tuple[str | None, str | None]:
    """``run-Demo-p01`` → (``run``, ``Demo-p01``)."""
    m = _KEY.match(str(key))
    return (m.group(1), m.group(2)) if m else (None, None)


class HecrasPlugin(SchedulerPlugin):
    """Plan states, worker standing and a run timeline, kept on the scheduler."""

    name = "hecras"

    def __init__(self) -> None:
        self.scheduler = None
        self.plans: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.runs: deque[dict[str, Any]] = deque(maxlen=5000)

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler

    # --- state ----------------------------------------------------------------------

    def _plan(self, key: str) -> dict[str, Any]:
        p = self.plans.get(key)
        if p is None:
            project, _, plan = key.rpartition("-")
            p = self.plans[key] = {"key": key, "project": project, "plan": plan, "title": "", "batch": "",
                                   "state": "queued", "worker": "", "attempt": 0, "started": None,
                                   "expected": None, "message": "", "updated": time.time()}
        return p

    def _set(self, key: str, **fields) -> None:
        p = self._plan(key)
        if p["state"] in FINAL and fields.get("state") not in (None, *FINAL, "queued"):
            return  # a late message of an earlier step; a resubmission starts again at "queued"
        p.update(fields)
        p["updated"] = time.time()

    def _forget(self) -> None:
        from dask.utils import parse_timedelta

        horizon = parse_timedelta(config.get("dashboard.forget-after", "12h"), default="s")
        cutoff = time.time() - float(horizon)
        for key in [k for k, p in self.plans.items() if p["state"] in FINAL and p["updated"] < cutoff]:
            del self.plans[key]

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        step, plan_key = split_key(key)
        if step is None:
            return
        if finish == "processing":
            ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
            worker = ts.processing_on.address if ts is not None and ts.processing_on is not None else ""
            state = {"stage": None, "run": None, "validate": "validating", "summarise": "summarising"}[step]
            if state is None:  # sent to a worker: it waits there for its RAS slot until it starts
                if self._plan(plan_key)["state"] not in ("running", "retrying"):
                    self._set(plan_key, state="queued", worker=worker)
            else:
                self._set(plan_key, state=state, worker=worker)
        elif finish == "erred":
            text = kwargs.get("exception_text") or ""
            p = self._plan(plan_key)
            if p["state"] not in FINAL:
                self._set(plan_key, state="failed", message=p["message"] or text)
        elif finish == "forgotten" and step == "summarise":
            p = self.plans.get(plan_key)
            if p is not None and p["state"] not in FINAL:
                self._set(plan_key, state="failed", message=p["message"] or "cancelled")

    def log_event(self, topic, msg) -> None:
        if topic != TOPIC or not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action == "batch":
            for entry in msg.get("plans", []):
                self._set(entry["key"], state="queued", title=entry.get("title", ""), batch=msg.get("batch", ""),
                          expected=entry.get("expected"), worker="", message="", started=None)
        elif action == "step":
            self._step(msg)
        elif action in ("out of rotation", "draining", "in rotation"):
            w = self.workers.setdefault(msg.get("worker", ""), {})
            w.update(standing=action, reason=msg.get("reason", ""))
        elif action == "worker":  # capabilities (dask_hecras.worker.CapabilityPlugin)
            w = self.workers.setdefault(msg.get("worker", ""), {})
            w.update({k: v for k, v in msg.items() if k not in ("action", "worker")})
            w["free_disk"] = msg.get("free_scratch_bytes")
        elif action == "owner":  # the owner policy's last decision (dask_hecras.owner.OwnerPlugin)
            w = self.workers.setdefault(msg.get("worker", ""), {})
            w["owner"] = f"{msg.get('decision', '')}: {msg.get('reason', '')}"
        self._forget()

    def _step(self, msg: dict) -> None:
        key, step, phase = msg.get("plan", ""), msg.get("step"), msg.get("phase")
        worker = msg.get("worker", "")
        if step == "stage" and phase == "started":
            self._set(key, state="staging", worker=worker)
        if step == "stage" and phase == "finished":
            info = self.workers.setdefault(worker, {})
            if msg.get("free_disk") is not None:
                info["free_disk"] = msg["free_disk"]
            if msg.get("cache_bytes") is not None:
                info["cache_bytes"] = msg["cache_bytes"]
        if step == "run" and phase == "started":
            self._set(key, state="running", worker=worker, attempt=msg.get("attempt", 0), started=time.time(),
                      message="")
            self.runs.append({"plan": key, "worker": worker, "start": time.time(), "end": None, "status": "running"})
        elif step == "run" and phase in ("finished", "retrying", "requeued"):
            for r in reversed(self.runs):
                if r["plan"] == key and r["end"] is None:
                    r.update(end=time.time(), status=msg.get("status", phase))
                    break
            state = {"retrying": "retrying", "requeued": "queued"}.get(phase, "validating")
            self._set(key, state=state, message=msg.get("reason", ""), attempt=msg.get("attempt", 0),
                      **({"worker": ""} if phase == "requeued" else {}))
        elif step == "summarise" and phase == "finished":
            self._set(key, state=msg.get("status", "succeeded"), message=msg.get("reason", ""))

    # --- views ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        plans = []
        for p in sorted(self.plans.values(), key=lambda p: (p["batch"], p["project"], p["plan"])):
            elapsed = now - p["started"] if p["started"] and p["state"] not in FINAL else None
            plans.append({**p, "elapsed": elapsed})
        counts: dict[str, int] = {}
        for p in plans:
            counts[p["state"]] = counts.get(p["state"], 0) + 1
        running = {}
        for p in plans:
            if p["state"] == "running":
                running[p["worker"]] = running.get(p["worker"], 0) + 1
        workers = []
        if self.scheduler is not None:
            for addr, ws in self.scheduler.workers.items():
                extra = self.workers.get(addr, {})
                slots = ws.resources.get("RAS")
                standing = extra.get("standing") or ("in rotation" if slots else "no RAS slots")
                workers.append({"worker": addr, "name": str(ws.name), "slots": slots, "in_use": running.get(addr, 0),
                                "cores": extra.get("cores"), "versions": extra.get("versions", ""),
                                "ras_exe": "; ".join(path for _, path in extra.get("installs", [])),
                                "free_disk": extra.get("free_disk"), "cache_bytes": extra.get("cache_bytes"),
                                "standing": standing, "owner": extra.get("owner", ""),
                                "reason": extra.get("reason", "")})
        return {"counts": counts, "plans": plans, "workers": workers, "runs": list(self.runs), "time": now}


def _plugin(scheduler) -> HecrasPlugin:
    plugin = scheduler.plugins.get(HecrasPlugin.name)
    if plugin is None:
        plugin = HecrasPlugin()
        plugin.scheduler = scheduler
        scheduler.add_plugin(plugin, name=HecrasPlugin.name)
    return plugin


# --------------------------------------------------------------------------- JSON


def _json_handler():
    from distributed.http.utils import RequestHandler

    class PlansJSON(RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(_plugin(self.server).snapshot(), default=str))

    return PlansJSON


# --------------------------------------------------------------------------- Bokeh page

_STATE_COLOURS = {"queued": "#9e9e9e", "staging": "#80cbc4", "running": "#1e88e5", "validating": "#7e57c2",
                  "summarising": "#5c6bc0", "succeeded": "#43a047", "failed": "#e53935", "retrying": "#fb8c00"}


def _fmt_seconds(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def _fmt_bytes(value) -> str:
    from dask.utils import format_bytes

    return "" if value is None else format_bytes(value)


def hecras_doc(scheduler, extra, doc) -> None:
    """The /hecras page: refreshed every second from the plugin's state."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, DataTable, Div, HTMLTemplateFormatter, TableColumn
    from bokeh.plotting import figure

    plugin = _plugin(scheduler)
    counts = Div(text="", sizing_mode="stretch_width", css_classes=["hecras-counts"])
    plan_cols = ["project", "plan", "title", "state", "worker", "attempt", "elapsed", "expected", "message"]
    plans_src = ColumnDataSource({c: [] for c in plan_cols}, name="hecras-plans")
    state_fmt = HTMLTemplateFormatter(template='<span class="hecras-state" data-state="<%= value %>" '
                                               'style="color:<%= value == \'failed\' ? \'#e53935\' : '
                                               'value == \'succeeded\' ? \'#43a047\' : \'#1e88e5\' %>">'
                                               '<%= value %></span>')
    widths = {"project": 110, "plan": 50, "title": 180, "state": 90, "worker": 170, "attempt": 60,
              "elapsed": 70, "expected": 70, "message": 600}
    plans_table = DataTable(source=plans_src, sizing_mode="stretch_width", height=360, index_position=None,
                            columns=[TableColumn(field=c, title=c, width=widths[c],
                                                 **({"formatter": state_fmt} if c == "state" else {}))
                                     for c in plan_cols])
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

    tick = [0]

    def refresh(table) -> None:
        # BokehJS redraws a DataTable when its CDSView changes, and the view changes only
        # when the row count does: touching the view's tags redraws same-length updates
        # too, keeping the reader's scroll position.
        tick[0] += 1
        table.view.tags = [tick[0]]

    def update() -> None:
        snap = plugin.snapshot()
        order = ["queued", "staging", "running", "retrying", "validating", "summarising", "succeeded", "failed"]
        counts.text = "<b>HEC-RAS plans</b> &nbsp; " + " &nbsp; ".join(
            f'<span class="hecras-count" data-state="{s}" style="color:{_STATE_COLOURS[s]}">{s}: '
            f'<b>{snap["counts"].get(s, 0)}</b></span>' for s in order)
        plans = snap["plans"]
        plans_src.data.update({
            "project": [p["project"] for p in plans], "plan": [p["plan"] for p in plans],
            "title": [p["title"] for p in plans], "state": [p["state"] for p in plans],
            "worker": [p["worker"] for p in plans], "attempt": [p["attempt"] or "" for p in plans],
            "elapsed": [_fmt_seconds(p["elapsed"]) for p in plans],
            "expected": [_fmt_seconds(p["expected"]) for p in plans],
            "message": [(p["message"] or "")[:300] for p in plans],
        })
        refresh(plans_table)
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
        refresh(workers_table)
        now = snap["time"]
        runs = snap["runs"][-2000:]
        names = sorted({r["worker"] for r in runs}) or [""]
        timeline.y_range.factors = names
        runs_src.data = {
            "worker": [r["worker"] for r in runs], "plan": [r["plan"] for r in runs],
            "start": [r["start"] * 1000 for r in runs], "end": [(r["end"] or now) * 1000 for r in runs],
            "colour": [_STATE_COLOURS.get("running" if r["end"] is None else
                                          "failed" if r["status"] in ("failed", "retrying") else "succeeded")
                       for r in runs],
        }

    update()
    doc.add_periodic_callback(update, 1000)
    doc.title = "Dask: HEC-RAS plans"
    doc.add_root(column(counts, plans_table, Div(text="<b>Workers</b>"), workers_table, timeline,
                        sizing_mode="stretch_width"))


# --------------------------------------------------------------------------- wiring


def _register_pages() -> None:
    from distributed.dashboard import scheduler as dashboard

    dashboard.applications["/hecras"] = hecras_doc
    dashboard.applications["/individual-hecras"] = hecras_doc  # listed in the "More" menu


_register_pages()  # at import: the dashboard is wired after preloads are imported


def dask_setup(scheduler) -> None:
    """Preload hook: the plugin and the JSON route."""
    _plugin(scheduler)
    app = getattr(scheduler, "http_application", None)
    if app is not None:
        app.add_handlers(r".*", [(r"/hecras/api/plans\.json", _json_handler(), {"dask_server": scheduler})])
