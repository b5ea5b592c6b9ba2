"""One plan end to end: stage → run → judge → land, then summarise.

:func:`run_once` is the one place that knows the order of an attempt; :func:`run_plan` (one
plan, in a loop or as a ``client.map`` task) and the queue's task on a worker (``runs``) both
call it. A failure another attempt may fix is marked ``retryable``: :func:`run_plan` raises
:class:`RetryableFailure` for it, so Dask's ``retries=`` re-runs it; a failure that running
again cannot fix (an unstable model, bad input) comes back as a failed :class:`PlanResult`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import config, records
from .engines import Engine, EngineNotFound, EngineRun, get_engine
from .landing import LandingFailed, land, land_record, result_files
from .progress import Progress, RunWatch, StallRule
from .project import Plan, ProjectError
from .records import FAILED, SUCCEEDED, PlanResult
from .staging import StagedPlan, keep_failed, remove, stage
from .summary import summarise, write_summary
from .validation import Validation, validate

log = logging.getLogger("dask_hecras")

# Marks in a run folder (see ``runs.recover``): which attempt it is, its engine, landed.
ATTEMPT_MARK, ENGINE_MARK, LANDED_MARK = ".attempt.json", ".engine.json", ".landed"


class RetryableFailure(RuntimeError):
    """An attempt failed in a way another attempt may fix (cut short, lost machine, full disk).

    Raised so that Dask's ``retries=`` runs the task again; ``.result`` is the failed
    attempt's :class:`PlanResult`, with every attempt so far in ``.result.attempts``.
    """

    def __init__(self, result: PlanResult):
        self.result = result
        super().__init__(f"{result.project} {result.plan_id} attempt {result.attempt}: {result.reason}")

    def __reduce__(self):
        return (type(self), (self.result,))


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def results_root(results_dir: str | os.PathLike | None) -> Path:
    root = results_dir or config.get("results-dir") or Path.cwd() / "hecras-results"
    return Path(os.path.abspath(root))


def where() -> tuple[str, str]:
    """This machine, and the Dask worker when running inside one."""
    host = socket.gethostname()
    try:
        from distributed import get_worker

        w = get_worker()
        return host, str(w.name) if w.name is not None else w.address
    except (ImportError, ValueError):
        return host, ""


def new_result(plan: Plan, engine: str, *, attempt: int, batch: str = "", attempt_id: str = "") -> PlanResult:
    host, worker = where()
    return PlanResult(plan.id, plan.project_name, FAILED, "", title=plan.title, engine=engine, host=host,
                      worker=worker, batch=batch, attempt=attempt, started=now(), attempt_id=attempt_id,
                      project_path=str(plan.project))


def _finish(result: PlanResult, *, status: str = FAILED, reason: str, retryable: bool = False,
            problem: str = "") -> PlanResult:
    from .engines import FAKE_NOTE

    if result.engine == "fake" and not reason.startswith(FAKE_NOTE):
        reason = f"{FAKE_NOTE} {reason}"  # synthetic results never pass for HEC-RAS's
    result.status, result.reason, result.retryable, result.problem = status, reason, retryable, problem
    result.finished = now()
    return result


def _judge(run: EngineRun, v: Validation, timeout: float | None) -> tuple[str, str, bool, str]:
    """Status, reason, retryability and kind of problem of an engine run."""
    if run.process.timed_out:
        return FAILED, (f"Timed out after {timeout:g} s: the engine was stopped and its whole process tree "
                        f"killed. {v.reason}").strip(), True, "timeout"
    if run.process.cancelled:
        why = f" ({run.process.cancel_reason})" if run.process.cancel_reason else ""
        return FAILED, f"Cancelled{why}: the engine was stopped and its whole process tree killed.", True, "cancelled"
    if v.ok:
        return SUCCEEDED, v.reason, False, ""
    reason = v.reason
    if run.exit_code not in (0, None):
        reason += f" The engine exited with code {run.exit_code} (see the engine log)."
    return FAILED, reason, v.retryable, "run"


def _record(project_dir: Path, result: PlanResult) -> None:
    """The attempt's record; a results share out of reach does not stop the run (the record is
    written again at the end, and landing waits for the share)."""
    try:
        records.record_attempt(project_dir, result)
    except OSError as e:
        log.warning("could not record attempt %s of %s in %s: %s", result.attempt, result.key, project_dir, e)


def watch_run(engine: Engine, plan: Plan, run_dir: Path, log_file: Path) -> RunWatch:
    """Follows a run's progress (``progress``) and calls a stall (``hecras.stall-*``)."""
    import psutil

    window = (plan.end - plan.start).total_seconds() / 3600 if plan.start and plan.end else None

    def tree() -> list[psutil.Process]:  # the engine (its pid set once started: ``watch.pids``) and its children
        if not watch.pids:
            return []
        try:
            root = psutil.Process(watch.pids[0])
            return [root] + root.children(recursive=True)
        except psutil.Error:
            return []

    def suspended() -> bool:
        try:
            return bool(watch.pids) and psutil.Process(watch.pids[0]).status() == psutil.STATUS_STOPPED
        except psutil.Error:
            return False

    def dialogs() -> list[str]:  # Windows: a dialog box of the engine's tree, named in the stall's reason
        from .engines.dialogs import open_dialogs

        return open_dialogs([p.pid for p in tree()])

    def cpu() -> float | None:  # CPU seconds of the engine's tree: a dialog waits idle, a computation does not
        procs = tree()
        if not procs:
            return None
        total = 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    watch = RunWatch(engine.progress_file(plan, run_dir, log_file), window, rule=StallRule.from_config(),
                     interval=config.seconds("progress.interval", "2s"), suspended=suspended,
                     dialogs=dialogs if sys.platform == "win32" else None, cpu=cpu)
    return watch


