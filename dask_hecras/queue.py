"""The plan queue on the scheduler: it owns every batch and releases a plan's run only when a
worker has a free, open ``RAS`` slot.

Dask sends every resource-restricted task to a worker at once, where it waits for the slot;
a worker's death then marks every plan waiting there as suspicious, and a client's futures
die with it. So a batch is not a graph of futures here: :func:`dask_hecras.submit` hands it to
this queue (``hecras_submit``, a scheduler handler), which keeps the plans, longest expected
first, and submits one task per *attempt* (``runs.run_attempt``), restricted to a worker whose
slot is free right now, through its own client in the scheduler process. Nothing waits on a
worker that may die or close its slot, and a plan that never started never counts as failed.

What happens to an attempt decides what happens to its plan (``runs.Outcome``): landed (done),
a failure another run may fix (queued again, up to ``retries`` failed runs), a failure it
cannot fix, stopped on purpose (queued again, no count), landing to be tried again later (on
the same worker, without running the engine again). An attempt whose worker left is held back
for ``hecras.queue.lost-grace``: the PC's next worker reports what its start-up sweep found (a
finished run it landed, or nothing), and the results folder is checked before the plan runs
again, so a landed run never runs twice.

Each batch's ledger (``ledger``) is written from here; a scheduler that restarts with this
preload and ``hecras.queue.state`` resumes the unfinished batches it lists.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from . import config, ledger, placement, records
from .runs import DUPLICATE, FAILED, LANDED, LANDING, LOST, PROGRESS_TOPIC, REQUEUE, RETRY, AttemptSpec, land_again, \
    run_attempt, summarise_plan
from .slots import RESOURCE

log = logging.getLogger("dask_hecras")
TOPIC = "hecras"
NAME = "hecras-queue"
ACTIVE = ("running", "lost", "landing")


@dataclass
class PlanState:
    """One plan of a batch, as the queue follows it."""

    index: int
    project: str  # the .prj, full path as the client gave it
    plan_id: str
    title: str
    project_dir: str  # its results folder: results_dir/<claimed name>
    fingerprint: str
    expected: float
    state: str = "queued"  # queued, running, lost, landing, succeeded, failed, skipped, cancelled
    step: str = ""  # while running: released, staging, running
    attempt: int = 0  # attempts released
    failed_runs: int = 0
    lost: int = 0
    attempt_id: str = ""  # the current (or last) attempt
    worker: str = ""  # its worker's address
    worker_name: str = ""
    reason: str = ""
    started: float | None = None  # when the current attempt's engine started
    updated: float = field(default_factory=time.time)
    deadline: float | None = None  # lost: end of the grace; landing: next try
    landing_tries: int = 0
    run_dir: str = ""  # landing: where the results wait
    avoid: set = field(default_factory=set)  # worker names whose runs of it failed
    summary: str = ""  # "", wanted, pending, done, failed: ...
    summary_tries: int = 0
    summary_at: float = 0.0  # wanted: not before this time
    run_seconds: float | None = None
    version: str = ""  # the plan's Program Version: a worker needs that HEC-RAS or newer
    prepared: bool = False  # prepared for HEC-RAS's Linux engine (has its .tmp.hdf/.b/.x inputs)
    progress: dict | None = None  # the running attempt's last progress report (``progress.Progress``, plus "at")
    run_folder: str = ""  # the running attempt's run folder, on its worker

    @property
    def label(self) -> str:
        return f"{Path(self.project).stem}-{self.plan_id}"

    @property
    def final(self) -> bool:
        return self.state in ledger.FINAL

    def view(self, now: float) -> dict:
        return {"index": self.index, "project": Path(self.project).stem, "project_path": self.project,
                "plan": self.plan_id, "title": self.title, "label": self.label, "state": self.state,
                "step": self.step, "attempt": self.attempt, "failed_runs": self.failed_runs, "lost": self.lost,
                "attempt_id": self.attempt_id, "worker": self.worker, "worker_name": self.worker_name,
                "reason": self.reason, "expected": self.expected, "run_seconds": self.run_seconds,
                "elapsed": now - self.started if self.started and self.state == "running" else None,
                "summary": self.summary, "folder": str(Path(self.project_dir) / self.plan_id),
                "progress": self.progress if self.state == "running" else None,
                "left": self.left(now), "run_folder": self.run_folder if self.state == "running" else ""}

    def left(self, now: float) -> float | None:
        """Run time still to go of the running attempt, from its engine's last progress report
        (``None`` before one)."""
        pr = self.progress
        if self.state != "running" or not pr or pr.get("left_seconds") is None:
            return None
        return max(0.0, float(pr["left_seconds"]) - (now - float(pr.get("at") or now)))


@dataclass
class BatchState:
    id: str
    seq: int
    root: Path
    engine: str
    retries: int
    timeout: float | None
    scratch: str | None
    submitted: str
    plans: list[PlanState]
    client: str = ""
    finished: float | None = None
    cancelled: bool = False
    dirty: bool = True
    written: float = 0.0
    writing: bool = False
    write_after: float = 0.0  # a ledger that could not be written waits a little before the next try
    recorded_finished: bool = False  # its ledger on disk says it finished: only then is it over for clients
    actions: list = field(default_factory=list)  # what users did from the dashboard: who, when, what

    def done(self) -> bool:
        return all(p.final for p in self.plans) and not any(p.summary in ("pending", "wanted") for p in self.plans)


@dataclass
class Inflight:
    """A task the queue is waiting for."""

    kind: str  # run, land, summarise
    batch: str
    index: int
    attempt_id: str
    key: str
    worker: str  # address
    worker_name: str
    future: Any = None


WAIT = "wait"  # a worker that has not reported its engines yet


class ActionRefused(ValueError):
    """A dashboard action that does not apply (a plan in another state, a worker gone)."""

PROGRESS_KEYS = ("fraction", "sim_hours", "window_hours", "wall_seconds", "pace", "left_seconds", "still_seconds",
                 "source")


class PlanQueue(SchedulerPlugin):
    """The queue; one per scheduler, installed by the ``dask_hecras.scheduler`` preload (or by
    ``submit`` on a scheduler without it)."""

    name = NAME

    def __init__(self) -> None:
        self.scheduler = None
        self.client = None
        self.batches: dict[str, BatchState] = {}
        self.heap: list[tuple[float, int, str, int]] = []  # (-expected, seq, batch, index) of queued plans
        self.inflight: dict[str, Inflight] = {}  # key → task
        self.attempts: dict[str, tuple[str, int]] = {}  # attempt id → (batch, plan index), every attempt issued
        self.runs: deque[dict] = deque(maxlen=5000)  # engine runs, for the dashboard's timeline
        self.unmatched: deque[dict] = deque(maxlen=2000)  # PCs' reports that came before their batch was resumed
        self._seq = 0
        self._kick = None
        self._ready: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._pc = None
        self.state_file: Path | None = None
        self.engines: dict[str, dict | None] = {}  # worker address → the engines it reported (placement)
        self.names: dict[str, str] = {}
        self._placement_checked: tuple | None = None
        self.joined: dict[str, float] = {}  # worker address → when it joined (its first report follows)

    # --- life ---------------------------------------------------------------------------

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        self._ready = asyncio.Event()
        for op, handler in (("hecras_submit", self.handle_submit), ("hecras_batch", self.handle_batch),
                            ("hecras_cancel", self.handle_cancel), ("hecras_snapshot", self.handle_snapshot)):
            scheduler.handlers[op] = handler
        state = config.get("queue.state")
        self.state_file = ledger.default_state_file() if state == "default" else (Path(state) if state else None)
        self._spawn(self._connect())
        self._spawn(self._resume())
        from tornado.ioloop import PeriodicCallback

        self._pc = PeriodicCallback(self._tick, 500)
        self._pc.start()

    async def close(self) -> None:
        if self._pc is not None:
            self._pc.stop()
        for b in self.batches.values():
            if b.dirty or b.finished is None:
                try:
                    await asyncio.wait_for(self._write(b, time.time()), 10)
                except Exception as e:
                    log.warning("could not write the ledger of %s on close: %r", b.id, e)
        for t in list(self._tasks):
            t.cancel()
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.close(), 10)
            except Exception:
                pass

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        """The queue's own client, to submit tasks: it lives as long as the scheduler."""
        from distributed import Client

        while True:
            try:
                self.client = await Client(self.scheduler.address, asynchronous=True, name="dask-hecras queue",
                                           security=_client_security(self.scheduler.security), timeout="20s",
                                           set_as_default=False)  # a LocalCluster's scheduler runs in the
                # user's own process: the queue's client must not become their default client, nor
                # set (and, closing after theirs, leave) ``scheduler: dask.distributed`` in their config
                break
            except Exception as e:  # the scheduler not listening yet, a certificate problem
                log.warning("the dask-hecras queue cannot connect its client to %s yet: %r",
                            self.scheduler.address, e)
                await asyncio.sleep(1.0)
        self._ready.set()
        self.kick()

    # --- hooks --------------------------------------------------------------------------

    def add_worker(self, scheduler=None, worker=None) -> None:
        self.engines.setdefault(worker, None)  # not reported yet
        self.joined[worker] = time.monotonic()
        self.kick()

    def remove_worker(self, scheduler=None, worker=None, *, stimulus_id=None, **kwargs) -> None:
        """Every attempt on the worker that left is held back until its PC reports on it."""
        self.engines.pop(worker, None)
        self.names.pop(worker, None)
        self.joined.pop(worker, None)
        now = time.time()
        grace = config.seconds("queue.lost-grace", "60s")
        for key, task in list(self.inflight.items()):
            if task.worker != worker:
                continue
            if task.kind == "summarise":  # only reads the landed results: anywhere will do
                del self.inflight[key]
                self._cancel(task)
                self._summarise(self.batches[task.batch], self.batches[task.batch].plans[task.index])
                continue
            del self.inflight[key]
            self._cancel(task)
            b = self.batches.get(task.batch)
            if b is None:
                continue
            p = b.plans[task.index]
            if p.attempt_id != task.attempt_id or p.final:
                continue
            p.state, p.step, p.deadline = "lost", "", now + grace
            p.reason = (f"its worker {task.worker_name} left; waiting up to {grace:g} s for that PC to report "
                        f"on attempt {p.attempt}")
            self._touch(b, p)
            self._end_run(p, "lost")
        self.kick()

    def log_event(self, topic, msg) -> None:
        if topic == PROGRESS_TOPIC and isinstance(msg, dict):
            self._progress(msg)
            return
        if topic != TOPIC or not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action == "attempt":
            where = self.attempts.get(msg.get("attempt_id", ""))
            if where is None or where[0] not in self.batches:
                return
            b = self.batches[where[0]]
            p = b.plans[where[1]]
            if p.attempt_id != msg["attempt_id"] or p.state != "running":
                return
            p.step = msg.get("phase", p.step)
            if p.step == "running":
                p.started = time.time()
                p.run_folder = str(msg.get("run_dir") or "")
                self.runs.append({"plan": p.label, "batch": b.id, "worker": p.worker,
                                  "worker_name": p.worker_name, "start": p.started,
                                  "end": None, "status": "running", "attempt_id": p.attempt_id})
            self._touch(b, p)
        elif action == "recovered":
            outcome = msg.get("outcome") or {}
            if outcome.get("attempt_id", "") not in self.attempts:
                self.unmatched.append(msg)
            self._resolve(outcome.get("attempt_id", ""), outcome, reporter=msg.get("worker"))
        elif action == "swept":
            self.unmatched.append(msg)
            self._swept(str(msg.get("name", "")))
        elif action == "worker" and msg.get("worker"):  # capabilities: which engines, which versions
            self.engines[msg["worker"]] = msg.get("engines") if isinstance(msg.get("engines"), dict) else {}
            self.names[msg["worker"]] = str(msg.get("name") or msg["worker"])
            self.kick()

    def _progress(self, msg: dict) -> None:
        """A running attempt's progress: kept for the page, the CLI and the ledger's next write
        (its heartbeat). One dictionary lookup and a small copy per report: no file, no rescan."""
        where = self.attempts.get(msg.get("attempt_id", ""))
        b = self.batches.get(where[0]) if where else None
        if b is None:
            return
        p = b.plans[where[1]]
        if p.attempt_id != msg["attempt_id"] or p.state != "running":
            return
        try:  # numbers, or the page and every snapshot would fail on a bad report
            p.progress = {k: (str(msg.get(k) or "") if k == "source" else
                              None if msg.get(k) is None else float(msg[k])) for k in PROGRESS_KEYS}
        except (TypeError, ValueError):
            return
        p.progress["at"] = time.time()

    # --- submitting ---------------------------------------------------------------------

    async def handle_submit(self, batch: dict) -> dict:
        """Take a batch from a client; reply once its ledger is on disk."""
        batch_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        try:
            accepted = await asyncio.to_thread(_prepare, batch_id, batch)
        except (OSError, ValueError) as e:
            return {"status": "error", "message": str(e)}
        b = self._add(accepted)
        try:
            await self._write(b, time.time())
        except OSError as e:
            del self.batches[b.id]
            return {"status": "error", "message": f"the batch's ledger cannot be written in {b.root}: {e}"}
        self._remember()
        self.kick()
        return {"status": "OK", "batch": b.id,
                "skipped": [p.index for p in b.plans if p.state == "skipped"]}

    def _add(self, data: dict) -> BatchState:
        self._seq += 1
        b = BatchState(data["batch"], self._seq, Path(data["results_dir"]), data["engine"], int(data["retries"]),
                       data.get("timeout"), data.get("scratch"), data["submitted"], [], data.get("client", ""),
                       actions=list(data.get("actions") or []))
        for e in data["plans"]:
            p = PlanState(int(e["index"]), e["project"], e["plan"], e.get("title", ""), e["folder"],
                          e.get("fingerprint", ""), float(e.get("expected") or 0.0),
                          version=str(e.get("version") or ""), prepared=bool(e.get("prepared")))
            for k in ("state", "attempt", "failed_runs", "lost", "attempt_id", "worker_name", "reason", "summary",
                      "run_seconds"):
                if k in e and e[k] is not None:
                    setattr(p, k, e[k])
            b.plans.append(p)
            if p.attempt_id:
                self.attempts[p.attempt_id] = (b.id, p.index)
            if p.state == "queued":
                heapq.heappush(self.heap, (-p.expected, b.seq, b.id, p.index))
        self.batches[b.id] = b
        return b

    # --- releasing ----------------------------------------------------------------------

    def kick(self) -> None:
        """Release plans soon (once per turn of the event loop, however often asked)."""
        if self._kick is None and self.scheduler is not None:
            self._kick = asyncio.get_running_loop().call_soon(self._release)

    def _free_slots(self, ws) -> int:
        total = ws.resources.get(RESOURCE, 0)
        if total < 1:
            return 0
        ours = sum(1 for t in self.inflight.values() if t.kind == "run" and t.worker == ws.address)
        foreign = sum(ts.resource_restrictions.get(RESOURCE, 0) for ts in ws.processing
                      if ts.resource_restrictions and ts.key not in self.inflight)
        return int(total - ours - foreign)

    def _release(self) -> None:
        from distributed.core import Status

        self._kick = None
        if self.client is None:
            return
        self._take_back()
        if not self.heap:
            return
        workers = [ws for ws in self.scheduler.workers.values() if ws.status == Status.running]
        self._fail_unrunnable(workers)
        free = {ws: self._free_slots(ws) for ws in workers}
        free = {ws: n for ws, n in free.items() if n > 0}
        while free and self.heap:
            ws = max(free, key=lambda w: (free[w], w.address))  # spread over the free PCs
            p, b = self._next_for(ws, len(free) > 1)
            if p is None:  # nothing queued that this worker can run: the others may
                del free[ws]
                continue
            self._run(b, p, ws)
            free[ws] -= 1
            if free[ws] <= 0:
                del free[ws]

    def _take_back(self) -> None:
        """A run released to a PC whose slot closed before it could start (its owner came back)
        goes back in the queue, for a PC with an open slot: it spends nothing."""
        for key, task in list(self.inflight.items()):
            if task.kind != "run":
                continue
            ws = self.scheduler.workers.get(task.worker)
            b = self.batches.get(task.batch)
            if ws is None or b is None or ws.resources.get(RESOURCE, 0) >= 1:
                continue
            p = b.plans[task.index]
            if p.attempt_id == task.attempt_id and p.state == "running" and p.step == "released":
                del self.inflight[key]
                self._cancel(task)
                self._queue(b, p, f"{task.worker_name} closed its slot before the run began")

    def _engines_of(self, address: str):
        """What a worker reported it has; ``WAIT`` until its first report (a second after it joins),
        then, for a worker that never reports (no ``--preload dask_hecras.worker``), ``None``:
        unknown, it may try (and is taken out of rotation if it cannot)."""
        reported = self.engines.get(address)
        if reported is not None:
            return reported
        joined = self.joined.get(address)
        if joined is not None and time.monotonic() - joined < config.seconds("queue.first-report", "10s"):
            return WAIT
        return None

    def _fail_unrunnable(self, workers) -> None:
        """Plans no worker here can run (no worker has their engine, or a version that opens
        them) fail at once, saying so, rather than wait for ever. Judged only once every worker
        has reported what it has."""
        reported = {ws.address: self._engines_of(ws.address) for ws in workers}
        if not reported or any(e is WAIT for e in reported.values()):
            return
        seen = (repr(sorted(reported.items(), key=lambda item: item[0])), self._seq)
        if seen == self._placement_checked:  # same workers, same engines, no new batch: nothing changed
            return
        self._placement_checked = seen
        verdict: dict[tuple, bool] = {}
        for b in self.batches.values():
            if b.cancelled or b.engine not in placement.KINDS:
                continue
            for p in b.plans:
                if p.state != "queued":
                    continue
                need = (b.engine, p.version, p.prepared)
                if need not in verdict:
                    verdict[need] = any(placement.can_run(*need, e) for e in reported.values())
                if not verdict[need]:
                    self._set(b, p, "failed", placement.why_not(
                        *need, {self.names.get(a, a): e for a, e in reported.items()}))

    def _next_for(self, ws, others_free: bool):
        """The longest queued plan this worker can run, preferring one that has not failed on it."""
        skipped, unable, found = [], [], (None, None)
        while self.heap:
            entry = heapq.heappop(self.heap)
            b = self.batches.get(entry[2])
            if b is None or b.cancelled:
                continue
            p = b.plans[entry[3]]
            if p.state != "queued":
                continue
            engines = self._engines_of(ws.address)
            if (engines is WAIT and b.engine in placement.KINDS) or (
                    engines is not WAIT and not placement.can_run(b.engine, p.version, p.prepared, engines)):
                unable.append(entry)  # another worker's plan
                continue
            if others_free and str(ws.name) in p.avoid and len(skipped) < 50:
                skipped.append(entry)
                continue
            found = (p, b)
            break
        for entry in skipped + unable:
            heapq.heappush(self.heap, entry)
        return found

    def _run(self, b: BatchState, p: PlanState, ws) -> None:
        p.attempt += 1
        spec = AttemptSpec(b.id, p.index, p.attempt, p.project, p.plan_id, p.project_dir, b.engine, b.timeout,
                           b.scratch)
        future = self.client.submit(run_attempt, spec, key=spec.key, workers=[ws.address], allow_other_workers=False,
                                    resources={RESOURCE: 1}, pure=False, retries=0)
        task = Inflight("run", b.id, p.index, spec.attempt_id, spec.key, ws.address, str(ws.name), future)
        self.inflight[spec.key] = task
        self.attempts[spec.attempt_id] = (b.id, p.index)
        p.state, p.step, p.attempt_id, p.worker, p.worker_name = "running", "released", spec.attempt_id, ws.address, str(ws.name)
        p.started, p.deadline, p.progress, p.run_folder = None, None, None, ""
        self._touch(b, p)
        self._spawn(self._watch(task))

    async def _watch(self, task: Inflight) -> None:
        try:
            outcome = await task.future
        except asyncio.CancelledError:
            if self.inflight.get(task.key) is task:
                raise
            return  # we cancelled it (its worker left, the batch was cancelled)
        except Exception as e:  # an error in the task itself
            if self.inflight.get(task.key) is not task:
                return
            outcome = {"attempt_id": task.attempt_id, "kind": RETRY, "status": "retry" if task.kind == "summarise" else "",
                       "reason": f"{type(e).__name__}: {e}", "worker": task.worker_name}
        finally:
            task.future.release()
        if self.inflight.get(task.key) is not task:
            return  # dealt with meanwhile (its worker left and its PC reported)
        del self.inflight[task.key]
        if task.kind == "summarise":
            self._summarised(task, outcome)
        else:
            self._resolve(task.attempt_id, outcome)

    def _cancel(self, task: Inflight) -> None:
        if task.future is not None and not task.future.done():
            self._spawn(_quietly(task.future.cancel()))

    # --- outcomes -----------------------------------------------------------------------

    def _resolve(self, attempt_id: str, outcome: dict, reporter: str | None = None) -> None:
        """Act on what became of an attempt; ``reporter``: the worker that reports it, when not
        the one that ran it (a PC's next worker, whose sweep found it)."""
        where = self.attempts.get(attempt_id)
        if where is None or where[0] not in self.batches:
            return
        b = self.batches[where[0]]
        p = b.plans[where[1]]
        kind = outcome.get("kind", "")
        if kind == DUPLICATE:
            return  # the sweep or the grace settles it
        for key, task in list(self.inflight.items()):  # a report may come before the task's end
            if task.attempt_id == attempt_id and task.kind != "summarise":
                del self.inflight[key]
                self._cancel(task)
        if p.attempt_id != attempt_id:  # an earlier attempt's news
            if kind == LANDED and not p.final:  # it landed after all: stop the later one
                self._stop_current(p)
                self._landed(b, p, outcome)
            return
        if p.final:
            return
        self._end_run(p, kind)
        reason = outcome.get("reason", "")
        if outcome.get("run_seconds") is not None:
            p.run_seconds = float(outcome["run_seconds"]) - float(outcome.get("paused_seconds") or 0)
        if kind == LANDED:
            self._landed(b, p, outcome)
        elif kind == FAILED:
            self._set(b, p, "failed", reason)
        elif kind == RETRY:
            p.failed_runs += 1
            p.avoid.add(outcome.get("worker", ""))
            if p.failed_runs > b.retries:
                self._set(b, p, "failed", reason)
            else:
                self._queue(b, p, f"run {p.failed_runs} of {b.retries + 1} failed: {reason}")
        elif kind == REQUEUE:
            self._queue(b, p, reason or "stopped; back in the queue")
        elif kind == LANDING:
            if reporter:  # the results wait on the reporter's PC: it tries to land them again
                p.worker, p.worker_name = reporter, outcome.get("worker") or p.worker_name
            p.run_dir = outcome.get("run_dir", "")
            p.landing_tries += 1
            wait = min(600.0, config.seconds("queue.landing-retry", "30s") * 2 ** (p.landing_tries - 1))
            p.state, p.step, p.deadline = "landing", "", time.time() + wait
            p.reason = f"the engine finished well; its results wait on {p.worker_name} to land: {reason}"
            self._touch(b, p)
        elif kind == LOST:
            self._lost(b, p, reason)
        self.kick()

    def _lost(self, b: BatchState, p: PlanState, reason: str) -> None:
        p.lost += 1
        limit = int(config.get("queue.max-lost", 10))
        if p.lost >= limit:
            self._set(b, p, "failed", f"lost with its worker {p.lost} times; the last: {reason}")
        else:
            self._queue(b, p, f"attempt {p.attempt} was lost: {reason}")

    def _landed(self, b: BatchState, p: PlanState, outcome: dict) -> None:
        self._summarise(b, p)
        self._set(b, p, "succeeded", outcome.get("reason", ""))

    def _set(self, b: BatchState, p: PlanState, state: str, reason: str) -> None:
        p.state, p.step, p.reason, p.deadline = state, "", reason, None
        self._touch(b, p)
        self._check_finished(b)

    def _check_finished(self, b: BatchState) -> None:
        if b.finished is None and b.done():
            b.finished = time.time()
            b.dirty = True

    def _queue(self, b: BatchState, p: PlanState, reason: str) -> None:
        p.state, p.step, p.reason, p.deadline, p.started = "queued", "", reason, None, None
        heapq.heappush(self.heap, (-p.expected, b.seq, b.id, p.index))
        self._touch(b, p)

    def _stop_current(self, p: PlanState) -> None:
        for key, task in list(self.inflight.items()):
            if task.attempt_id == p.attempt_id and task.kind != "summarise":
                del self.inflight[key]
                self._cancel(task)

    def _touch(self, b: BatchState, p: PlanState) -> None:
        p.updated = time.time()
        b.dirty = True

    def _end_run(self, p: PlanState, status: str) -> None:
        for r in reversed(self.runs):
            if r.get("attempt_id") == p.attempt_id and r["end"] is None:
                r.update(end=time.time(), status=status)
                break

    def _swept(self, name: str) -> None:
        """The PC's new worker has reported what its predecessor left: its other attempts were lost,
        unless the results folder says otherwise (an earlier worker of the PC may have landed one,
        and died before its report got out)."""
        for b in self.batches.values():
            for p in b.plans:
                if p.state == "lost" and p.worker_name == name:
                    p.deadline = None
                    self._spawn(self._grace_over(b, p, p.attempt_id,
                                                 f"its worker {name} died before the run began or while it staged"))
        self.kick()

    # --- summaries ----------------------------------------------------------------------

    def _summarise(self, b: BatchState, p: PlanState) -> None:
        if self.client is None:
            p.summary = "wanted"  # once the queue's client is up (see _tick)
            return
        folder = str(Path(p.project_dir) / p.plan_id)
        key = f"hecras-summarise-{p.label}-{p.attempt_id or b.id}-{uuid.uuid4().hex[:4]}"
        near = {"workers": [p.worker], "allow_other_workers": True} if p.worker in self.scheduler.workers else {}
        future = self.client.submit(summarise_plan, folder, key=key, pure=False, retries=1, **near)
        task = Inflight("summarise", b.id, p.index, p.attempt_id, key, p.worker, p.worker_name, future)
        self.inflight[key] = task
        p.summary = "pending"
        self._touch(b, p)
        self._spawn(self._watch(task))

    def _summarised(self, task: Inflight, outcome) -> None:
        b = self.batches.get(task.batch)
        if b is None:
            return
        p = b.plans[task.index]
        status = outcome.get("status") if isinstance(outcome, dict) else "failed"
        if status == "retry" and p.summary_tries < 8:  # the share, not the results: try again later
            p.summary_tries += 1
            p.summary = "wanted"
            p.summary_at = time.time() + min(600.0, config.seconds("queue.landing-retry", "30s") * 2 ** (p.summary_tries - 1))
        elif status == "done":
            p.summary = "done"
        else:
            p.summary = f"failed: {outcome.get('reason', '') if isinstance(outcome, dict) else outcome}"
        self._touch(b, p)
        self._check_finished(b)

    # --- time ---------------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.time()
        for b in list(self.batches.values()):
            for p in b.plans if b.finished is None else ():
                if p.deadline is not None and now >= p.deadline:
                    if p.state == "lost":
                        p.deadline = None
                        self._spawn(self._grace_over(b, p, p.attempt_id))
                    elif p.state == "landing":
                        p.deadline = None
                        self._land_again(b, p)
                if p.summary == "wanted" and self.client is not None and now >= p.summary_at:
                    self._summarise(b, p)
        self._flush(now)
        if self.heap:
            self.kick()

    async def _grace_over(self, b: BatchState, p: PlanState, attempt_id: str, why: str = "") -> None:
        """No word on a lost attempt (or no more to come): the results folder decides whether the
        plan landed. Its run is never started again when it did."""
        landed = await asyncio.to_thread(records.load_result, Path(p.project_dir) / p.plan_id)
        if p.state != "lost" or p.attempt_id != attempt_id:
            return
        if landed is not None and landed.ok and landed.batch == b.id:
            self._landed(b, p, {"reason": landed.reason})
        else:
            self._lost(b, p, why or f"its worker {p.worker_name} did not come back within the grace")
        self.kick()

    def _land_again(self, b: BatchState, p: PlanState) -> None:
        ws = self.scheduler.workers.get(p.worker)
        if ws is None:  # the PC left: its next worker's sweep lands it, or the grace ends it
            p.state, p.deadline = "lost", time.time() + config.seconds("queue.lost-grace", "60s")
            self._touch(b, p)
            return
        spec = AttemptSpec(b.id, p.index, p.attempt, p.project, p.plan_id, p.project_dir, b.engine, b.timeout, b.scratch)
        key = f"hecras-land-{p.label}-{spec.attempt_id}-{p.landing_tries}"
        future = self.client.submit(land_again, spec, p.run_dir, key=key, workers=[p.worker],
                                    allow_other_workers=False, pure=False, retries=0)
        task = Inflight("land", b.id, p.index, spec.attempt_id, key, p.worker, p.worker_name, future)
        self.inflight[key] = task
        p.step = "landing"
        self._touch(b, p)
        self._spawn(self._watch(task))

    # --- the ledger ---------------------------------------------------------------------

    def _flush(self, now: float) -> None:
        heartbeat = config.seconds("queue.heartbeat", "30s")
        for b in list(self.batches.values()):
            if b.writing or now < b.write_after:
                continue
            if b.dirty or (b.finished is None and now - b.written >= heartbeat):
                b.writing = True
                self._spawn(self._write_async(b, now))
        horizon = config.seconds("dashboard.forget-after", "12h")
        for b in [b for b in self.batches.values() if b.finished and now - b.finished > horizon and not b.dirty]:
            del self.batches[b.id]

    async def _write_async(self, b: BatchState, now: float) -> None:
        try:
            await self._write(b, now)
        except OSError as e:
            log.warning("the ledger of batch %s cannot be written to %s: %s", b.id, b.root, e)
            b.write_after = time.time() + 5.0
        finally:
            b.writing = False

    async def _write(self, b: BatchState, now: float) -> None:
        """Write the batch's ledger: its content made here, on the event loop, the file in a thread."""
        b.dirty = False
        data = {"batch": b.id, "updated": now, "finished": b.finished is not None and b.finished,
                "cancelled": b.cancelled, "scheduler": self.scheduler.address if self.scheduler else "",
                "plans": [self._ledger_entry(p) for p in b.plans], "actions": list(b.actions)}
        try:
            await asyncio.to_thread(ledger.write_ledger, b.root, b.id, data)
        except OSError:
            b.dirty = True
            raise
        b.written = now
        if data["finished"] and not b.recorded_finished:
            b.recorded_finished = True
            self._remember()

    @staticmethod
    def _ledger_entry(p: PlanState) -> dict:
        return {"index": p.index, "state": p.state, "step": p.step, "attempt": p.attempt,
                "failed_runs": p.failed_runs, "lost": p.lost, "attempt_id": p.attempt_id,
                "worker_name": p.worker_name, "reason": p.reason, "summary": p.summary,
                "run_seconds": p.run_seconds, "updated": p.updated,
                "progress": p.progress if p.state == "running" else None}

    def _remember(self) -> None:
        entries = [{"results_dir": str(b.root), "batch": b.id} for b in self.batches.values() if b.finished is None]
        try:
            ledger.remember(self.state_file, entries)
        except OSError as e:
            log.warning("could not write the scheduler's list of batches %s: %s", self.state_file, e)

    # --- resuming -----------------------------------------------------------------------

    async def _resume(self) -> None:
        """Take up the unfinished batches listed in ``hecras.queue.state``."""
        entries = ledger.remembered(self.state_file)
        if not entries:
            return
        await self._ready.wait()
        pending = list(entries)
        while pending:
            left = []
            for e in pending:
                try:
                    data = await asyncio.to_thread(_reload, e["results_dir"], e["batch"])
                except FileNotFoundError as err:
                    log.warning("cannot resume batch %s: %s", e["batch"], err)
                    continue
                except OSError as err:  # the share is not there yet: try again
                    log.warning("cannot read batch %s yet: %s", e["batch"], err)
                    left.append(e)
                    continue
                if data is None or data["batch"] in self.batches:
                    continue
                b = self._add(data)
                log.info("resumed batch %s from %s", b.id, b.root)
                grace = config.seconds("queue.lost-grace", "60s")
                for p in b.plans:
                    if p.state in ACTIVE:  # its worker closed when the scheduler went away
                        p.state, p.deadline = "lost", time.time() + grace
                        p.reason = f"running on {p.worker_name} when the scheduler stopped; waiting for that PC"
                    elif p.state == "succeeded" and p.summary != "done":
                        self._summarise(b, p)
                if b.done():
                    b.finished = time.time()
                b.dirty = True
            early, self.unmatched = list(self.unmatched), deque(maxlen=2000)
            for msg in early:  # PCs that reported before their batch was back
                self.log_event(TOPIC, msg)
            self._remember()
            self.kick()
            pending = left
            if pending:
                await asyncio.sleep(30)

    # --- views --------------------------------------------------------------------------

    def snapshot(self, batch: str | None = None) -> dict:
        now = time.time()
        out = []
        for b in self.batches.values():
            if batch is not None and b.id != batch:
                continue
            plans = [p.view(now) for p in b.plans]
            counts: dict[str, int] = {}
            for p in plans:
                counts[p["state"]] = counts.get(p["state"], 0) + 1
            out.append({"batch": b.id, "results_dir": str(b.root), "submitted": b.submitted, "engine": b.engine,
                        "retries": b.retries, "timeout": b.timeout, "finished": b.recorded_finished,
                        "cancelled": b.cancelled, "counts": counts, "plans": plans,
                        "eta": batch_eta(plans, self.slots()), "actions": b.actions[-50:]})
        return {"time": now, "batches": out}

    def handle_batch(self, batch: str) -> dict:
        snap = self.snapshot(batch)
        return snap["batches"][0] if snap["batches"] else {"batch": batch, "unknown": True}

    def handle_snapshot(self) -> dict:
        return self.snapshot()

    def handle_cancel(self, batch: str) -> dict:
        b = self.batches.get(batch)
        if b is None:
            return {"status": "error", "message": f"no batch {batch} in the queue"}
        b.cancelled = True
        for p in b.plans:
            if not p.final:
                self._stop_current(p)
                self._end_run(p, "cancelled")
                self._set(b, p, "cancelled", "the batch was cancelled")
        return {"status": "OK"}

    # --- what users do from the dashboard (``actions``) -----------------------------------

    def retry_plan(self, batch: str, index: int, who: str) -> str:
        """A failed (or cancelled) plan goes back in the queue with its runs counted afresh."""
        b, p = self._plan(batch, index)
        if p.state not in ("failed", "cancelled"):
            raise ActionRefused(f"{p.label} is {p.state}: only a failed or cancelled plan can be retried")
        p.failed_runs, p.lost, p.summary = 0, 0, ""
        p.avoid.clear()
        b.cancelled = False  # a cancelled batch takes this plan up again (its other plans stay cancelled)
        if b.finished is not None:  # the batch is open again until this plan ends
            b.finished, b.recorded_finished = None, False
            self._remember()
        self._queue(b, p, f"retried from the dashboard by {who}")
        self.note_action([b], {"action": "retry", "who": who, "plan": p.label, "index": p.index})
        self.kick()
        return f"{p.label} is queued again"

    def cancel_plan(self, batch: str, index: int, who: str) -> str:
        """A queued, running or lost plan is cancelled; a running engine is stopped, tree and all."""
        b, p = self._plan(batch, index)
        if p.state not in ("queued", "running", "lost"):
            raise ActionRefused(f"{p.label} is {p.state}: only a queued, running or lost plan can be cancelled")
        was = p.state
        self._stop_current(p)
        self._end_run(p, "cancelled")
        self._set(b, p, "cancelled", f"cancelled from the dashboard by {who} (it was {was})")
        self.note_action([b], {"action": "cancel", "who": who, "plan": p.label, "index": p.index, "was": was})
        self.kick()
        return f"{p.label} is cancelled"

    def note_action(self, batches: list, entry: dict) -> None:
        """Recorded in each batch's ledger (written soon), with when."""
        entry = {"when": datetime.now().isoformat(timespec="seconds"), **entry}
        for b in batches:
            b.actions.append(entry)
            b.dirty = True

    def _plan(self, batch: str, index: int) -> tuple[BatchState, PlanState]:
        b = self.batches.get(batch)
        if b is None or not 0 <= int(index) < len(b.plans):
            raise ActionRefused(f"no plan {index} in batch {batch} on this scheduler")
        return b, b.plans[int(index)]

    def running(self) -> dict[str, str]:
        """Plan label → worker address, for plans whose engine runs now."""
        return {p.label: p.worker for b in self.batches.values() for p in b.plans
                if p.state == "running" and p.step == "running"}

    def slots(self) -> int:
        """RAS slots open on the cluster now."""
        return int(sum(ws.resources.get(RESOURCE, 0) for ws in self.scheduler.workers.values())) if self.scheduler else 0

    def workload(self) -> dict:
        """What the queue needs workers for, to size a cluster (``slurm.PlanAdaptive``): plans
        per state and summaries waiting, over unfinished batches, and ``busy``, the addresses of
        workers holding something of the queue's (a task in flight, a plan running or landing)."""
        plans: dict[str, int] = {}
        summaries = 0
        busy = {t.worker for t in self.inflight.values()}
        for b in self.batches.values():
            for p in b.plans if b.finished is None else ():
                plans[p.state] = plans.get(p.state, 0) + 1
                summaries += p.summary in ("pending", "wanted")
                if p.state in ACTIVE and p.worker:
                    busy.add(p.worker)
        return {"plans": plans, "summaries": summaries, "busy": busy}


