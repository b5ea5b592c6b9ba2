"""What a batch leaves on disk under ``results_dir``: durable, and safe on a network share.

Every file has exactly one writer and is written to a temporary name, then renamed:
no database, no file appended to by several machines. A later session (or
``dask-hecras status``) rebuilds the state of a batch from these files alone::

    results_dir/
      .batches/<batch>.json                      one per submission: plans, engine, options
      <project>/<plan>/result.json               the plan's latest outcome (written last: a completion mark)
      <project>/<plan>/NAME.pNN.hdf, ...         its results
      <project>/<plan>.failed/                   a failed attempt that must not replace a good result
      <project>/.attempts/<plan>/<batch>-<n>-<host>-<id>.json   one file per attempt
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUCCEEDED, FAILED = "succeeded", "failed"


@dataclass
class PlanResult:
    """The outcome of one plan (its latest attempt). Small and picklable."""

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
    paused_seconds: float = 0.0  # of which suspended by the owner policy
    validation: str = ""  # validate()'s status: succeeded, failed, incomplete, corrupt, missing
    retryable: bool = False  # running again may help (cut short, not judged a failure)
    problem: str = ""  # what kind of failure: input, staging, engine-not-found, timeout, cancelled, run
    host: str = field(default_factory=socket.gethostname)
    worker: str = ""  # the Dask worker, when run on a cluster
    attempt: int = 1
    restaged: bool = False  # the run staged the plan itself (run by another worker than the staging, or a retry)
    bytes_copied: int = 0  # staging: read from the project
    bytes_from_cache: int = 0  # staging: linked from this machine's cache instead
    staging_seconds: float | None = None
    scratch: Path | None = None  # run folder kept after a failure, for inspection
    batch: str = ""
    started: str = ""
    finished: str = ""
    run_start: float | None = None  # the engine's start and end, seconds since the epoch
    run_end: float | None = None
    attempts: list[dict] = field(default_factory=list)  # every attempt of this batch: host, worker, status, reason, seconds

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def key(self) -> str:
        return f"{self.project}-{self.plan_id}"

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "PlanResult":
        paths = {"hdf", "summary", "folder", "log", "scratch"}
        known = cls.__dataclass_fields__
        return cls(**{k: (Path(v) if k in paths and v else v) for k, v in data.items() if k in known})

    def attempt_record(self) -> dict:
        return {"attempt": self.attempt, "host": self.host, "worker": self.worker, "status": self.status,
                "validation": self.validation, "problem": self.problem, "reason": self.reason, "seconds": self.run_seconds,
                "paused_seconds": self.paused_seconds,
                "started": self.started, "finished": self.finished, "restaged": self.restaged,
                "run_start": self.run_start, "run_end": self.run_end}


def write_json(path: Path, data) -> None:
    """Write whole or not at all: a temporary name, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def plan_folder(root: Path, project: str, plan_id: str) -> Path:
    return Path(root) / project / plan_id


def load_result(root: Path, project: str, plan_id: str) -> PlanResult | None:
    data = read_json(plan_folder(root, project, plan_id) / "result.json")
    return PlanResult.from_json(data) if data else None


def _attempts_dir(root: Path, project: str, plan_id: str) -> Path:
    return Path(root) / project / ".attempts" / plan_id


def record_attempt(root: Path, result: PlanResult) -> Path:
    """One file per attempt, named so that no two writers ever share one."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in result.host)
    path = _attempts_dir(root, result.project, result.plan_id) / (
        f"{result.batch or 'direct'}-{result.attempt:03d}-{host}-{uuid.uuid4().hex[:8]}.json")
    write_json(path, result.attempt_record())
    return path


def attempts(root: Path, project: str, plan_id: str, batch: str = "") -> list[dict]:
    """Attempt records of a plan in one batch (``""``: runs outside any batch), oldest first."""
    folder = _attempts_dir(root, project, plan_id)
    prefix = f"{batch or 'direct'}-"
    records = [read_json(p) for p in sorted(folder.glob(f"{prefix}*.json"))] if folder.is_dir() else []
    return sorted((r for r in records if r), key=lambda r: (r.get("attempt", 0), r.get("finished", "")))


def write_batch(root: Path, batch: str, data: dict) -> Path:
    path = Path(root) / ".batches" / f"{batch}.json"
    write_json(path, data)
    return path


def read_batch(root: Path, batch: str | None = None) -> dict:
    """A batch's description; the latest one when ``batch`` is None."""
    folder = Path(root) / ".batches"
    if batch is None:
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no batch has been submitted into {root}")
        path = files[-1]  # batch ids start with a sortable time stamp
    else:
        path = folder / f"{batch}.json"
    data = read_json(path)
    if data is None:
        raise FileNotFoundError(f"no batch {batch!r} under {root} ({path} missing or unreadable)")
    return data


def write_worker(root: Path, name: str, data: dict) -> Path:
    """A worker's standing (e.g. taken out of rotation), for ``dask-hecras status``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path = Path(root) / ".workers" / f"{safe}.json"
    write_json(path, data)
    return path


def read_workers(root: Path) -> list[dict]:
    folder = Path(root) / ".workers"
    return [d for d in (read_json(p) for p in sorted(folder.glob("*.json"))) if d] if folder.is_dir() else []
