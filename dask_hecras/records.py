"""What runs leave under ``results_dir``: durable, and safe on a network share.

Every file has exactly one writer and is written to a temporary name, then renamed:
no database, no file appended to by several machines::

    results_dir/
      <project>/.project.json                    which .prj (full path) this folder belongs to
      <project>/<plan>/result.json               the plan's landed outcome, landed with its results
      <project>/<plan>/NAME.pNN.hdf, ...         its results
      <project>/<plan>.failed/                   a failed attempt that must not replace a good result
      <project>/<plan>.landed-<id>/              results that landed beside a folder held open (Windows);
                                                 the newest of these and ``<plan>`` is the plan's outcome
      <project>/.attempts/<plan>/<batch>-<n>-<host>-<id>.json   one file per attempt (start, then end)
      .batches/<batch>/...                       the batch's ledger (see ``ledger``)
      .workers/<name>.json                       workers taken out of rotation

A project folder is named after the ``.prj``; a second project with the same name (another
study's ``River.prj``) gets ``<name>_<its study folder's name>``, e.g. ``River_study-b``. Folders of earlier versions, without
``.project.json``, are still read, and adopted by their project when its batch records name it.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUCCEEDED, FAILED = "succeeded", "failed"
PROJECT_MARK = ".project.json"


@dataclass
class PlanResult:
    """The outcome of one plan (its latest attempt). Small and picklable."""

    plan_id: str
    project: str  # the project's name (NAME of NAME.prj)
    status: str  # "succeeded" or "failed"
    reason: str
    title: str = ""
    engine: str = ""
    hdf: Path | None = None  # the results HDF in the results folder
    summary: Path | None = None  # summary.nc beside it
    folder: Path | None = None  # results_dir/<project folder>/<plan>
    log: Path | None = None  # the engine's stdout and stderr
    exit_code: int | None = None
    run_seconds: float | None = None  # wall time of the engine process
    paused_seconds: float = 0.0  # of which suspended by the owner policy
    validation: str = ""  # validate()'s status: succeeded, failed, incomplete, corrupt, missing, not-results, unjudged
    retryable: bool = False  # running again may help (cut short, not judged a failure)
    problem: str = ""  # what kind of failure: input, staging, engine-not-found, timeout, stall, cancelled, run, landing, lost
    host: str = field(default_factory=socket.gethostname)
    worker: str = ""  # the Dask worker, when run on a cluster
    attempt: int = 1  # this plan's attempt number in its batch
    restaged: bool = False  # kept for records of earlier versions
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
    attempt_id: str = ""  # names this attempt across the cluster: <batch>-<plan index>-a<n>
    project_path: str = ""  # the .prj this plan belongs to (full path): with plan_id, the plan's identity
    fingerprint: str = ""  # of the input files that were staged (see ``identity``)
    landed: str = ""  # when its results landed whole in the results folder
    run_folder: str = ""  # the run folder on its machine (host), while it exists
    progress: float | None = None  # the fraction of the simulation window the engine reached (``progress``)

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
        return {"attempt": self.attempt, "attempt_id": self.attempt_id, "host": self.host, "worker": self.worker,
                "status": self.status, "validation": self.validation, "problem": self.problem,
                "reason": self.reason, "seconds": self.run_seconds, "paused_seconds": self.paused_seconds,
                "started": self.started, "finished": self.finished, "run_start": self.run_start,
                "run_end": self.run_end, "landed": self.landed, "batch": self.batch, "run_folder": self.run_folder,
                "progress": self.progress}


def write_json(path: Path, data) -> None:
    """Write whole or not at all: a temporary name, then a rename. Windows (and a Linux PC's SMB
    client) refuse to replace a file while someone reads it (a status check, the dashboard): that
    is tried again for a while."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, default=str))
        wait = 0.05
        while True:
            try:
                os.replace(tmp, path)
                break
            except OSError as e:  # written, but the target is in use: Windows says access denied,
                # a Linux SMB client EEXIST or EBUSY (another PC holds it): tried again for a while
                if not (isinstance(e, PermissionError) or e.errno in (errno.EEXIST, errno.EBUSY)) or wait > 3.2:
                    raise
                time.sleep(wait)
                wait *= 2
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- project folders