# --------------------------------------------------------------------------- helpers


def expected_scale(plans: list[dict]) -> float:
    """What this batch's runs took against what was expected of them (1 before any finished):
    before any history, "expected" comes from steps and cells alone."""
    measured = [p for p in plans if p.get("run_seconds") and p.get("expected")]
    return sum(p["run_seconds"] for p in measured) / sum(p["expected"] for p in measured) if measured else 1.0


def plan_left(p: dict, scale: float) -> float:
    """Run time a plan (a :meth:`PlanState.view`) still needs: the engine's own estimate while it
    runs and has reported progress, else its expected run time less what it has run."""
    if p["state"] == "running" and p.get("left") is not None:
        return float(p["left"])
    if p["state"] in ("queued", "running", "lost"):
        return max(0.0, (p.get("expected") or 0.0) * scale - (p.get("elapsed") or 0.0))
    return 0.0


def batch_eta(plans: list[dict], slots: int) -> float | None:
    """Seconds until the batch's last plan should end: the run time left over the open slots,
    and never before its longest running plan ends. ``None`` once nothing is left to run."""
    scale = expected_scale(plans)
    return eta_of([plan_left(p, scale) for p in plans if p["state"] in ("queued", "running", "lost")], slots)


def eta_of(left: list[float], slots: int) -> float | None:
    """Seconds until the last of plans needing ``left`` seconds each ends on ``slots`` slots."""
    return max(sum(left) / max(1, slots), max(left)) if left else None


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:
        pass


