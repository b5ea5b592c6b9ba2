"""A plan's attempt on a worker, as the scheduler's queue sends it, and what a worker does
with the runs its predecessor on the same PC left behind.

The queue (``queue``) sends :func:`run_attempt` to a worker with a free ``RAS`` slot, one
task per attempt, keyed by the attempt (so by its batch). The task stages, runs, judges and
lands the plan (``pipeline.run_once``) and returns an :class:`Outcome`. Landing that fails
keeps the run folder; :func:`land_again` tries again later on the same worker.

A worker that dies takes its engine with it (``PR_SET_PDEATHSIG`` on Linux, the Job Object on
Windows). When a worker starts, :class:`RunFolders` looks at the run folders of worker
processes of this PC that are gone: it ends any engine tree still alive, lands a run whose
engine had finished well, and reports each attempt to the queue, which has held the plan
back meanwhile: no finished run is lost, none runs twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from . import config, records
from .landing import clear_incoming
from .pipeline import ENGINE_MARK, LANDED_MARK, land_from, new_result, read_mark, run_once, summarise_into, where
from .project import Plan, ProjectError
from .records import PlanResult
from .slots import update_slots
from .validation import NOT_THE_MACHINE
from .staging import STAGED_BY, process_gone, project_in, remove, scratch_root, this_process

log = logging.getLogger("dask_hecras")
TOPIC = "hecras"
# Progress has a topic of its own: Dask keeps the last 1,000 events of a topic, and 500 running plans
# reporting every 10 s would push the workers' rarer news (capabilities, standing) out of "hecras".
PROGRESS_TOPIC = "hecras-progress"
REQUEUED = "the PC's owner came back (hecras.owner.on-return: requeue); the plan goes back in the queue"

# What became of an attempt, for the queue:
LANDED = "landed"  # a success, whole in the results folder (or a later run's already there)
FAILED = "failed"  # a failure running again cannot fix (unstable model, bad input)
RETRY = "retry"  # a failed run another run may fix (crash, timeout, cut short, no HEC-RAS here)
REQUEUE = "requeue"  # stopped on purpose (the owner came back, the queue cancelled it): not a failure
LANDING = "landing"  # a success whose results could not land yet; its run folder keeps them
LOST = "lost"  # the worker died mid-run: the engine died with it
DUPLICATE = "duplicate"  # this attempt had already been run on this PC


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one plan of a batch: everything a worker needs, nothing machine-specific."""

    batch: str
    index: int  # the plan's place in its batch
    attempt: int  # 1, 2, ... for this plan in this batch
    project: str  # the .prj, full path
    plan_id: str
    project_dir: str  # the project's results folder (results_dir/<its claimed name>)
    engine: str
    timeout: float | None = None
    scratch: str | None = None

    @property
    def attempt_id(self) -> str:
        return f"{self.batch}-{self.index:04d}-a{self.attempt}"

    @property
    def label(self) -> str:
        return f"{Path(self.project).stem}-{self.plan_id}"

    @property
    def key(self) -> str:
        """The Dask key: names the plan and carries the batch, so two batches never share tasks."""
        return f"hecras-run-{self.label}-{self.attempt_id}"

    def plan(self) -> Plan:
        return Plan(self.plan_id, Path(self.project))


@dataclass
class Outcome:
    """What became of an attempt. Plain values: it travels to the scheduler."""

    attempt_id: str
    kind: str  # LANDED, FAILED, RETRY, REQUEUE, LANDING, LOST, DUPLICATE
    reason: str = ""
    worker: str = ""  # the worker's name
    host: str = ""
    status: str = ""  # the PlanResult's status and validation
    validation: str = ""
    problem: str = ""
    run_seconds: float | None = None
    paused_seconds: float = 0.0
    run_dir: str = ""  # for LANDING: where the results wait
    recovered: bool = False  # reported by a worker's start-up sweep

    @classmethod
    def of(cls, result: PlanResult, **extra) -> "Outcome":
        if result.ok:
            kind = LANDING if result.problem == "landing" else LANDED
        elif result.problem == "cancelled":
            kind = REQUEUE
        else:
            kind = RETRY if result.retryable else FAILED
        return cls(result.attempt_id, kind, result.reason, result.worker, result.host, result.status,
                   result.validation, result.problem, result.run_seconds, result.paused_seconds,
                   str(result.scratch) if kind == LANDING and result.scratch else "", **extra)

    def as_dict(self) -> dict:
        return asdict(self)