def project_key(prj: str | os.PathLike) -> str:
    """A project's identity: its ``.prj``'s full path (case-folded where the OS ignores case)."""
    return os.path.normcase(os.path.abspath(str(prj)))


def _candidates(prj: Path):
    """``River``, then ``River_<the study's folder>`` (the first folder above the project whose
    name is not the project's), then ``River_<folder>_2``, ..."""
    name = prj.stem
    yield name
    parent = next((p.name for p in prj.parents if p.name and p.name.lower() != name.lower()), "project")
    safe = "".join(c if c.isalnum() or c in "-_ ." else "_" for c in parent).strip() or "project"
    yield f"{name}_{safe}"
    n = 2
    while True:
        yield f"{name}_{safe}_{n}"
        n += 1


def _owner(folder: Path) -> str | None:
    data = read_json(folder / PROJECT_MARK)
    return data.get("key") if isinstance(data, dict) else None


def _claimed_by(folder: Path, patience: float = 10.0) -> str | None:
    """The owner of a mark another process has just created (it writes it right after)."""
    deadline = time.monotonic() + patience
    while True:
        owner = _owner(folder)
        if owner is not None or time.monotonic() > deadline:
            return owner
        time.sleep(0.05)


def _legacy_owner(root: Path, name: str) -> str | None:
    """Which project an earlier version's folder ``name`` belongs to, from its batch records
    (``.batches/<id>.json`` listed every plan's project file); ``None`` if unknown or several."""
    owners = set()
    for path in sorted((Path(root) / ".batches").glob("*.json")):
        data = read_json(path) or {}
        for entry in data.get("plans", []):
            if Path(str(entry.get("project", ""))).stem == name:
                owners.add(project_key(entry["project"]))
    return owners.pop() if len(owners) == 1 else None


def find_project_folder(root: Path, prj: str | os.PathLike) -> Path | None:
    """The results folder of project ``prj`` under ``root``, if it has one."""
    key, prj = project_key(prj), Path(prj)
    for folder in project_folders(root):
        if _owner(folder) == key:
            return folder
    legacy = Path(root) / prj.stem
    if legacy.is_dir() and _owner(legacy) is None and _legacy_owner(root, prj.stem) == key:
        return legacy
    return None


def claim_project_folder(root: Path, prj: str | os.PathLike) -> Path:
    """The results folder of project ``prj`` under ``root``, made and marked if new.

    Two projects with the same name never share a folder: the mark is created exclusively,
    so two schedulers or workers claiming at once agree.
    """
    key, prj = project_key(prj), Path(prj)
    for name in _candidates(prj):
        folder = Path(root) / name
        owner = _owner(folder)
        if owner is None and (folder / PROJECT_MARK).exists():  # another PC is writing its mark now
            owner = _claimed_by(folder)
        if owner is None and folder.is_dir() and any(folder.iterdir()):
            if _legacy_owner(root, prj.stem) != key:
                continue  # an earlier version's folder of another (or an unknown) project
        elif owner is not None:
            if owner == key:
                return folder
            continue
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / PROJECT_MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # claimed this instant by another process: read whose, once written
            if _claimed_by(folder) == key:
                return folder
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "project": str(prj), "name": prj.stem}, f)
        return folder
    raise AssertionError("unreachable")  # pragma: no cover


