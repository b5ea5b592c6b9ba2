"""Landing: a run's results copied into the results folder, whole or not at all.

``land`` copies the results HDF, the compute messages and the engine log into a hidden folder
beside the plan's folder, checks each copy against its source (size and SHA-256), writes
``result.json`` into it, and renames it into place. A reader sees the old results or the new
ones, never half of them, and the plan is done the moment the rename happens: its results and
the record saying so arrive together. A failed attempt never replaces an earlier success (it
lands in ``<plan>.failed``), and a run that ends after a later run of the same plan landed
(a laptop that slept) does not replace it.

Windows refuses to rename a folder while a file in it is open (RAS Mapper or a notebook on the
previous results, Explorer's preview, antivirus). Then the new results land whole *beside* it,
in ``<plan>.landed-<id>``, and are the plan's outcome from that moment (``records.load_result``
reads the newest); a later landing of the plan moves them into ``<plan>`` once nothing holds it.

Anything else that stops a landing (a full or read-only share, a share out of reach) raises
:class:`LandingFailed`; the run folder still holds the results, so landing is tried again
without running the engine again.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from datetime import datetime
from pathlib import Path

from . import records
from .cache import file_sha256
from .project import Plan, ProjectError
from .progress import bco_file
from .records import SUCCEEDED, PlanResult
from .staging import project_in


class LandingFailed(OSError):
    """The results folder could not take a run's results; the run folder keeps them."""


def result_files(plan: Plan, run_folder: Path) -> list[Path]:
    """The files of a run that land: results HDF, compute messages (and Ras.exe's ``.bcoNN``), engine log, the summary
    when it was built before landing, and the DSS file the run wrote its hydrographs to (those
    present)."""
    here = project_in(run_folder, plan)  # the run folder, or the project's copy nested in it
    files = [p for p in (here / plan.results_name, here / f"{plan.project_name}.{plan.id}.computeMsgs.txt",
                         bco_file(here, plan.project_name, plan.id),
                         Path(run_folder) / f"{plan.project_name}.{plan.id}.engine.log",
                         Path(run_folder) / "summary.nc") if p.is_file()]
    try:
        dss = plan.output_dss
    except ProjectError:  # refused at staging already; nothing of it in the run folder
        dss = None
    if dss is not None:
        staged = Path(os.path.normpath(here / os.path.relpath(dss, plan.folder)))
        if staged.is_file():
            files.append(staged)
    return files


def _holds_success(folder: Path) -> bool:
    landed = records.load_result(folder)
    return landed is not None and landed.ok


def landing_folder(project_dir: Path, result: PlanResult) -> Path:
    """``<project>/<plan>``, or ``<plan>.failed`` for a failure beside an earlier success."""
    final = Path(project_dir) / result.plan_id
    if not result.ok and _holds_success(final):
        final = final.with_name(f"{result.plan_id}.failed")
    return final


def superseded(final: Path, result: PlanResult) -> bool:
    """``final`` (or a folder landed beside it) already holds a success of this run or a later one."""
    landed = records.load_result(final)
    if landed is None or landed.status != SUCCEEDED or landed.run_start is None or result.run_start is None:
        return False
    return float(landed.run_start) >= result.run_start


def keep_later(result: PlanResult, final: Path) -> None:
    """Point a late run's result at the later run's results kept in ``final``."""
    kept = records.load_result(final)
    where = kept.folder if kept else final
    result.folder, result.hdf, result.log = where, kept.hdf if kept else None, kept.log if kept else None
    result.reason += f" A later run of this plan had already landed in {where}; this run's copy was not kept."