def _event(topic: str = TOPIC, **msg) -> None:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(topic, {"worker": worker.address, **msg})


def _current_key() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().get_current_task()
    except (ImportError, ValueError):
        return None


def _cancelled(key: str | None):
    """True once the scheduler has cancelled this task (the queue stopped the attempt).

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


def _claim(spec: AttemptSpec) -> bool:
    """Only once per attempt on this PC: Dask may compute a task again after its worker died."""
    folder = scratch_root(spec.scratch) / ".attempts"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / spec.attempt_id, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def run_attempt(spec: AttemptSpec) -> dict:
    """The queue's task: one attempt of one plan, holding the worker's RAS slot."""
    from . import owner

    host, worker_name = where()
    if not _claim(spec):
        return Outcome(spec.attempt_id, DUPLICATE, "this attempt already ran on this PC", worker_name, host).as_dict()
    key = _current_key()
    cancelled = _cancelled(key)

    def stop() -> str | bool:
        if key in owner.REQUEUE:
            return REQUEUED
        return "stopped by the queue" if cancelled() else False

    def on_start(pid: int) -> None:
        if key is not None:
            owner.RUNNING[key] = pid  # the owner policy may suspend or stop it
        _event(action="attempt", attempt_id=spec.attempt_id, phase="running", run_dir=result.run_folder)

    every = config.seconds("progress.report-every", "10s")
    sent = [float("-inf")]

    def on_progress(p) -> None:  # one small event per run per interval, whatever the engine writes
        now = time.monotonic()
        if now - sent[0] >= every or p.fraction >= 1.0:
            sent[0] = now
            _event(action="progress", attempt_id=spec.attempt_id, topic=PROGRESS_TOPIC, **p.as_dict())

    _event(action="attempt", attempt_id=spec.attempt_id, phase="staging")
    result = new_result(spec.plan(), spec.engine, attempt=spec.attempt, batch=spec.batch, attempt_id=spec.attempt_id)
    try:
        plan = Plan.from_file(Path(spec.project), spec.plan_id)
        result.title = plan.title
        run_once(plan, result, Path(spec.project_dir), engine=spec.engine, scratch=spec.scratch,
                 timeout=spec.timeout if spec.timeout is not None else config.timeout_seconds(config.get("timeout")),
                 cancel=stop, on_start=on_start, on_progress=on_progress)  # no timeout in the batch: this PC's hecras.timeout
    except Exception as e:  # the plan file vanished, a bug: the queue must hear of it all the same
        from .pipeline import _finish

        _finish(result, reason=f"{type(e).__name__}: {e}", retryable=True, problem="staging")
    finally:
        owner.RUNNING.pop(key, None)
        owner.REQUEUE.discard(key)
    _after_run(result, Path(spec.project_dir).parent)
    return Outcome.of(result).as_dict()


def land_again(spec: AttemptSpec, run_dir: str) -> dict:
    """Try once more to land an attempt whose results wait in ``run_dir`` on this PC."""
    host, worker = where()
    marked = read_mark(Path(run_dir))
    plan = spec.plan()
    if marked is None or not (project_in(Path(run_dir), plan) / plan.results_name).is_file():
        return Outcome(spec.attempt_id, LOST, f"its run folder {run_dir} is gone", worker, host).as_dict()
    result, project_dir = marked
    result.problem, result.retryable = "", False
    land_from(Path(run_dir), plan, result, project_dir)
    return Outcome.of(result).as_dict()


def summarise_plan(folder: str) -> dict:
    """The queue's summary task: ``summary.nc`` from a landed plan's results folder.

    ``{"status": "done" | "retry" | "failed", "reason": ...}``: a share that cannot be written
    just now is worth another try later; a results file that cannot be summarised is not."""
    try:
        path = summarise_into(Path(folder))
    except OSError as e:
        return {"status": "retry", "reason": f"summary.nc cannot be written in {folder}: {e.strerror or e}"}
    except Exception as e:
        return {"status": "failed", "reason": f"no summary could be built from the results: {type(e).__name__}: {e}"}
    return {"status": "done", "reason": str(path or "")}


# --------------------------------------------------------------------------- a worker's standing


def _after_run(result: PlanResult, root: Path) -> None:
    """Count the worker's failed runs in a row; at ``hecras.max-failures-in-a-row`` (or at once
    when HEC-RAS is not installed) take it out of rotation."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    if result.problem in ("cancelled", "landing"):
        return  # stopped on purpose, or the share's fault: no verdict on the machine
    if result.ok or result.problem in ("input", "") or result.validation in NOT_THE_MACHINE:
        worker._hecras_failures_in_a_row = 0  # a success, or the model's fault, not the machine's
        return
    count = getattr(worker, "_hecras_failures_in_a_row", 0) + 1
    worker._hecras_failures_in_a_row = count
    limit = int(config.get("max-failures-in-a-row", 3))
    if result.problem == "engine-not-found" or count >= limit:
        why = (result.reason if result.problem == "engine-not-found"
               else f"{count} runs failed in a row, the last: {result.reason}")
        take_out_of_rotation(worker, why, root)


