"""Plans on a Dask cluster: a graph of four tasks per plan, durable batches.

For each plan, ``submit`` builds::

    stage-<project>-<plan>  →  run-<project>-<plan>  →  validate-<project>-<plan>  →  summarise-<project>-<plan>
    (resources={"RAS": 1},     (resources={"RAS": 1},
     retries=N)                 retries=N)

Staging holds the RAS slot like the run, so a PC copies a plan's inputs only when it may
run it. The run task re-stages if Dask placed it on a machine without the staged files.
Every task writes its outcome under ``results_dir`` itself, so a batch submitted
with ``detach=True`` goes on after the client closes and ``open_batch`` finds it.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from distributed.diagnostics.plugin import WorkerPlugin

from . import config, records
from .pipeline import RetryableFailure, landed, results_root, run_step, stage_step, summarise_step, validate_step
from .project import Plan
from .records import FAILED, SUCCEEDED, PlanResult
from .slots import RESOURCE, update_slots
from .staging import StagedPlan, machine_cache, mesh_cells, remove, scratch_root, sweep
from .validation import validate

REQUEUED = "the PC's owner came back (hecras.owner.on-return: requeue); the plan goes back in the queue"


# --------------------------------------------------------------------------- tasks


def _current_key() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().get_current_task()
    except (ImportError, ValueError):
        return None


def _cancelled(key: str | None):
    """True once the scheduler has cancelled this task (client gone, future cancelled).

    Reads the worker's own state of the task: an internal API, kept here.
    """
    if key is None:
        return lambda: False

    def check() -> bool:
        try:
            from distributed import get_worker

            ts = get_worker().state.tasks.get(key)
            return ts is None or ts.state in ("cancelled", "released", "forgotten")
        except Exception:
            return False

    return check


def _event(plan_key: str, step: str, phase: str, **fields) -> None:
    """Tell the scheduler (and the dashboard's plugin) how a plan's step is going."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event("hecras", {"action": "step", "plan": plan_key, "step": step, "phase": phase,
                                "worker": worker.address, **fields})


def _free_disk(path) -> int | None:
    import shutil

    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


# Run folders staged by this worker process: stage task key → folder (see StagingCleanup).
STAGED: dict[str, Path] = {}


def stage_task(plan: Plan, **kwargs):
    done = landed(plan, kwargs.get("results_dir"), kwargs.get("batch", ""))
    if done is not None:  # computed again after a lost worker: the results are already whole on disk
        return done
    _event(plan.key, "stage", "started")
    staged = stage_step(plan, **kwargs)
    key = _current_key()
    if key is not None and isinstance(staged, StagedPlan):
        STAGED[key] = staged.run_dir
    _event(plan.key, "stage", "finished", free_disk=_free_disk(scratch_root(kwargs.get("scratch"))),
           cache_bytes=machine_cache(kwargs.get("scratch")).size(),
           **({"status": staged.status, "reason": staged.reason} if isinstance(staged, PlanResult) else {}))
    return staged


def run_task(plan: Plan, staged, **kwargs) -> PlanResult:
    """The RAS-restricted task: the engine run, stopped if Dask cancels the task.

    A worker whose runs keep failing (or that has no HEC-RAS) is taken out of rotation.
    """
    done = landed(plan, kwargs.get("results_dir"), kwargs.get("batch", ""))
    if done is not None:  # landed by another worker while this run waited for its slot
        return done
    root = results_root(kwargs.get("results_dir"))
    attempt = len(records.attempts(root, plan.project_name, plan.id, kwargs.get("batch", ""))) + 1
    _event(plan.key, "run", "started", attempt=attempt)
    from . import owner

    key = _current_key()
    cancelled = _cancelled(key)

    def stop() -> str | bool:
        if key in owner.REQUEUE:
            return REQUEUED
        return "the task was cancelled" if cancelled() else False

    def on_start(pid: int) -> None:
        if key is not None:
            owner.RUNNING[key] = pid  # the owner policy may suspend or stop it

    try:
        result = run_step(plan, staged, cancel=stop, on_start=on_start, **kwargs)
    except RetryableFailure as e:
        if e.result.problem == "cancelled" and key in owner.REQUEUE:
            # Not a failure: back to the scheduler, which places it on a PC with a free slot,
            # without spending one of the plan's retries.
            from distributed import Reschedule

            _event(plan.key, "run", "requeued", attempt=e.result.attempt, status="requeued", reason=e.result.reason)
            raise Reschedule() from None
        _event(plan.key, "run", "retrying", attempt=e.result.attempt, status="failed", reason=e.result.reason)
        _after_run(e.result, kwargs.get("results_dir"))
        raise
    finally:
        owner.RUNNING.pop(key, None)
        owner.REQUEUE.discard(key)
    _event(plan.key, "run", "finished", attempt=result.attempt, status=result.status, reason=result.reason)
    _after_run(result, kwargs.get("results_dir"))
    return result


