"""One plan end to end: stage → run → validate → summarise, results copied back.

Each stage is a plain function of small picklable values. ``run_plan`` calls them
in order (in a loop, or as one ``client.map`` task); the Dask layer runs them as a
graph of four tasks per plan. A failure that another attempt may fix raises
:class:`RetryableFailure`, so Dask's ``retries=`` re-runs it; a failure that running
again cannot fix (an unstable model, bad input) returns a failed :class:`PlanResult`.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import config, records
from .engines import EngineNotFound, EngineRun, get_engine
from .project import Plan, ProjectError
from .records import FAILED, SUCCEEDED, PlanResult
from .cache import file_sha256
from .staging import StagedPlan, keep_failed, remove, stage
from .summary import summarise, write_summary
from .validation import Validation, validate


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


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def results_root(results_dir: str | os.PathLike | None) -> Path:
    root = results_dir or config.get("results-dir") or Path.cwd() / "hecras-results"
    return Path(os.path.abspath(root))


def _where() -> tuple[str, str]:
    """This machine, and the Dask worker when running inside one."""
    host = socket.gethostname()
    try:
        from distributed import get_worker

        w = get_worker()
        return host, str(w.name) if w.name is not None else w.address
    except (ImportError, ValueError):
        return host, ""


def _new_result(plan: Plan, engine: str, batch: str, root: Path) -> PlanResult:
    host, worker = _where()
    attempt = len(records.attempts(root, plan.project_name, plan.id, batch)) + 1
    return PlanResult(plan.id, plan.project_name, FAILED, "", title=plan.title, engine=engine, host=host,
                      worker=worker, batch=batch, attempt=attempt, started=_now())


def stage_step(plan: Plan, *, scratch: str | os.PathLike | None = None, results_dir=None, engine: str = "fake",
               batch: str = "", raise_retryable: bool = True) -> StagedPlan | PlanResult:
    """Stage the plan's inputs on this machine; bad input gives a failed result, not an error."""
    root = results_root(results_dir)
    try:
        return stage(plan, scratch)
    except ProjectError as e:
        result = _finish(_new_result(plan, engine, batch, root), reason=str(e), problem="input")
        return _settle(result, root, raise_retryable=False)
    except OSError as e:  # disk full, share unreachable: another attempt may do better
        result = _finish(_new_result(plan, engine, batch, root),
                         reason=f"staging failed on {socket.gethostname()}: {e}", retryable=True, problem="staging")
        return _settle(result, root, raise_retryable=raise_retryable)


def run_step(
    plan: Plan,
    staged: StagedPlan | PlanResult | None,
    *,
    engine: str = "fake",
    scratch: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    timeout: float | str | None = None,
    batch: str = "",
    cancel: Callable[[], bool | str] | None = None,
    raise_retryable: bool = True,
    on_start: Callable[[int], None] | None = None,
) -> PlanResult:
    """Run the engine on a staged plan, judge the run, copy its results back.

    If the staged files were not staged by this process (Dask placed the run on another
    PC or worker), or an earlier attempt ran in them (a retry: HEC-RAS may have written
    there, and that folder is kept for inspection), the plan is staged again here and the
    result says so.
    """
    if isinstance(staged, PlanResult):
        return staged  # staging already ended it (bad input)
    engine_ = get_engine(engine)
    root = results_root(results_dir)
    timeout_s = config.timeout_seconds(timeout if timeout is not None else config.get("timeout"))
    result = _new_result(plan, engine_.name, batch, root)
    if staged is None or not staged.usable_here() or (staged.run_dir / ".failed").exists():
        again = stage_step(plan, scratch=scratch, results_dir=results_dir, engine=engine_.name, batch=batch,
                           raise_retryable=raise_retryable)
        if isinstance(again, PlanResult):
            return again
        staged, result.restaged = again, staged is not None

    result.bytes_copied, result.bytes_from_cache = staged.bytes_copied, staged.bytes_from_cache
    result.staging_seconds = staged.seconds
    log = staged.run_dir / f"{plan.project_name}.{plan.id}.engine.log"
    result.run_start = time.time()
    try:
        run = engine_.run(plan, staged.prj, staged.plan_file, log=log, timeout=timeout_s, cancel=cancel,
                          on_start=on_start)
    except EngineNotFound as e:
        result.scratch = staged.run_dir
        return _settle(_finish(result, reason=str(e), retryable=True, problem="engine-not-found"), root,
                       raise_retryable)
    result.run_end = time.time()
    result.exit_code = run.exit_code
    result.run_seconds = run.seconds
    result.paused_seconds = run.process.paused_seconds
    v = validate(staged.results_hdf, plan=plan)
    result.validation = v.status
    status, reason, retryable = _judge(run, v, timeout_s)
    if status != SUCCEEDED and config.get("keep-failed-scratch", True):
        result.scratch = staged.run_dir
    _finish(result, status=status, reason=reason, retryable=retryable,
            problem="" if status == SUCCEEDED else "timeout" if run.process.timed_out
            else "cancelled" if run.process.cancelled else "run")
    _land(result, staged, log, root)
    if result.scratch is None:
        remove(staged.run_dir)
    else:
        keep_failed(staged.run_dir)
    return _settle(result, root, raise_retryable)