def take_out_of_rotation(worker, reason: str, root: Path, state: str = "out of rotation") -> None:
    """No new plans for this worker: its RAS slots go to 0 (see ``slots``)."""
    from distributed.utils import sync

    try:
        sync(worker.loop, update_slots, worker, in_rotation=False)
    except Exception as e:  # no scheduler reachable
        log.warning("could not close the slots of %s: %r", worker.address, e)
    name = str(worker.name) if worker.name is not None else worker.address
    try:
        records.write_worker(root, name, {"worker": name, "address": worker.address, "host": worker.ip,
                                          "state": state, "reason": reason,
                                          "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
    except OSError as e:
        log.warning("could not record that %s is %s: %s", name, state, e)
    worker.log_event(TOPIC, {"action": state, "worker": worker.address, "reason": reason})


# --------------------------------------------------------------------------- left behind


def _claim_folder(folder: Path) -> bool:
    """One sweeper per run folder, even when several worker processes of a PC start at once."""
    mark = folder / ".swept-by"
    try:
        fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            if not process_gone(mark.read_text()):
                return False
        except OSError:
            return False
        mark.write_text(this_process())
        return True
    except OSError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(this_process())
    return True


def _staged_plan(folder: Path, plan: Plan) -> Plan:
    """The plan as staged in a run folder (read from its copy there: the source may be out of
    reach), else ``plan``."""
    try:
        staged = Plan.from_file(project_in(folder, plan) / plan.project.name, plan.id)
    except (OSError, ProjectError, ValueError):
        return plan
    return Plan(**{**staged.__dict__, "project": plan.project})


def recover(folder: Path, worker_name: str = "") -> Outcome | None:
    """Deal with one run folder whose worker process is gone; the outcome to report, if any.

    Its engine tree is ended if still alive (a worker never removes a live engine's folder). A
    queue attempt that had landed is reported as it ended; one whose engine had finished well
    is landed now, as is one HEC-RAS judged failed (running it again gives the same); anything
    else was lost with the worker. Folders of failed runs kept for
    inspection stay (reported once); the others go.
    """
    from .engines.runner import kill_leftover
    from .validation import validate

    engine = records.read_json(folder / ENGINE_MARK)
    if engine:
        kill_leftover(int(engine["pid"]), float(engine["started"]))
    marked = read_mark(folder)
    outcome = None
    if marked is not None and marked[0].batch and not (folder / ".reported").exists():
        result, project_dir = marked
        result.host, result.worker = where()[0], worker_name or where()[1]
        ended = records.read_json(folder / LANDED_MARK)
        plan = _staged_plan(folder, Plan(result.plan_id, Path(result.project_path)))
        if ended:
            outcome = Outcome.of(PlanResult.from_json(ended), recovered=True)
        else:
            if result.status == "running":  # not judged yet: did the engine finish before the worker died?
                from .pipeline import _finish

                v = validate(project_in(folder, plan) / plan.results_name, plan=plan, engine=result.engine)
                if v.ok or v.status in NOT_THE_MACHINE:  # HEC-RAS's own verdict: a new run gives the same
                    result.validation = v.status
                    result.run_seconds = result.run_seconds or v.run_seconds
                    _finish(result, status=records.SUCCEEDED if v.ok else records.FAILED, reason=v.reason,
                            problem="" if v.ok else "run")
                else:  # cut short by the worker's death: lost, to run again
                    outcome = Outcome(result.attempt_id, LOST, "its worker died while the engine ran "
                                      f"({v.reason or v.status})", result.worker, result.host, recovered=True)
            if outcome is None:  # judged, not landed: land it now
                (folder / STAGED_BY).write_text(this_process())  # ours now, should landing have to wait
                clear_incoming(result, project_dir)  # what a landing cut short left
                land_from(folder, plan, result, project_dir)
                if (folder / ".failed").exists():
                    (folder / ".reported").touch()
                return Outcome.of(result, recovered=True)
    if (folder / ".failed").exists():
        (folder / ".reported").touch()
    else:
        remove(folder)
    return outcome


def sweep_and_recover(root: Path, worker_name: str = "") -> list[Outcome]:
    """Every run folder under ``root`` left by worker processes that are gone (see :func:`recover`)."""
    outcomes = []
    try:
        folders = [p for p in Path(root).iterdir() if p.is_dir()]
    except OSError:
        return outcomes
    for folder in folders:
        try:
            mark = (folder / STAGED_BY).read_text()
        except OSError:
            continue  # not a run folder (the cache), or being made
        if not process_gone(mark) or not _claim_folder(folder):
            continue
        try:
            outcome = recover(folder, worker_name)
        except Exception:  # one odd folder must not stop the worker from starting
            log.exception("could not clear the run folder %s", folder)
            continue
        if outcome is not None:
            outcomes.append(outcome)
    _forget_old_claims(Path(root) / ".attempts")
    return outcomes


def _forget_old_claims(folder: Path, days: float = 14.0) -> None:
    cutoff = time.time() - days * 86400
    try:
        for p in folder.iterdir():
            if p.stat().st_mtime < cutoff:
                p.unlink()
    except OSError:
        pass


class RunFolders(WorkerPlugin):
    """At a worker's start: the sweep of what earlier worker processes of this PC left behind
    (:func:`sweep_and_recover`), its outcomes reported to the queue once the worker is in the
    cluster. Added by the worker preload and by ``submit``; the sweep belongs to the worker
    process (a plugin registered again replaces this one, and must not sweep twice or lose
    the report)."""

    name = "hecras-run-folders"
    idempotent = True

    def setup(self, worker) -> None:
        from tornado.ioloop import PeriodicCallback

        self.worker = worker
        self.sweep = getattr(worker, "_hecras_sweep", None)
        if self.sweep is None:
            self.sweep = worker._hecras_sweep = {"outcomes": None, "reported": False}
            root = scratch_root(worker=worker)
            threading.Thread(target=self._sweep, args=(root, str(worker.name)), daemon=True).start()  # off the loop
        self._pc = PeriodicCallback(self._report, 200)
        self._pc.start()

    def _sweep(self, root: Path, name: str) -> None:
        try:
            self.sweep["outcomes"] = sweep_and_recover(root, name)
        except Exception:
            log.exception("the start-up sweep of %s failed", root)
            self.sweep["outcomes"] = []

    def teardown(self, worker) -> None:
        self._pc.stop()

    def _report(self) -> None:
        from distributed.core import Status

        sweep = self.sweep
        if sweep["reported"]:
            self._pc.stop()
            return
        if sweep["outcomes"] is None or self.worker.status != Status.running:
            return
        sweep["reported"] = True
        self._pc.stop()
        for outcome in sweep["outcomes"]:
            self.worker.log_event(TOPIC, {"action": "recovered", "worker": self.worker.address,
                                          "outcome": outcome.as_dict()})
        self.worker.log_event(TOPIC, {"action": "swept", "worker": self.worker.address,
                                      "name": str(self.worker.name), "reported": len(sweep["outcomes"])})