def project_folders(root: Path) -> list[Path]:
    """Every project folder under ``root`` (marked or from an earlier version)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------- plans and attempts


BESIDE = ".landed-"  # <plan>.landed-<id>: results landed beside a plan folder held open


def landed_beside(plan_dir: Path) -> list[Path]:
    """Folders that landings put beside ``plan_dir`` because something held it open (Windows
    refuses to rename a folder while a file in it is open); see ``landing.land``."""
    plan_dir = Path(plan_dir)
    return sorted(plan_dir.parent.glob(f"{glob.escape(plan_dir.name)}{BESIDE}*")) if plan_dir.parent.is_dir() else []


def newer(a: PlanResult, b: PlanResult) -> bool:
    """Whether outcome ``a`` replaces ``b``: a success beats a failure; among successes the
    later run wins, among failures the later end."""
    key = lambda r: (r.ok, (r.run_start or 0.0) if r.ok else 0.0, r.finished)  # noqa: E731
    return key(a) > key(b)


def _outcomes(plan_dir: Path) -> list[tuple[Path, PlanResult]]:
    found = []
    for folder in (Path(plan_dir), *landed_beside(plan_dir)):
        data = read_json(folder / "result.json")
        if data:
            found.append((folder, PlanResult.from_json(data)))
    return found


def current_folder(plan_dir: Path) -> Path:
    """The folder holding ``plan_dir``'s outcome: itself, or the newest one landed beside it."""
    best = None
    for folder, result in _outcomes(plan_dir):
        if best is None or newer(result, best[1]):
            best = (folder, result)
    return best[0] if best else Path(plan_dir)


def load_result(plan_dir: Path) -> PlanResult | None:
    """The outcome landed for a plan folder (``<project>/<plan>``), if any, with its paths where
    the files are now (the folder may have landed beside the plan's, or been moved since)."""
    best = None
    for folder, result in _outcomes(plan_dir):
        if best is None or newer(result, best[1]):
            best = (folder, result)
    if best is None:
        return None
    folder, result = best
    result.folder = folder
    result.hdf = folder / result.hdf.name if result.hdf else None
    result.log = folder / result.log.name if result.log else None
    result.summary = folder / result.summary.name if result.summary else None
    summary = folder / "summary.nc"  # written after landing, from the landed results
    if result.ok and result.summary is None and summary.is_file():
        result.summary = summary
    return result


def _attempts_dir(project_dir: Path, plan_id: str) -> Path:
    return Path(project_dir) / ".attempts" / plan_id


def attempt_path(project_dir: Path, result: PlanResult) -> Path:
    """Where one attempt is recorded: named so that no two writers ever share a file, and the
    same for the attempt's start and end."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in result.host)
    tail = uuid.uuid5(uuid.NAMESPACE_URL, result.attempt_id).hex[:8] if result.attempt_id else uuid.uuid4().hex[:8]
    return _attempts_dir(project_dir, result.plan_id) / (
        f"{result.batch or 'direct'}-{result.attempt:03d}-{host}-{tail}.json")


def record_attempt(project_dir: Path, result: PlanResult) -> Path:
    path = attempt_path(project_dir, result)
    write_json(path, result.attempt_record())
    return path


def attempts(project_dir: Path, plan_id: str, batch: str = "") -> list[dict]:
    """Attempt records of a plan in one batch (``""``: runs outside any batch), oldest first."""
    folder = _attempts_dir(project_dir, plan_id)
    prefix = f"{batch or 'direct'}-"
    found = [read_json(p) for p in sorted(folder.glob(f"{prefix}*.json"))] if folder.is_dir() else []
    return sorted((r for r in found if r), key=lambda r: (r.get("attempt", 0), r.get("finished", "")))


# --------------------------------------------------------------------------- workers


def write_worker(root: Path, name: str, data: dict) -> Path:
    """A worker's standing (e.g. taken out of rotation), for ``dask-hecras status``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path = Path(root) / ".workers" / f"{safe}.json"
    write_json(path, data)
    return path


def read_workers(root: Path) -> list[dict]:
    folder = Path(root) / ".workers"
    return [d for d in (read_json(p) for p in sorted(folder.glob("*.json"))) if d] if folder.is_dir() else []