class StagingCleanup(WorkerPlugin):
    """Removes run folders nobody will use, so a colleague's disk does not fill up.

    A plan is staged where its stage task ran; its run may happen on another PC (its slot
    closed, work stealing, a lost worker), which stages it again there. When Dask forgets a
    stage result (its run is over, wherever it ran), the folder it points to goes, unless
    it is kept as a failed run. At start, folders left by worker processes that are gone go.
    Added by the worker preload and by :func:`submit`.
    """

    name = "hecras-staging"
    idempotent = True

    async def setup(self, worker) -> None:
        import asyncio

        await asyncio.to_thread(sweep, scratch_root(worker=worker))

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish in ("released", "forgotten") and key in STAGED:
            folder = STAGED.pop(key)
            if folder.is_dir() and not (folder / ".failed").exists():
                import threading

                threading.Thread(target=remove, args=(folder,), daemon=True).start()  # not on the event loop


def summarise_task(result: PlanResult, results_dir) -> PlanResult:
    result = summarise_step(result, results_dir)
    _event(result.key, "summarise", "finished", status=result.status, reason=result.reason)
    return result


def _after_run(result: PlanResult, results_dir) -> None:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    if result.problem == "cancelled":
        return  # stopped on purpose (the owner came back, the client cancelled): no verdict on the machine
    if result.ok or result.problem in ("input", "") or result.validation == "failed":
        worker._hecras_failures_in_a_row = 0  # a success, or the model's fault, not the machine's
        return
    count = getattr(worker, "_hecras_failures_in_a_row", 0) + 1
    worker._hecras_failures_in_a_row = count
    limit = int(config.get("max-failures-in-a-row", 3))
    if result.problem == "engine-not-found" or count >= limit:
        why = (result.reason if result.problem == "engine-not-found"
               else f"{count} runs failed in a row, the last: {result.reason}")
        take_out_of_rotation(worker, why, results_root(results_dir))


