"""A batch's results as one dataset: every plan's summary stacked along ``plan``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import xarray as xr

from . import records
from .records import PlanResult
from .summary import MESH_SERIES, summarise

# Per-plan attributes that become coordinates along ``plan`` when plans are stacked.
PLAN_ATTRS = ("plan_name", "geometry_file", "flow_file", "hecras_version", "simulation_start",
              "simulation_end", "run_seconds", "volume_error_percent", "source_file")
# Coordinates that together name a position, so plans with different meshes align.
_INDEXES = {"cell": ["mesh", "cell_id"], "face": ["face_mesh", "face_id"],
            "cross_section": ["river", "reach", "station"], "bc_face": ["bc_face_line", "bc_face_number"]}


def _open(item) -> tuple[xr.Dataset | None, str]:
    """A plan's summary, and the name of its project's results folder when it comes from one
    (unique per project: two studies' River.prj land in River and River_<study>)."""
    if isinstance(item, xr.Dataset):
        return item, ""
    if isinstance(item, PlanResult):
        if not item.ok or item.summary is None:
            return None, ""  # a failed plan has no summary to stack
        item = item.summary
    path = Path(item)
    label = path.parent.parent.name if (path.parent / "result.json").is_file() else ""
    if path.suffix.lower() == ".hdf":
        return summarise(path), label
    return xr.open_dataset(path, engine="h5netcdf"), label


def combine(items: Iterable) -> xr.Dataset:
    """Stack plan summaries along a ``plan`` dimension.

    ``items`` are datasets from :func:`summarise`, :class:`PlanResult` objects (failed
    ones are left out), or paths of ``summary.nc`` / results HDF files. Cells, faces
    and cross sections are aligned by name (``mesh`` and ``cell_id`` etc.), so plans
    with different meshes combine, with NaN where a plan has no value. Plan ids that
    several projects share are told apart as ``<project>/<plan>``.
    """
    opened = [(d, label) for d, label in (_open(i) for i in items) if d is not None]
    if not opened:
        raise ValueError("nothing to combine: no succeeded plan summaries given")
    datasets = [d for d, _ in opened]
    ids = [d.attrs.get("plan_id") or f"plan{i}" for i, d in enumerate(datasets)]
    projects = [label or Path(d.attrs.get("plan_file", "")).stem or "" for d, label in opened]
    if len(set(ids)) < len(ids):  # same plan ids from several projects
        ids = [f"{p}/{i}" for p, i in zip(projects, ids)]
    if len(set(ids)) < len(ids):
        raise ValueError(f"plans appear more than once: {sorted(i for i in ids if ids.count(i) > 1)}")
    stacked = []
    for plan_id, project, d in zip(ids, projects, datasets):
        for dim, names in _INDEXES.items():
            if dim in d.dims and all(n in d.coords for n in names):
                d = d.set_index({dim: names})
        extra = {k: d.attrs[k] for k in PLAN_ATTRS if k in d.attrs}
        d = d.expand_dims(plan=[plan_id]).assign_coords(
            project=("plan", [project]), **{k: ("plan", [v]) for k, v in extra.items()})
        d.attrs = {}
        stacked.append(d)
    out = xr.concat(stacked, dim="plan", join="outer", data_vars="all", coords="different",
                    compat="equals", combine_attrs="drop_conflicts")
    out.attrs["units_system"] = datasets[0].attrs.get("units_system", "")
    return out


def summary_files(results_dir: str | os.PathLike) -> list[Path]:
    """The ``summary.nc`` of every plan under ``results_dir`` (``<project>/<plan>/``), in order:
    of each plan's current results (see ``records.load_result``), never of replaced ones."""
    root = Path(results_dir)
    plans: dict[Path, None] = {}
    for pattern in ("*/summary.nc", "*/*/summary.nc"):
        for p in sorted(root.glob(pattern)):
            name = p.parent.name.split(records.BESIDE)[0]
            if name.startswith(".") or name.endswith(".failed"):
                continue
            plans[p.parent.with_name(name)] = None
    found = []
    for plan_dir in sorted(plans):
        summary = records.current_folder(plan_dir) / "summary.nc"
        if summary.is_file():
            found.append(summary)
    return found


def open_results(results_dir: str | os.PathLike, *, time_series: bool = False) -> xr.Dataset:
    """A whole batch's summaries as one dataset along ``plan``.

    With ``time_series=True`` the 2D mesh time series are added as lazy arrays read
    from each plan's results HDF.
    """
    files = summary_files(results_dir)
    if not files:
        raise FileNotFoundError(f"no plan summaries (summary.nc) under {results_dir}")
    if not time_series:
        return combine(files)
    hdfs = [next(iter(sorted(f.parent.glob("*.p[0-9][0-9].hdf"))), f) for f in files]
    return combine(hdfs)


__all__ = ["combine", "open_results", "summary_files", "MESH_SERIES"]