def run_engine(engine: Engine, plan: Plan, staged: StagedPlan, result: PlanResult, *, timeout: float | None,
               cancel: Callable[[], bool | str] | None = None,
               on_start: Callable[[int], None] | None = None,
               on_progress: Callable[[Progress], None] | None = None) -> PlanResult:
    """Run the engine in the staged folder and judge the run from its results file.

    While it runs, its progress is followed (``on_progress`` hears each move) and a run whose
    progress stands still too long (``hecras.stall-after``) is stopped as stalled: a retryable
    failure, saying where it stood."""
    log_file = staged.run_dir / f"{plan.project_name}.{plan.id}.engine.log"
    watch = watch_run(engine, plan, staged.run_dir, log_file)

    def started(pid: int) -> None:
        watch.pids[:] = [pid]
        try:
            import psutil

            records.write_json(staged.run_dir / ENGINE_MARK, {"pid": pid, "started": psutil.Process(pid).create_time()})
        except Exception:  # the engine already ended
            pass
        if on_start is not None:
            on_start(pid)

    def check() -> bool | str:
        moved = watch.poll()
        if moved is not None and on_progress is not None:
            try:
                on_progress(moved)
            except Exception as e:  # progress is news, never a reason to stop a run
                log.debug("progress of %s not reported: %r", result.key, e)
        if watch.stall:
            return watch.stall
        return cancel() if cancel is not None else False

    result.run_start = time.time()
    try:
        run = engine.run(plan, staged.prj, staged.plan_file, log=log_file, timeout=timeout, cancel=check,
                         on_start=started)
    except EngineNotFound as e:
        result.run_start = None
        return _finish(result, reason=str(e), retryable=True, problem="engine-not-found")
    result.run_end = time.time()
    result.exit_code, result.run_seconds = run.exit_code, run.seconds
    result.paused_seconds = run.process.paused_seconds
    if watch.latest is not None:
        result.progress = watch.latest.fraction
    v = validate(staged.results_hdf, plan=plan, engine=engine.name)
    result.validation = v.status
    if run.process.cancelled and watch.stall and run.process.cancel_reason == watch.stall:
        return _finish(result, reason=f"Stalled: {watch.stall}. The engine was stopped and its whole process tree "
                                      "killed.", retryable=True, problem="stall")
    status, reason, retryable, problem = _judge(run, v, timeout)
    return _finish(result, status=status, reason=reason, retryable=retryable, problem=problem)


def land_patiently(result: PlanResult, files: list[Path], project_dir: Path, patience: float,
                   first_wait: float = 1.0) -> bool:
    """Land, trying again with growing waits for up to ``patience`` seconds (a share that is
    full, read-only or out of reach for a while). False if it still could not."""
    deadline, wait = time.monotonic() + patience, first_wait
    while True:
        try:
            land(result, files, project_dir)
            return True
        except LandingFailed as e:
            if time.monotonic() + wait > deadline:
                result.reason = (result.reason + f" Landing failed: {e.strerror}.").strip()
                return False
            log.warning("landing %s failed (%s); trying again in %.0f s", result.key, e.strerror, wait)
            time.sleep(wait)
            wait = min(wait * 2, 60.0)


