"""Staging: a plan's input files in a fresh run folder on this machine's local disk.

HEC-RAS must run from local disk, and the source project (often on a network share)
is never written to. The run folder mirrors the project's layout, so relative
references (``.\\Terrain\\x.hdf``, ``..\\common\\x.dss``) resolve the same way. Big
read-only inputs come from the machine's cache (``cache.py``): copied once, then
hard-linked into each run folder. Files HEC-RAS writes to are always real copies, DSS
files among them (HEC-DSS opens files for writing, and the plan's output DSS is written).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil

from . import config
from .cache import Cache, parse_bytes
from .project import InputFile, Plan, ProjectError

log = logging.getLogger("dask_hecras")

CACHED_ROLES = ("terrain", "restart")
HDF_INPUTS = "hdf-inputs"  # staged as a new HDF of its input groups only (the Linux engine's tmp.hdf)
STAGED_BY = ".staged-by"  # in each run folder: the process that staged it (pid and start time)


class InsufficientDisk(OSError):
    """Too little free disk to stage and run a plan here; another machine may have room."""


@dataclass(frozen=True)
class StagedPlan:
    """A plan ready to run: its copy in a run folder."""

    plan: Plan
    run_dir: Path
    prj: Path  # the project file inside run_dir
    plan_file: Path
    files: int
    bytes_copied: int  # read from the project (into the run folder or the cache)
    seconds: float
    host: str = ""  # the machine whose local disk holds run_dir
    bytes_from_cache: int = 0  # linked from the cache, not read from the project
    owner: str = ""  # the process that staged it (see ``sweep``)
    fingerprint: str = ""  # of the source files staged (see ``identity``)

    @property
    def results_hdf(self) -> Path:
        return self.prj.parent / self.plan.results_name

    def usable_here(self) -> bool:
        """Staged by this very process, and still there.

        A run in another worker process (even on the same PC) stages again: the process
        that staged a folder removes it once Dask forgets the stage result there, which
        Dask may do while a copy of that result serves a run elsewhere.
        """
        return self.owner == this_process() and self.prj.is_file()


def scratch_root(scratch: str | os.PathLike | None = None, *, worker=None) -> Path:
    """``scratch``, else ``hecras.scratch``, else ``hecras/`` in the Dask worker's local
    directory (``worker``, or the one running this task; outside a worker:
    ``<system temp>/dask-hecras``)."""
    root = scratch or config.get("scratch")
    if not root:
        try:
            if worker is None:
                from distributed import get_worker

                worker = get_worker()
            root = Path(worker.local_directory) / "hecras"
        except (ImportError, ValueError):
            root = Path(tempfile.gettempdir()) / "dask-hecras"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def machine_cache(scratch: str | os.PathLike | None = None) -> Cache:
    return Cache(config.get("cache") or scratch_root(scratch) / "cache")


def mesh_cells(plan: Plan) -> int:
    """Real 2D cells of the plan's geometry (0 if none or unreadable)."""
    import h5py

    try:
        with h5py.File(Path(str(plan.geometry_file) + ".hdf"), "r") as f:
            return int(f["Geometry/2D Flow Areas/Attributes"][()]["Cell Count"].sum())
    except (OSError, KeyError, ValueError):
        return 0


def expected_results_bytes(plan: Plan) -> int:
    """A rough size of the results HDF: water surface per cell and two face values per step."""
    interval = plan.output_interval or plan.mapping_interval
    steps = 100
    if plan.start and plan.end and interval and interval.total_seconds() > 0:
        steps = int((plan.end - plan.start) / interval) + 1
    return 20 * 2**20 + steps * mesh_cells(plan) * 4 * 3


def _cached(f: InputFile, size: int) -> bool:
    return f.role in CACHED_ROLES or (f.read_only and size >= parse_bytes(config.get("cache-min-size", "64MB")))


def _check_disk(root: Path, needed: int) -> None:
    reserve = parse_bytes(config.get("disk-reserve", "1GB"))
    free = shutil.disk_usage(root).free
    if free < needed + reserve:
        gib = 2**30
        raise InsufficientDisk(
            f"not enough free disk on {socket.gethostname()}: {root} has {free / gib:.1f} GiB free, the plan needs "
            f"about {(needed + reserve) / gib:.1f} GiB (inputs and results {needed / gib:.1f} GiB "
            f"+ hecras.disk-reserve {reserve / gib:.1f} GiB)")