def _client_security(security):
    """The scheduler's own certificate, as the queue's client presents it (mutual TLS)."""
    from distributed import Security

    kwargs = {k: getattr(security, k) for k in Security.__slots__ if k != "require_encryption"}
    kwargs["tls_client_cert"] = security.tls_scheduler_cert or security.tls_client_cert
    kwargs["tls_client_key"] = security.tls_scheduler_key or security.tls_client_key
    return Security(require_encryption=security.require_encryption, **kwargs)


def _expected(history: dict[int, float], work: dict[int, float]) -> dict[int, float]:
    """Expected run seconds: a plan's last run where there is one, else its work scaled by
    what history says a unit of work costs."""
    ratios = sorted(history[i] / work[i] for i in history if work.get(i, 0) > 0)
    per_unit = ratios[len(ratios) // 2] if ratios else 1e-7
    return {i: history.get(i, w * per_unit) for i, w in work.items()}


def _prepare(batch_id: str, batch: dict) -> dict:
    """In a thread: the disk work of accepting a batch. Claims each project's results folder,
    skips plans already landed with the same inputs (unless forced), estimates run times from
    history, writes batch.json."""
    root = Path(batch["results_dir"])
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OSError(f"the scheduler cannot write to the results folder {root}: {e.strerror or e}. It keeps "
                      "each batch's ledger there: give a folder the scheduler reaches under the same path") from e
    folders: dict[str, Path] = {}
    plans, history, work = [], {}, {}
    for i, e in enumerate(batch["plans"]):
        key = records.project_key(e["project"])
        if key not in folders:
            folders[key] = records.claim_project_folder(root, e["project"])
        folder = folders[key]
        landed = records.load_result(folder / e["plan"])
        state = "queued"
        if landed is not None and landed.ok and landed.run_seconds:
            history[i] = float(landed.run_seconds) - float(landed.paused_seconds or 0)
        if (not batch.get("force") and landed is not None and landed.ok and landed.fingerprint
                and landed.fingerprint == e.get("fingerprint") and landed.hdf is not None
                and (folder / e["plan"] / landed.hdf.name).is_file()):
            state = "skipped"
        work[i] = float(e.get("work") or 0.0)
        plans.append({"index": i, "project": e["project"], "plan": e["plan"], "title": e.get("title", ""),
                      "folder": str(folder), "fingerprint": e.get("fingerprint", ""), "state": state,
                      "version": str(e.get("version") or ""), "prepared": bool(e.get("prepared")),
                      "reason": f"already landed by batch {landed.batch} with the same inputs" if state == "skipped" else ""})
    expected = _expected(history, work)
    for p in plans:
        p["expected"] = expected[p["index"]]
    data = {"batch": batch_id, "submitted": datetime.now().isoformat(timespec="seconds"),
            "results_dir": str(root), "engine": batch["engine"], "retries": int(batch["retries"]),
            "timeout": batch.get("timeout"), "scratch": batch.get("scratch"), "force": bool(batch.get("force")),
            "client": batch.get("client", ""), "plans": plans}
    ledger.write_batch(root, {**data, "plans": [{k: v for k, v in p.items() if k not in ("state", "reason")}
                                                for p in plans]})
    return data


def _reload(results_dir: str, batch: str) -> dict | None:
    """A batch to resume: batch.json with the ledger's last word per plan, and the results
    folder's (a plan landed for this batch is done)."""
    data, book = ledger.read_batch(Path(results_dir), batch)
    if data.get("legacy"):
        return None
    if book and book.get("finished"):
        return None
    entries = {int(e["index"]): e for e in (book or {}).get("plans", [])}
    plans = []
    for p in data["plans"]:
        e = {**p, **{k: v for k, v in entries.get(int(p["index"]), {}).items() if k != "index"}}
        e.setdefault("state", "queued")
        landed = records.load_result(Path(p["folder"]) / p["plan"])
        if landed is not None and landed.ok and landed.batch == batch:
            e["state"] = "succeeded"
            if not (Path(p["folder"]) / p["plan"] / "summary.nc").is_file():
                e["summary"] = ""
        plans.append(e)
    return {**data, "plans": plans, "actions": list((book or {}).get("actions") or [])}


def queue_of(scheduler) -> PlanQueue | None:
    return scheduler.plugins.get(NAME)