def run_once(plan: Plan, result: PlanResult, project_dir: Path, *, engine: str, scratch=None,
             timeout: float | None = None, cancel: Callable[[], bool | str] | None = None,
             on_start: Callable[[int], None] | None = None, patience: float | None = None,
             summary: bool = False, on_progress: Callable[[Progress], None] | None = None) -> PlanResult:
    """One attempt: stage, record its start, run the engine, judge, land, clean up.

    The attempt is recorded before the engine starts and again at its end. When the results
    cannot land within ``patience`` seconds (default ``hecras.landing-patience``),
    ``result.problem`` is ``"landing"`` and the run folder (``result.scratch``) keeps them for
    :func:`land_from` to try again. With ``summary``, a success's ``summary.nc`` is written in
    the run folder and lands with its results, whole, so that a plan landing again never leaves
    the study without it (the plan queue summarises in a task of its own instead, to free the
    slot sooner).
    """
    try:
        engine_ = get_engine(engine)  # "auto": the HEC-RAS this machine has, if any
    except EngineNotFound as e:
        _finish(result, reason=str(e), retryable=True, problem="engine-not-found")
        _land_outcome(result, project_dir)
        return result
    result.engine = engine_.name  # the one that runs here ("auto" says only how it was chosen)
    try:
        # The engine's own inputs (the Linux engine's prepared files) are checked before anything is copied.
        staged = stage(plan, scratch, extra=engine_.extra_inputs(plan))
    except EngineNotFound as e:  # this machine cannot run the engine: another may
        _finish(result, reason=str(e), retryable=True, problem="engine-not-found")
        _land_outcome(result, project_dir)
        return result
    except ProjectError as e:
        _finish(result, reason=str(e), problem="input")
        _land_outcome(result, project_dir)
        return result
    except OSError as e:  # disk full, share unreachable: another attempt may do better
        _finish(result, reason=f"staging failed on {socket.gethostname()}: {e}", retryable=True, problem="staging")
        _land_outcome(result, project_dir)
        return result
    result.fingerprint, result.run_folder = staged.fingerprint, str(staged.run_dir)
    result.bytes_copied, result.bytes_from_cache = staged.bytes_copied, staged.bytes_from_cache
    result.staging_seconds = staged.seconds
    result.status = "running"
    try:
        _mark(staged.run_dir, result, project_dir)
        _record(project_dir, result)
        run_engine(engine_, plan, staged, result, timeout=timeout, cancel=cancel, on_start=on_start,
                   on_progress=on_progress)
        if not result.ok and config.get("keep-failed-scratch", True):
            result.scratch = staged.run_dir
        _mark(staged.run_dir, result, project_dir)  # judged: what landing, later or elsewhere, needs
        if summary and result.ok:
            _summarise_before_landing(staged, result, project_dir)
    except OSError as e:  # the scratch disk filled up (or failed) during the run
        _finish(result, reason=f"the run folder on {socket.gethostname()} could not be written: {e}",
                retryable=True, problem="scratch")
        result.scratch = staged.run_dir if config.get("keep-failed-scratch", True) else None
    return land_from(staged.run_dir, plan, result, project_dir, patience=patience)


def _summarise_before_landing(staged: StagedPlan, result: PlanResult, project_dir: Path) -> None:
    """``summary.nc`` in the run folder (local disk), naming the results HDF where it will land."""
    from .landing import landing_folder

    try:
        ds = summarise(staged.results_hdf)
        ds.attrs["engine"] = result.engine or "unknown"  # "fake": synthetic results, never HEC-RAS's
        ds.attrs["source_file"] = str(landing_folder(project_dir, result) / staged.results_hdf.name)
        write_summary(ds, staged.run_dir / "summary.nc")
    except Exception as e:  # the run itself succeeded: its results land; the summary can be built later
        (staged.run_dir / "summary.nc").unlink(missing_ok=True)
        log.warning("no summary of %s before landing: %r", result.key, e)


def land_from(run_dir: Path, plan: Plan, result: PlanResult, project_dir: Path, *,
              patience: float | None = None) -> PlanResult:
    """Land a judged attempt from its run folder and clean up after it (see :func:`run_once`)."""
    if patience is None:
        patience = config.seconds("landing-patience", "30s")
    landed = land_patiently(result, result_files(plan, run_dir), project_dir, patience)
    if not landed and result.ok:  # the run is good: keep it until its results can land
        result.problem, result.retryable, result.scratch = "landing", True, run_dir
        _record(project_dir, result)
        return result
    if landed:
        records.write_json(run_dir / LANDED_MARK, result.to_json())
    _record(project_dir, result)
    if result.scratch is None:
        remove(run_dir)
    else:
        keep_failed(run_dir)
    return result