def check_path_lengths(plan: Plan, paths: list[Path]) -> None:
    """Refuse, before anything is copied, a run folder whose paths Windows or HEC-RAS could not
    use: past 259 characters (``MAX_PATH``) Python needs the ``LongPathsEnabled`` key, and
    HEC-RAS cannot open such files at all. Every PC would fail the same way, so it is not
    retryable."""
    limit = config.get("max-path-length", 259)
    if not limit or not paths:
        return
    longest = max(paths, key=lambda p: len(str(p)))
    if len(str(longest)) > int(limit):
        raise ProjectError(plan.project, (
            f"staged on {socket.gethostname()}, plan {plan.id}'s files would have paths of {len(str(longest))} "
            f"characters, more than Windows and HEC-RAS allow ({limit}): {longest}. Set hecras.scratch to a "
            f"shorter folder (such as C:\\hecras) or shorten the project's folder and file names "
            f"(hecras.max-path-length)"))


def stage(plan: Plan, scratch: str | os.PathLike | None = None, *, cache: Cache | None | bool = None,
          extra: Iterable[InputFile] = ()) -> StagedPlan:
    """Put every input of ``plan`` into a new folder under the scratch root.

    ``cache=False`` copies everything (no machine cache). ``extra`` are files the engine needs
    beyond the plan's inputs (:meth:`Engine.extra_inputs`: the Linux engine's prepared files),
    staged with them; an ``InputFile.staged_as`` name renames one in the run folder, and one of
    role ``hdf-inputs`` is staged as a new HDF holding only its input groups (see
    ``engines.linux.make_tmp_hdf``). The fingerprint stays that of the plan's own inputs, as the
    client computes it.
    """
    from .identity import fingerprint

    started = time.monotonic()
    inputs = plan.inputs()  # raises ProjectError listing every missing file
    staged_fingerprint = fingerprint(plan, inputs)
    known = {f.path for f in inputs}
    inputs = inputs + [f for f in extra if f.path not in known]
    root = scratch_root(scratch)
    if cache is None or cache is True:
        cache = machine_cache(scratch)
    project_dir = plan.folder
    placed: list[tuple[InputFile, Path, int]] = []
    depth = 0
    for f in inputs:
        try:
            rel = Path(os.path.relpath(f.path, project_dir))
        except ValueError:  # Windows: another drive, which no run folder can mirror
            raise ProjectError(plan.project, (
                f"plan {plan.id} uses {f.path}, on another drive than the project ({project_dir}): HEC-RAS "
                "would read it (or write it) there, on the share, not in the run folder. Copy it into the "
                "project folder (or one beside it on the same drive) and point the project at the copy")) from None
        ups = 0
        for part in rel.parts:
            if part != "..":
                break
            ups += 1
        depth = max(depth, ups)
        if f.staged_as:
            rel = rel.with_name(f.staged_as)
        placed.append((f, rel, f.path.stat().st_size))
    _check_disk(root, sum(size for _, _, size in placed) + expected_results_bytes(plan))
    # Files referenced as ..\x sit above the project: nest the project deep enough
    # that they land inside the run folder, under the same names.
    anchor = project_dir
    for _ in range(depth):
        anchor = anchor.parent
    run_dir = root / f"{plan.key}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    project_in_run = run_dir / project_dir.relative_to(anchor) if depth else run_dir
    check_path_lengths(plan, [Path(os.path.normpath(project_in_run / rel)) for _, rel, _ in placed] +
                       [project_in_run / (plan.file.name + ".tmp.hdf"), project_in_run / (plan.file.name + ".computeMsgs.txt")])
    project_in_run.mkdir(parents=True)
    (run_dir / STAGED_BY).write_text(this_process())
    copied = from_cache = 0
    for f, rel, size in placed:
        target = Path(os.path.normpath(project_in_run / rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.role == HDF_INPUTS:  # a results file whose input groups the engine computes into
            from .engines.linux import make_tmp_hdf

            make_tmp_hdf(f.path, target)
            copied += target.stat().st_size
        elif cache and _cached(f, size):
            fetched = cache.fetch(f.path, target)
            if fetched.hit:
                from_cache += fetched.size
            else:
                copied += fetched.size
        else:
            shutil.copy2(f.path, target)  # keeps file times: HEC-RAS compares them to decide what to recompute
            mode = target.stat().st_mode
            if not mode & stat.S_IWRITE:  # a read-only source (a file checked in, a CD copy): HEC-RAS writes these
                os.chmod(target, mode | stat.S_IWRITE)
            copied += size
    if cache:
        cache.evict()
    return StagedPlan(
        plan=plan,
        run_dir=run_dir,
        prj=project_in_run / plan.project.name,
        plan_file=project_in_run / plan.file.name,
        files=len(placed),
        bytes_copied=copied,
        seconds=time.monotonic() - started,
        host=socket.gethostname(),
        bytes_from_cache=from_cache,
        owner=this_process(),
        fingerprint=staged_fingerprint,
    )


def project_in(run_dir: Path, plan: Plan) -> Path:
    """The folder of the project's copy in ``run_dir`` (nested when it references ``..\\x``)."""
    run_dir = Path(run_dir)
    if (run_dir / plan.project.name).is_file():
        return run_dir
    found = sorted(run_dir.glob(f"**/{plan.project.name}"), key=lambda p: len(p.parts))
    return found[0].parent if found else run_dir


def remove(run_dir: Path) -> list[str]:
    """Delete a run folder (its links to cache blobs go with it, freeing them for eviction).
    Returns what could not be removed, and logs it: a file still open on Windows."""
    left = remove_tree(run_dir)
    if left:
        log.warning("could not remove all of the run folder %s: %s", run_dir, "; ".join(left[:5]))
    return left


def remove_tree(folder: Path) -> list[str]:
    """Delete ``folder`` and everything in it; returns what could not be removed.

    Windows refuses to delete a read-only file, and the attribute belongs to the file, so every
    hard link of a read-only cache blob has it: the attribute is cleared and the delete tried
    again (the cache marks a blob read-only again whenever it links it).
    """
    left: list[str] = []

    def again(func, path, exc) -> None:
        exc = exc[1] if isinstance(exc, tuple) else exc
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError) and func in (os.unlink, os.remove, os.rmdir):
            try:
                os.chmod(path, stat.S_IWRITE | stat.S_IREAD)
                func(path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                exc = e
        left.append(f"{path}: {exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=again)
    else:
        shutil.rmtree(folder, onerror=again)
    return left


def this_process() -> str:
    """This process, told apart from a later one with the same pid: pid and start time."""
    return f"{os.getpid()} {psutil.Process().create_time()}"


def process_gone(mark: str) -> bool:
    """The process ``mark`` (see :func:`this_process`) has ended: no such pid, the pid reused,
    or a dead process its parent has not reaped yet (a zombie)."""
    try:
        pid, started = mark.split()
        p = psutil.Process(int(pid))
        return abs(p.create_time() - float(started)) > 1.0 or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return False


def sweep(root: str | os.PathLike) -> int:
    """Remove run folders under ``root`` left by processes that are gone (a worker that died
    or was restarted), except failed runs kept for inspection. Returns how many went."""
    removed = 0
    try:
        folders = [p for p in Path(root).iterdir() if p.is_dir()]
    except OSError:
        return 0
    for folder in folders:
        try:
            mark = (folder / STAGED_BY).read_text()
        except OSError:
            continue  # not a run folder (the cache), or being made
        if not (folder / ".failed").exists() and process_gone(mark):
            remove(folder)
            removed += 1
    return removed


def keep_failed(run_dir: Path) -> None:
    """Keep a failed run folder for inspection; beyond ``hecras.keep-failed-runs`` the oldest go."""
    try:
        (run_dir / ".failed").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    except OSError:  # a full disk: keeping it would only make things worse
        remove(run_dir)
        return
    limit = int(config.get("keep-failed-runs", 5))
    kept = sorted((p for p in run_dir.parent.iterdir() if (p / ".failed").exists()),
                  key=lambda p: (p / ".failed").stat().st_mtime)
    for old in kept[:-limit] if limit > 0 else kept:
        if old != run_dir:
            remove(old)