def take_out_of_rotation(worker, reason: str, root: Path, state: str = "out of rotation") -> None:
    """No new plans for this worker: its RAS slots go to 0, and plans waiting on it move to
    workers with open slots (see ``slots``)."""
    from distributed.utils import sync

    try:
        sync(worker.loop, update_slots, worker, in_rotation=False)
    except Exception as e:  # no scheduler reachable: its plans wait until it is restored
        import logging

        logging.getLogger("dask_hecras").warning("could not close the slots of %s: %r", worker.address, e)
    name = str(worker.name) if worker.name is not None else worker.address
    records.write_worker(root, name, {"worker": name, "address": worker.address, "host": worker.ip,
                                      "state": state, "reason": reason,
                                      "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
    worker.log_event("hecras", {"action": state, "worker": worker.address, "reason": reason})


# --------------------------------------------------------------------------- estimates


def plan_work(plan: Plan) -> float:
    """Work a plan implies: computation steps × (2D cells + 1000), from its files alone."""
    if plan.start and plan.end and plan.computation_interval and plan.computation_interval.total_seconds() > 0:
        steps = (plan.end - plan.start) / plan.computation_interval
    else:
        steps = 1000.0
    return steps * (mesh_cells(plan) + 1000)


def estimates(plans: list[Plan], root: Path) -> dict[str, float]:
    """Expected run seconds per plan key: the last run recorded under ``root`` where
    there is one, else the plan's work scaled by what history says a unit of work costs."""
    history: dict[str, float] = {}
    for plan in plans:
        r = records.load_result(root, plan.project_name, plan.id)
        if r is not None and r.ok and r.run_seconds:
            history[plan.key] = float(r.run_seconds) - float(r.paused_seconds or 0)  # paused by an owner
    work = {p.key: plan_work(p) for p in plans}
    ratios = sorted(history[k] / work[k] for k in history if work[k] > 0)
    per_unit = ratios[len(ratios) // 2] if ratios else 1e-7
    return {p.key: history.get(p.key, work[p.key] * per_unit) for p in plans}


# --------------------------------------------------------------------------- batches


def _already_done(plan: Plan, root: Path) -> PlanResult | None:
    r = records.load_result(root, plan.project_name, plan.id)
    if r is None or not r.ok or r.hdf is None:
        return None
    return r if validate(r.hdf, plan=plan).ok else None


@dataclass
class Batch:
    """A submitted set of plans. Results come from the futures while the client is
    connected, and from ``results_dir`` always."""

    id: str
    results_dir: Path
    plans: list[Plan]
    futures: list = field(default_factory=list)  # summarise-<project>-<plan>, one per plan run
    skipped: list[PlanResult] = field(default_factory=list)  # succeeded earlier, still valid
    client: object = None

    def wait(self, timeout: float | None = None, *, resubmit_lost: int = 2) -> "Batch":
        """Until every plan has ended (succeeded or failed).

        Plans Dask gave up on because workers died under them (``KilledWorker``, e.g.
        laptops that went to sleep) are submitted again, up to ``resubmit_lost`` times.
        """
        if not self.futures:
            return self
        from distributed import KilledWorker, wait

        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in range(resubmit_lost + 1):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait(self.futures, timeout=left)
            lost = [f for f in self.futures if f.status == "error" and isinstance(f.exception(), KilledWorker)]
            if not lost or self.client is None:
                break
            self.client.retry(lost)
        return self

    def results(self) -> list[PlanResult]:
        """One result per plan, in plan order: skipped ones, finished ones, and the
        durable state of the rest."""
        by_key = {r.key: r for r in self.skipped}
        keys = {f"summarise-{p.key}": p.key for p in self.plans}
        for f in self.futures:
            key = keys.get(f.key) or keys.get(f.key.rsplit("-", 1)[0]) or f.key.split("-", 1)[1]
            if f.status == "finished":
                by_key[key] = f.result()
            elif f.status == "error":
                by_key[key] = _from_error(f.exception(), key, self)
        out = []
        for plan in self.plans:
            r = by_key.get(plan.key) or _from_disk(self, plan)
            out.append(r)
        return out

    def dataset(self):
        """The succeeded plans' summaries stacked along ``plan`` (see :func:`combine`)."""
        from .results import combine

        return combine([r for r in self.results() if r.ok])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def __repr__(self) -> str:
        return f"<Batch {self.id}: {len(self.plans)} plans, {len(self.skipped)} skipped, results in {self.results_dir}>"


def _from_error(exc: BaseException, key: str, batch: Batch) -> PlanResult:
    if isinstance(exc, RetryableFailure):
        return exc.result
    project, plan_id = key.rsplit("-", 1)
    r = records.load_result(batch.results_dir, project, plan_id)
    reason = f"{type(exc).__name__}: {exc}"
    if r is not None and r.batch == batch.id and not r.ok:
        r.reason = f"{r.reason} Then: {reason}"
        return r
    return PlanResult(plan_id, project, FAILED, reason, batch=batch.id,
                      attempts=records.attempts(batch.results_dir, project, plan_id, batch.id))


def _from_disk(batch: Batch, plan: Plan) -> PlanResult:
    r = records.load_result(batch.results_dir, plan.project_name, plan.id)
    if r is not None and (r.batch == batch.id or r.ok):
        return r
    attempts = records.attempts(batch.results_dir, plan.project_name, plan.id, batch.id)
    status = "running" if attempts else "queued"
    return PlanResult(plan.id, plan.project_name, status, "not finished yet", title=plan.title,
                      batch=batch.id, attempts=attempts)


def submit(
    client,
    plans: Iterable[Plan],
    *,
    engine: str = "fake",
    results_dir: str | os.PathLike | None = None,
    retries: int = 2,
    timeout: float | str | None = None,
    force: bool = False,
    detach: bool = False,
    scratch: str | os.PathLike | None = None,
) -> Batch:
    """Run ``plans`` on the cluster of ``client``, longest expected first.

    Plans that already succeeded into ``results_dir`` (and still validate) are skipped
    unless ``force``. With ``detach`` the batch goes on after this client closes.
    """
    from distributed import fire_and_forget

    from .engines import ENGINES

    if not isinstance(engine, str) or engine.lower() not in ENGINES:
        raise ValueError(f"engine must be one of {sorted(ENGINES)} (each worker's configuration says what "
                         f"runs), not {engine!r}")
    root = results_root(results_dir)
    plans = list(plans)
    client.register_plugin(StagingCleanup())  # workers started without our preload too
    batch_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    skipped, todo = [], []
    for plan in plans:
        done = None if force else _already_done(plan, root)
        (skipped if done is not None else todo).append(done or plan)
    expected = estimates(todo, root)
    todo.sort(key=lambda p: expected[p.key], reverse=True)
    records.write_batch(root, batch_id, {
        "batch": batch_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "engine": engine,
        "retries": retries, "timeout": timeout, "force": force, "detach": detach,
        "plans": [{"project": str(p.project), "plan": p.id, "title": p.title,
                   "expected_seconds": expected.get(p.key)} for p in plans],
        "skipped": [r.key for r in skipped],
    })
    client.log_event("hecras", {"action": "batch", "batch": batch_id, "plans": [
        {"key": p.key, "title": p.title, "expected": expected[p.key]} for p in todo]})
    common = {"engine": engine, "results_dir": str(root), "batch": batch_id}
    futures = []
    for rank, plan in enumerate(todo):
        priority = len(todo) - rank  # higher runs first: longest expected first
        k_stage, k_run, k_validate, k_summarise = _keys(plan, client, batch_id)
        # Staging holds the slot too: a PC copies a plan only when it may run it (not while
        # its owner works or while it is out of rotation), about one plan ahead.
        staged = client.submit(stage_task, plan, scratch=scratch, key=k_stage, priority=priority,
                               retries=retries, resources={RESOURCE: 1}, **common)
        ran = client.submit(run_task, plan, staged, scratch=scratch, timeout=timeout, key=k_run,
                            priority=priority, retries=retries, resources={RESOURCE: 1}, **common)
        checked = client.submit(validate_step, ran, plan, key=k_validate, priority=priority)
        done = client.submit(summarise_task, checked, str(root), key=k_summarise, priority=priority)
        futures.append(done)
    if detach:
        fire_and_forget(futures)
    return Batch(batch_id, root, plans, futures, skipped, client)


def _keys(plan: Plan, client, batch_id: str) -> tuple[str, str, str, str]:
    """``stage-<project>-<plan>`` etc. If this client still holds those keys from an
    earlier batch, Dask would hand back the old results: then the batch id is appended."""
    keys = tuple(f"{step}-{plan.key}" for step in ("stage", "run", "validate", "summarise"))
    if any(k in getattr(client, "futures", {}) for k in keys):
        keys = tuple(f"{k}-{batch_id.rsplit('-', 1)[1]}" for k in keys)
    return keys


def open_batch(results_dir: str | os.PathLike, batch: str | None = None) -> Batch:
    """A batch as ``results_dir`` records it (the latest one unless ``batch`` is given),
    for a later session: no client needed."""
    root = results_root(results_dir)
    data = records.read_batch(root, batch)
    plans = []
    for entry in data["plans"]:
        from .project import Plan as _Plan

        prj = Path(entry["project"])
        try:
            plans.append(_Plan.from_file(prj, entry["plan"]))
        except Exception:  # the project moved: keep what the record knows
            plans.append(_Plan(entry["plan"], prj, title=entry.get("title", "")))
    skipped = [r for r in (records.load_result(root, *k.rsplit("-", 1)) for k in data.get("skipped", [])) if r]
    return Batch(data["batch"], root, plans, [], skipped, None)


async def _set_slots(slots: int, root: str, state: str, reason: str, dask_worker=None) -> None:
    if state == "in rotation":
        dask_worker._hecras_failures_in_a_row = 0
    name = str(dask_worker.name) if dask_worker.name is not None else dask_worker.address
    records.write_worker(Path(root), name, {"worker": name, "address": dask_worker.address, "host": dask_worker.ip,
                                            "state": state, "reason": reason,
                                            "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
    dask_worker.log_event("hecras", {"action": state, "worker": dask_worker.address, "reason": reason})
    await update_slots(dask_worker, in_rotation=state == "in rotation", full=slots or None)


def restore(client, workers: list[str] | None = None, *, results_dir=None, slots: int = 1) -> None:
    """Put workers (all by default) back into rotation with ``slots`` RAS slots (opened when
    their owner policy allows: not while a colleague works at the PC)."""
    client.run(_set_slots, slots, str(results_root(results_dir)), "in rotation", "restored", workers=workers)


async def _retire_when_idle(dask_scheduler, address: str, poll: float) -> None:
    import asyncio

    while address in dask_scheduler.workers:
        ws = dask_scheduler.workers[address]
        if not any(str(ts.key).startswith("run-") for ts in ws.executing):
            await dask_scheduler.retire_workers(workers=[address], close_workers=True)
            return
        await asyncio.sleep(poll)


def _start_drain(address: str, poll: float, dask_scheduler=None) -> str:
    import asyncio

    asyncio.ensure_future(_retire_when_idle(dask_scheduler, address, poll))  # lives on the scheduler
    return "draining"


def drain(client, worker: str, *, results_dir=None, poll: float = 1.0) -> None:
    """No new plans go to ``worker``; it retires when its running plan ends.

    The waiting is done on the scheduler, so it goes on if this client closes.
    Plans waiting on the worker move to workers with open slots at once.
    """
    client.run(_set_slots, 0, str(results_root(results_dir)), "draining", "drained by request", workers=[worker])
    client.run_on_scheduler(_start_drain, worker, poll)


def _executing_runs(dask_scheduler) -> dict[str, str]:
    return {str(ts.key): ws.address for ws in dask_scheduler.workers.values() for ts in ws.executing
            if str(ts.key).startswith("run-")}


def running_plans(client) -> dict[str, str]:
    """``run-<project>-<plan>`` keys executing now → worker address.

    Read from the scheduler's record of what each worker executes (internal state,
    refreshed by worker heartbeats about once a second): Dask's ``processing`` also
    lists runs waiting on a worker for its RAS slot.
    """
    return client.run_on_scheduler(_executing_runs)


def local_cluster(n_workers: int | None = None, *, threads_per_worker: int = 2, **kwargs):
    """A LocalCluster for running plans on this machine: each worker has ``RAS=1`` and a
    spare thread for staging and summarising beside the run; the dashboard is on, with
    the HEC-RAS page at ``/hecras``.

    Workers default to one per 2 cores and per 4 GiB of memory (2D HEC-RAS uses
    several cores and a few GB per plan), at least one.
    """
    import psutil
    from distributed import LocalCluster

    if n_workers is None:
        cores = os.cpu_count() or 1
        memory_gib = psutil.virtual_memory().total / 2**30
        n_workers = max(1, min(cores // 2, int(memory_gib // 4)))
    kwargs.setdefault("processes", True)
    kwargs.setdefault("dashboard_address", ":8787")
    kwargs.setdefault("resources", {RESOURCE: 1})
    kwargs.setdefault("preload", ["dask_hecras.worker"])  # capabilities for the /hecras page
    scheduler_kwargs = dict(kwargs.pop("scheduler_kwargs", None) or {})
    scheduler_kwargs.setdefault("preload", ["dask_hecras.dashboard"])  # the /hecras page
    kwargs["scheduler_kwargs"] = scheduler_kwargs
    import dask

    # Plans waiting on a worker that dies get a "suspicious" mark; tolerate more than
    # Dask's default of 3 before giving up on them (the scheduler reads this at start).
    allowed = max(10, int(dask.config.get("distributed.scheduler.allowed-failures", 3)))
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, **kwargs)


__all__ = ["submit", "Batch", "open_batch", "local_cluster", "estimates", "plan_work", "RESOURCE", "SUCCEEDED"]