def _mark(run_dir: Path, result: PlanResult, project_dir: Path) -> None:
    records.write_json(run_dir / ATTEMPT_MARK, {**result.to_json(), "project_dir": str(project_dir)})


def read_mark(run_dir: Path) -> tuple[PlanResult, Path] | None:
    """The attempt a run folder holds, as last judged, and its project's results folder."""
    saved = records.read_json(Path(run_dir) / ATTEMPT_MARK)
    if not saved:
        return None
    project_dir = Path(saved.pop("project_dir"))
    return PlanResult.from_json(saved), project_dir


def _land_outcome(result: PlanResult, project_dir: Path) -> None:
    """An attempt that ended before its engine ran: record it and land its outcome."""
    try:
        land_record(result, project_dir)
        records.record_attempt(project_dir, result)
    except OSError as e:
        log.warning("could not record the outcome of %s: %s", result.key, e)


def summarise_into(folder: Path) -> Path | None:
    """Write ``summary.nc`` beside the landed results in ``folder``, from its HDF alone (so it
    can be done again, anywhere, without running the engine). Returns its path, or ``None`` if
    the folder holds no success. A summary of results that a later landing replaced meanwhile
    is thrown away.

    The netCDF file is written on local disk and then copied: HDF5 does not fail cleanly when
    the disk under a file it writes fills up (the process crashes), and the results folder is
    often a share that fills up; a plain copy fails with an ``OSError`` that can be retried.
    """
    import shutil
    import tempfile

    from .staging import scratch_root

    landed = records.load_result(folder)
    if landed is None or not landed.ok or landed.hdf is None:
        return None
    folder = landed.folder  # where they are: the plan's folder, or beside it when that was in use
    hdf = landed.hdf
    local_dir = scratch_root()
    local_dir.mkdir(parents=True, exist_ok=True)
    handle, local = tempfile.mkstemp(prefix=".summary-", suffix=".nc", dir=local_dir)
    os.close(handle)
    tmp = Path(folder) / f".summary.nc.{uuid.uuid4().hex[:8]}.tmp"
    try:
        ds = summarise(hdf)
        ds.attrs["engine"] = landed.engine or "unknown"  # "fake": synthetic results, never HEC-RAS's
        write_summary(ds, Path(local))
        shutil.copyfile(local, tmp)
        again = records.load_result(folder)
        if again is None or again.attempt_id != landed.attempt_id or again.run_start != landed.run_start:
            return None  # another run landed while this summary was written
        os.replace(tmp, Path(folder) / "summary.nc")
    finally:
        Path(local).unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return Path(folder) / "summary.nc"


def run_plan(
    plan: Plan,
    *,
    engine: str | None = None,
    scratch: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    timeout: float | str | None = None,
    cancel: Callable[[], bool | str] | None = None,
    raise_retryable: bool = True,
) -> PlanResult:
    """Run one plan and land its results in ``results_dir/<project>/<plan id>/``.

    Never writes into the source project. Status and reason come from
    :func:`~dask_hecras.validate`. A failure another attempt may fix raises
    :class:`RetryableFailure` (so ``client.map(run_plan, ..., retries=2)`` retries
    it) unless ``raise_retryable=False``, which returns it as a failed result.
    """
    engine_ = get_engine(engine)  # a wrong engine fails before anything is staged
    timeout_s = config.timeout_seconds(timeout if timeout is not None else config.get("timeout"))
    project_dir = records.claim_project_folder(results_root(results_dir), plan.project)
    attempt = len(records.attempts(project_dir, plan.id)) + 1
    result = new_result(plan, engine_.name, attempt=attempt, attempt_id=f"direct-{uuid.uuid4().hex[:12]}-a{attempt}")
    run_once(plan, result, project_dir, engine=engine_.name, scratch=scratch, timeout=timeout_s, cancel=cancel,
             summary=True)
    if result.problem == "landing":  # a good run whose results could not land: not a success yet
        result.status = FAILED
        result.reason += f" The results wait in {result.scratch}."
    if result.ok and result.folder is not None and result.landed and (result.folder / "summary.nc").is_file():
        result.summary = result.folder / "summary.nc"  # landed with the results
    elif result.ok and result.folder is not None and result.landed:
        try:
            result.summary = summarise_into(result.folder)
        except Exception as e:  # the run itself succeeded: keep its results, say what is missing
            result.reason += f" No summary could be built from the results: {e}."
    elif result.ok and result.folder is not None:
        result.summary = result.folder / "summary.nc"  # a later run's results, kept in place
    if not result.ok and result.retryable and raise_retryable:
        raise RetryableFailure(result)
    return result
