"""Landing: a run's results copied into the results folder, whole or not at all.

``land`` copies the results HDF, the compute messages and the engine log into a hidden folder
beside the plan's folder, checks each copy against its source (size and SHA-256), writes
``result.json`` into it, and renames it into place. A reader sees the old results or the new
ones, never half of them, and the plan is done the moment the rename happens: its results and
the record saying so arrive together. A failed attempt never replaces an earlier success (it
lands in ``<plan>.failed``), and a run that ends after a later run of the same plan landed
(a laptop that slept) does not replace it.

Anything that stops a landing (a full or read-only share, a share out of reach, a file held
open) raises :class:`LandingFailed`; the run folder still holds the results, so landing is
tried again without running the engine again.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from . import records
from .cache import file_sha256
from .project import Plan
from .records import SUCCEEDED, PlanResult


class LandingFailed(OSError):
    """The results folder could not take a run's results; the run folder keeps them."""


def result_files(plan: Plan, run_folder: Path) -> list[Path]:
    """The files of a run that land: results HDF, compute messages, engine log (those present)."""
    names = (plan.results_name, f"{plan.project_name}.{plan.id}.computeMsgs.txt",
             f"{plan.project_name}.{plan.id}.engine.log")
    return [run_folder / n for n in names if (run_folder / n).is_file()]


def _holds_success(folder: Path) -> bool:
    data = records.read_json(folder / "result.json")
    return bool(data) and data.get("status") == SUCCEEDED


def landing_folder(project_dir: Path, result: PlanResult) -> Path:
    """``<project>/<plan>``, or ``<plan>.failed`` for a failure beside an earlier success."""
    final = Path(project_dir) / result.plan_id
    if not result.ok and _holds_success(final):
        final = final.with_name(f"{result.plan_id}.failed")
    return final


def superseded(final: Path, result: PlanResult) -> bool:
    """``final`` already holds a whole success of this run or a later one."""
    data = records.read_json(final / "result.json")
    if not data or data.get("status") != SUCCEEDED or data.get("run_start") is None or result.run_start is None:
        return False
    return float(data["run_start"]) >= result.run_start


def keep_later(result: PlanResult, final: Path) -> None:
    """Point a late run's result at the later run's results kept in ``final``."""
    kept = records.load_result(final)
    result.folder, result.hdf, result.log = final, kept.hdf if kept else None, kept.log if kept else None
    result.reason += f" A later run of this plan had already landed in {final}; this run's copy was not kept."


def land(result: PlanResult, files: list[Path], project_dir: Path) -> None:
    """Land ``files`` (see :func:`result_files`) and ``result`` in ``project_dir/<plan>``.

    On return ``result`` names where its files are (``folder``, ``hdf``, ``log``) and, for a
    success, when it ``landed``. Raises :class:`LandingFailed` with nothing half-landed.
    """
    project_dir = Path(project_dir)
    final = landing_folder(project_dir, result)
    try:
        if result.ok and superseded(final, result):  # before copying gigabytes for nothing
            keep_later(result, final)
            return
        incoming = project_dir / f"{incoming_prefix(result)}{uuid.uuid4().hex[:8]}"
        incoming.mkdir(parents=True)
    except OSError as e:
        raise LandingFailed(e.errno, f"the results of {result.key} cannot be written to {project_dir}: "
                                     f"{e.strerror or e}", e.filename) from e
    old = None
    try:
        for source in files:
            _copy_checked(source, incoming / source.name)
        names = {p.name for p in files}
        result.folder = final
        result.hdf = final / f"{result.project}.{result.plan_id}.hdf" if f"{result.project}.{result.plan_id}.hdf" in names else None
        log = f"{result.project}.{result.plan_id}.engine.log"
        result.log = final / log if log in names else None
        if result.ok:
            result.landed = datetime.now().isoformat(timespec="seconds")
        done = [a for a in records.attempts(project_dir, result.plan_id, result.batch)
                if a.get("attempt_id") != result.attempt_id or not result.attempt_id]
        result.attempts = sorted(done + [result.attempt_record()], key=lambda a: a.get("attempt", 0))
        records.write_json(incoming / "result.json", result.to_json())
        if result.ok and superseded(final, result):  # the later run landed while this one copied
            shutil.rmtree(incoming, ignore_errors=True)
            result.landed = ""
            keep_later(result, final)
            return
        if final.exists():
            old = project_dir / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        try:
            os.replace(incoming, final)
        except OSError:  # another machine landed this plan in the same instant
            if old is not None and not final.exists():
                os.replace(old, final)
                old = None
            raise
    except OSError as e:
        result.landed = ""
        shutil.rmtree(incoming, ignore_errors=True)  # nothing half-copied stays behind
        raise LandingFailed(e.errno, f"the results of {result.key} could not be landed in {final}: "
                                     f"{e.strerror or e}", e.filename) from e
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in project_dir.glob(f".{final.name}.old-*"):  # left by a landing whose worker died mid-swap
        shutil.rmtree(stale, ignore_errors=True)


def incoming_prefix(result: PlanResult) -> str:
    """Names the hidden folder an attempt lands through, so that what a landing cut short left
    behind can be found and removed when that attempt lands again (see ``clear_incoming``)."""
    return f".{result.plan_id}.incoming-{result.attempt_id or 'direct'}-"


def clear_incoming(result: PlanResult, project_dir: Path) -> None:
    for stale in Path(project_dir).glob(f"{incoming_prefix(result)}*"):
        shutil.rmtree(stale, ignore_errors=True)


def land_record(result: PlanResult, project_dir: Path) -> None:
    """Land the outcome of an attempt that left no files (bad input, staging failed)."""
    final = landing_folder(project_dir, result)
    result.folder = final
    try:
        records.write_json(final / "result.json", result.to_json())
    except OSError as e:
        raise LandingFailed(e.errno, f"the outcome of {result.key} cannot be written to {final}: "
                                     f"{e.strerror or e}", e.filename) from e


def _copy_checked(source: Path, target: Path) -> None:
    """Copy, then compare size and SHA-256: a damaged copy never lands."""
    shutil.copy2(source, target)
    if source.stat().st_size != target.stat().st_size or file_sha256(source) != file_sha256(target):
        raise OSError(f"the copy of {source} to {target} does not match it (size or checksum)")