def validate_step(result: PlanResult, plan: Plan) -> PlanResult:
    """Validate the copy in the results folder: what the engineer will open."""
    if result.ok and result.hdf is not None:
        v = validate(result.hdf, plan=plan)
        if not v.ok:
            result.status, result.retryable = FAILED, True
            result.reason = f"The copy in the results folder does not validate: {v.reason}"
        result.validation = v.status
    return result


def summarise_step(result: PlanResult, results_dir: str | os.PathLike | None = None) -> PlanResult:
    """Write ``summary.nc`` beside the results, then ``result.json``, the completion mark."""
    if result.ok and result.folder is not None and _superseded(result.folder, result):
        result.summary = result.folder / "summary.nc"  # this run's or a later one's, in place: leave it be
        return result
    if result.ok and result.hdf is not None and result.folder is not None:
        tmp = result.folder / f".summary.nc.{uuid.uuid4().hex[:8]}.tmp"
        try:
            write_summary(summarise(result.hdf), tmp)
            os.replace(tmp, result.folder / "summary.nc")
            result.summary = result.folder / "summary.nc"
        except Exception as e:  # the run itself succeeded: keep its results, say what is missing
            tmp.unlink(missing_ok=True)
            result.reason += f" No summary could be built from the results: {e}."
    if result.folder is not None:
        result.attempts = records.attempts(results_root(results_dir), result.project, result.plan_id, result.batch)
        records.write_json(result.folder / "result.json", result.to_json())
    return result


def landed(plan: Plan, results_dir: str | os.PathLike | None = None, batch: str = "") -> PlanResult | None:
    """This batch's whole success of ``plan`` when it is already in the results folder.

    Dask computes a finished plan's tasks again when the only worker holding their result
    is lost (a PC switched off, a cable pulled), and a cut-off worker may land a plan the
    scheduler has given to another: the results are safe on disk, so the plan is not run
    again. Runs outside a batch have nothing to tell them apart and always run.
    """
    if not batch:
        return None
    r = records.load_result(results_root(results_dir), plan.project_name, plan.id)
    if r is None or not r.ok or r.batch != batch or r.hdf is None or not r.hdf.is_file():
        return None
    return r


def run_plan(
    plan: Plan,
    *,
    engine: str = "fake",
    scratch: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    timeout: float | str | None = None,
    batch: str = "",
    cancel: Callable[[], bool | str] | None = None,
    raise_retryable: bool = True,
) -> PlanResult:
    """Run one plan and land its results in ``results_dir/<project>/<plan id>/``.

    Never writes into the source project. Status and reason come from
    :func:`~dask_hecras.validate`. A failure another attempt may fix raises
    :class:`RetryableFailure` (so ``client.map(run_plan, ..., retries=2)`` retries
    it) unless ``raise_retryable=False``, which returns it as a failed result.
    """
    get_engine(engine)  # a wrong engine fails before anything is staged
    staged = stage_step(plan, scratch=scratch, results_dir=results_dir, engine=engine, batch=batch,
                        raise_retryable=raise_retryable)
    result = run_step(plan, staged, engine=engine, scratch=scratch, results_dir=results_dir, timeout=timeout,
                      batch=batch, cancel=cancel, raise_retryable=raise_retryable)
    return summarise_step(validate_step(result, plan), results_dir)


def _settle(result: PlanResult, root: Path, raise_retryable: bool) -> PlanResult:
    """Record the attempt; a failed one is written down at once, as it may be the last."""
    if not result.finished:
        result.finished = _now()
    records.record_attempt(root, result)
    result.attempts = records.attempts(root, result.project, result.plan_id, result.batch)
    if not result.ok:
        if result.folder is None:
            result.folder = _landing_folder(root, result)
            result.folder.mkdir(parents=True, exist_ok=True)
        records.write_json(result.folder / "result.json", result.to_json())
        if result.retryable and raise_retryable:
            raise RetryableFailure(result)
    return result