def land(result: PlanResult, files: list[Path], project_dir: Path) -> None:
    """Land ``files`` (see :func:`result_files`) and ``result`` in ``project_dir/<plan>``.

    On return ``result`` names where its files are (``folder``, ``hdf``, ``log``) and, for a
    success, when it ``landed``. Raises :class:`LandingFailed` with nothing half-landed.
    """
    project_dir = Path(project_dir)
    settle(project_dir / result.plan_id)
    final = landing_folder(project_dir, result)
    settle(final)
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
        if final.exists() and _exchange(incoming, final):  # one step: never an instant without the plan
            old = incoming  # now holds the earlier results
        elif final.exists():  # two renames (Windows, SMB): for an instant the plan's folder is absent
            old = project_dir / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            try:
                os.replace(final, old)
            except PermissionError:  # Windows: a file in it is open; land beside it instead
                old = None
                _land_beside(result, incoming, final)
                settle(final)  # what landed beside it before is older now
                return
        try:
            if old is not incoming:
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
    clear_abandoned(project_dir, result.plan_id)
    for stale in project_dir.glob(f".{final.name}.old-*"):  # left by a landing whose worker died mid-swap
        shutil.rmtree(stale, ignore_errors=True)
    settle(final)  # what landed beside it earlier is older now


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux's ``renameat2(RENAME_EXCHANGE)``), so that a reader of
    the results never finds the plan's folder missing. False where the system or the file system
    cannot (Windows, SMB and FUSE mounts, old kernels): the caller then renames twice."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _land_beside(result: PlanResult, incoming: Path, final: Path) -> None:
    """Land ``incoming`` as ``<final>.landed-<id>``: whole, and the plan's outcome at once."""
    beside = final.with_name(f"{final.name}{records.BESIDE}{uuid.uuid4().hex[:8]}")
    result.folder = beside
    result.hdf = beside / result.hdf.name if result.hdf else None
    result.log = beside / result.log.name if result.log else None
    result.reason = (result.reason + f" {final} was in use, so the results landed beside it in {beside.name}"
                     " (moved into place by a later landing once nothing holds it).").strip()
    records.write_json(incoming / "result.json", result.to_json())
    os.replace(incoming, beside)


def settle(final: Path) -> None:
    """Move results that landed beside ``final`` into it once nothing holds it open, and remove
    older ones. Best effort: whatever is still in use stays, and readers still find the newest."""
    beside = records.landed_beside(final)
    if not beside:
        return
    current = records.current_folder(final)
    newest = records.load_result(final)
    for folder in beside:
        if folder == current:
            continue
        this = records.read_json(folder / "result.json")
        if this and newest is not None and not records.newer(PlanResult.from_json(this), newest):
            shutil.rmtree(folder, ignore_errors=True)  # superseded (what is open stays until closed)
    if current == final:
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        if final.exists():
            os.replace(final, old)
        os.replace(current, final)
    except OSError:  # still in use: stays beside for now
        if old.exists() and not final.exists():
            try:
                os.replace(old, final)
            except OSError:
                pass
        return
    shutil.rmtree(old, ignore_errors=True)


def incoming_prefix(result: PlanResult) -> str:
    """Names the hidden folder an attempt lands through, so that what a landing cut short left
    behind can be found and removed when that attempt lands again (see ``clear_incoming``)."""
    return f".{result.plan_id}.incoming-{result.attempt_id or 'direct'}-"


def clear_incoming(result: PlanResult, project_dir: Path) -> None:
    for stale in Path(project_dir).glob(f"{incoming_prefix(result)}*"):
        shutil.rmtree(stale, ignore_errors=True)


ABANDONED_AFTER = 86400.0  # seconds untouched after which an incoming folder is one a dead PC left


def clear_abandoned(project_dir: Path, plan_id: str, older_than: float = ABANDONED_AFTER) -> list[Path]:
    """Remove what landings of ``plan_id`` cut short by a PC that died left behind (hidden
    incoming folders untouched for a day: a landing in progress adds files all the time), once
    the plan has landed; an attempt landing again clears its own at once (``clear_incoming``)."""
    import time

    gone = []
    for stale in Path(project_dir).glob(f".{plan_id}.incoming-*"):
        try:
            if time.time() - stale.stat().st_mtime > older_than:
                shutil.rmtree(stale, ignore_errors=True)
                gone.append(stale)
        except OSError:
            continue
    return gone


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
