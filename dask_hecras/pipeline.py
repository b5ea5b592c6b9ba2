"""One plan end to end: stage → run → validate → summarise → copy back.

``run_plan`` is a plain function of small picklable values, so it runs the same
in a loop, in ``client.map`` and inside the per-plan task graphs of the Dask layer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import config
from .engines import EngineNotFound, EngineRun, get_engine
from .project import Plan, ProjectError
from .staging import StagedPlan, remove, stage
from .summary import summarise, write_summary
from .validation import Validation, validate

SUCCEEDED, FAILED = "succeeded", "failed"


@dataclass
class PlanResult:
    """The outcome of one attempt at one plan. Small and picklable."""

    plan_id: str
    project: str
    status: str  # "succeeded" or "failed"
    reason: str
    title: str = ""
    engine: str = ""
    hdf: Path | None = None  # the results HDF in the results folder
    summary: Path | None = None  # summary.nc beside it
    folder: Path | None = None  # results_dir/<project>/<plan>
    log: Path | None = None  # the engine's stdout and stderr
    exit_code: int | None = None
    run_seconds: float | None = None  # wall time of the engine process
    validation: str = ""  # validate()'s status: succeeded, failed, incomplete, corrupt, missing
    retryable: bool = False  # running again may help (cut short, not judged a failure)
    host: str = field(default_factory=socket.gethostname)
    attempt: int = 1
    scratch: Path | None = None  # run folder kept after a failure, for inspection
    started: str = ""
    finished: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "PlanResult":
        paths = {"hdf", "summary", "folder", "log", "scratch"}
        known = cls.__dataclass_fields__
        return cls(**{k: (Path(v) if k in paths and v else v) for k, v in data.items() if k in known})


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def results_root(results_dir: str | os.PathLike | None) -> Path:
    root = results_dir or config.get("results-dir") or Path.cwd() / "hecras-results"
    return Path(os.path.abspath(root))


def run_plan(
    plan: Plan,
    *,
    engine: str = "fake",
    scratch: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    timeout: float | str | None = None,
    attempt: int = 1,
    cancel: Callable[[], bool] | None = None,
) -> PlanResult:
    """Run one plan and land its results in ``results_dir/<project>/<plan id>/``.

    Never writes into the source project. Returns a :class:`PlanResult` whose
    status and reason come from :func:`~dask_hecras.validate`.
    """
    engine_ = get_engine(engine)
    timeout_s = config.timeout_seconds(timeout if timeout is not None else config.get("timeout"))
    result = PlanResult(plan.id, plan.project_name, FAILED, "", title=plan.title, engine=engine_.name,
                        attempt=attempt, started=_now())
    try:
        staged = stage(plan, scratch)
    except ProjectError as e:
        return _finish(result, reason=str(e))
    except OSError as e:  # disk full, share unreachable: another attempt may do better
        return _finish(result, reason=f"staging failed on {result.host}: {e}", retryable=True)

    log = staged.run_dir / f"{plan.project_name}.{plan.id}.engine.log"
    try:
        run = engine_.run(plan, staged.prj, staged.plan_file, log=log, timeout=timeout_s, cancel=cancel)
    except EngineNotFound as e:
        result.scratch = staged.run_dir
        return _finish(result, reason=str(e), retryable=True)
    result.exit_code = run.exit_code
    result.run_seconds = run.seconds

    v = validate(staged.results_hdf, plan=plan)
    result.validation = v.status
    status, reason, retryable = _judge(run, v, timeout_s)
    summary_file = None
    if status == SUCCEEDED:
        try:
            summary_file = write_summary(summarise(staged.results_hdf), staged.run_dir / "summary.nc")
        except Exception as e:  # the run itself succeeded: keep its results, say what is missing
            reason += f" No summary could be built from the results: {e}."
    if status != SUCCEEDED and config.get("keep-failed-scratch", True):
        result.scratch = staged.run_dir
    _finish(result, status=status, reason=reason, retryable=retryable)
    _land(result, staged, log, summary_file, results_root(results_dir))
    if result.scratch is None:
        remove(staged.run_dir)
    return result


def _judge(run: EngineRun, v: Validation, timeout: float | None) -> tuple[str, str, bool]:
    """Status, reason and retryability of an attempt."""
    if run.process.timed_out:
        return FAILED, (f"Timed out after {timeout:g} s: the engine was stopped and its whole process tree "
                        f"killed. {v.reason}").strip(), True
    if run.process.cancelled:
        return FAILED, "Cancelled: the engine was stopped and its whole process tree killed.", True
    if v.ok:
        return SUCCEEDED, v.reason, False
    reason = v.reason
    if run.exit_code not in (0, None):
        reason += f" The engine exited with code {run.exit_code} (see the engine log)."
    return FAILED, reason, v.retryable


def _finish(result: PlanResult, *, status: str = FAILED, reason: str, retryable: bool = False) -> PlanResult:
    result.status, result.reason, result.retryable = status, reason, retryable
    result.finished = _now()
    return result


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _holds_success(folder: Path) -> bool:
    try:
        return json.loads((folder / "result.json").read_text()).get("status") == SUCCEEDED
    except (OSError, ValueError):
        return False


def _land(result: PlanResult, staged: StagedPlan, log: Path, summary_file: Path | None, root: Path) -> None:
    """Copy results into a temporary folder beside their place, then rename it into place.

    A reader never sees half a result, and a failed attempt never replaces an
    earlier good result: it lands beside it in ``<plan>.failed``.
    """
    plan = staged.plan
    project_dir = root / plan.project_name
    project_dir.mkdir(parents=True, exist_ok=True)
    final = project_dir / plan.id
    if not result.ok and _holds_success(final):
        final = project_dir / f"{plan.id}.failed"
    incoming = project_dir / f".{plan.id}.incoming-{uuid.uuid4().hex[:8]}"
    incoming.mkdir()
    try:
        _fill(result, staged, log, summary_file, incoming, final)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)  # nothing half-copied stays behind
        raise
    old = None
    if final.exists():
        old = project_dir / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(incoming, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fill(result: PlanResult, staged: StagedPlan, log: Path, summary_file: Path | None,
          incoming: Path, final: Path) -> None:
    plan = staged.plan
    run_folder = staged.prj.parent
    names = {"hdf": plan.results_name, "messages": f"{plan.project_name}.{plan.id}.computeMsgs.txt"}
    copied: dict[str, Path] = {}
    for key, name in names.items():
        if (run_folder / name).is_file():
            shutil.copy2(run_folder / name, incoming / name)
            copied[key] = final / name
    if log.is_file():
        shutil.copy2(log, incoming / log.name)
        result.log = final / log.name
    if summary_file is not None:
        shutil.copy2(summary_file, incoming / "summary.nc")
        result.summary = final / "summary.nc"
    result.hdf = copied.get("hdf")
    result.folder = final
    _write_json(incoming / "result.json", result.to_json())