def _judge(run: EngineRun, v: Validation, timeout: float | None) -> tuple[str, str, bool]:
    """Status, reason and retryability of an attempt."""
    if run.process.timed_out:
        return FAILED, (f"Timed out after {timeout:g} s: the engine was stopped and its whole process tree "
                        f"killed. {v.reason}").strip(), True
    if run.process.cancelled:
        why = f" ({run.process.cancel_reason})" if run.process.cancel_reason else ""
        return FAILED, f"Cancelled{why}: the engine was stopped and its whole process tree killed.", True
    if v.ok:
        return SUCCEEDED, v.reason, False
    reason = v.reason
    if run.exit_code not in (0, None):
        reason += f" The engine exited with code {run.exit_code} (see the engine log)."
    return FAILED, reason, v.retryable


def _finish(result: PlanResult, *, status: str = FAILED, reason: str, retryable: bool = False,
            problem: str = "") -> PlanResult:
    result.status, result.reason, result.retryable, result.problem = status, reason, retryable, problem
    result.finished = _now()
    return result


def _holds_success(folder: Path) -> bool:
    data = records.read_json(folder / "result.json")
    return bool(data) and data.get("status") == SUCCEEDED


def _landing_folder(root: Path, result: PlanResult) -> Path:
    """``<project>/<plan>``, or ``<plan>.failed`` for a failure beside an earlier success."""
    final = records.plan_folder(root, result.project, result.plan_id)
    if not result.ok and _holds_success(final):
        final = final.with_name(f"{result.plan_id}.failed")
    return final


def _land(result: PlanResult, staged: StagedPlan, log: Path, root: Path) -> None:
    """Copy results into a temporary folder beside their place, then rename it into place.

    A reader never sees half a result, and a failed attempt never replaces an
    earlier good result: it lands beside it in ``<plan>.failed``. A success from a run
    that started before the whole success already in place (a lost worker finishing
    late) does not land at all.
    """
    plan = staged.plan
    project_dir = root / plan.project_name
    project_dir.mkdir(parents=True, exist_ok=True)
    final = _landing_folder(root, result)
    if result.ok and _superseded(final, result):  # before copying gigabytes for nothing
        _keep_later(result, final, plan.results_name, log)
        return
    incoming = project_dir / f".{plan.id}.incoming-{uuid.uuid4().hex[:8]}"
    incoming.mkdir()
    try:
        _fill(result, staged, log, incoming, final)
        if result.ok and _superseded(final, result):  # the later run landed while this one copied
            shutil.rmtree(incoming, ignore_errors=True)
            _keep_later(result, final, plan.results_name, log)
            return
        old = None
        if final.exists():
            old = project_dir / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        try:
            os.replace(incoming, final)
        except OSError:  # another machine landed this plan in the same instant
            if old is not None and not final.exists():
                os.replace(old, final)
            raise
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)  # nothing half-copied stays behind
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _keep_later(result: PlanResult, final: Path, hdf_name: str, log: Path) -> None:
    """A worker cut off from the cluster (a laptop that slept) finished a run after the plan
    had run again elsewhere and landed whole: keep that, and point this result at it."""
    result.folder, result.hdf, result.log = final, final / hdf_name, final / log.name
    result.reason += f" A later run of this plan had already landed in {final}; this run's copy was not kept."


def _superseded(final: Path, result: PlanResult) -> bool:
    """``final`` already holds a whole success (result.json written) of this run or a later one."""
    data = records.read_json(final / "result.json")
    if not data or data.get("status") != SUCCEEDED or data.get("run_start") is None or result.run_start is None:
        return False
    return float(data["run_start"]) >= result.run_start


def _fill(result: PlanResult, staged: StagedPlan, log: Path, incoming: Path, final: Path) -> None:
    plan = staged.plan
    run_folder = staged.prj.parent
    names = {"hdf": plan.results_name, "messages": f"{plan.project_name}.{plan.id}.computeMsgs.txt"}
    copied: dict[str, Path] = {}
    for key, name in names.items():
        if (run_folder / name).is_file():
            _copy_checked(run_folder / name, incoming / name)
            copied[key] = final / name
    if log.is_file():
        _copy_checked(log, incoming / log.name)
        result.log = final / log.name
    result.hdf = copied.get("hdf")
    result.folder = final


def _copy_checked(source: Path, target: Path) -> None:
    """Copy, then compare size and SHA-256: a damaged copy never lands."""
    shutil.copy2(source, target)
    if source.stat().st_size != target.stat().st_size or file_sha256(source) != file_sha256(target):
        raise OSError(f"the copy of {source} to {target} does not match it (size or checksum)")
