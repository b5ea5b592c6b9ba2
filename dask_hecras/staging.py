"""Staging: copy a plan's input files from the project to a fresh local run folder.

HEC-RAS must run from local disk, and the source project (often on a network share)
is never written to. The run folder mirrors the project's layout, so relative
references (``.\\Terrain\\x.hdf``, ``..\\common\\x.dss``) resolve the same way.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import config
from .project import Plan


@dataclass(frozen=True)
class StagedPlan:
    """A plan ready to run: its copy in a run folder."""

    plan: Plan
    run_dir: Path
    prj: Path  # the project file inside run_dir
    plan_file: Path
    files: int
    bytes_copied: int
    seconds: float
    host: str = ""  # the machine whose local disk holds run_dir

    @property
    def results_hdf(self) -> Path:
        return self.prj.parent / self.plan.results_name


def scratch_root(scratch: str | os.PathLike | None = None) -> Path:
    """``scratch``, else ``hecras.scratch``, else ``<system temp>/dask-hecras``."""
    root = scratch or config.get("scratch") or Path(tempfile.gettempdir()) / "dask-hecras"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def stage(plan: Plan, scratch: str | os.PathLike | None = None) -> StagedPlan:
    """Copy every input of ``plan`` into a new folder under the scratch root."""
    started = time.monotonic()
    inputs = plan.inputs()  # raises ProjectError listing every missing file
    project_dir = plan.folder
    placed: list[tuple[Path, Path]] = []
    depth = 0
    for f in inputs:
        try:
            rel = Path(os.path.relpath(f.path, project_dir))
        except ValueError:  # another drive: HEC-RAS reads it in place through its absolute path
            continue
        ups = 0
        for part in rel.parts:
            if part != "..":
                break
            ups += 1
        depth = max(depth, ups)
        placed.append((f.path, rel))
    # Files referenced as ..\x sit above the project: nest the project deep enough
    # that they land inside the run folder, under the same names.
    anchor = project_dir
    for _ in range(depth):
        anchor = anchor.parent
    run_dir = scratch_root(scratch) / f"{plan.key}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    project_in_run = run_dir / project_dir.relative_to(anchor) if depth else run_dir
    project_in_run.mkdir(parents=True)
    copied = 0
    for source, rel in placed:
        target = Path(os.path.normpath(project_in_run / rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)  # keeps file times: HEC-RAS compares them to decide what to recompute
        copied += target.stat().st_size
    return StagedPlan(
        plan=plan,
        run_dir=run_dir,
        prj=project_in_run / plan.project.name,
        plan_file=project_in_run / plan.file.name,
        files=len(placed),
        bytes_copied=copied,
        seconds=time.monotonic() - started,
        host=socket.gethostname(),
    )


def remove(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
