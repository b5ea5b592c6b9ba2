"""A batch's results as one dataset: every plan's summary stacked along ``plan``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
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


def _own_time(datasets: list[xr.Dataset]) -> list[xr.Dataset]:
    """Each plan's series on its own time axis: dimension ``step`` with a ``time(plan, step)``
    coordinate. Stacked on the union of their times, a plan with hourly output would show NaN
    at every half hour of another's, and a plot would draw nothing between its points."""
    out = []
    for d in datasets:
        if "time" in d.dims:
            t = d["time"].values
            d = d.rename({"time": "step"}).assign_coords(step=np.arange(len(t)), time=("step", t))
        out.append(d)
    return out


def _common_time(datasets: list[xr.Dataset]) -> list[xr.Dataset]:
    """Every plan's series interpolated onto the union of all plans' times, inside each plan's
    own window only (NaN before its start and after its end, never a gap inside it)."""
    times = [d["time"].values for d in datasets if "time" in d.dims]
    union = np.unique(np.concatenate(times)) if times else None
    out = []
    for d in datasets:
        if "time" in d.dims and not np.array_equal(d["time"].values, union):
            series = [v for v in d.data_vars if "time" in d[v].dims]
            d = xr.merge([d.drop_dims("time"), _linear(d[series], union)], compat="override", join="outer")
        out.append(d)
    return out


def _linear(ds: xr.Dataset, times: np.ndarray) -> xr.Dataset:
    """``ds`` interpolated linearly in time onto ``times``, NaN outside its own first and last
    time; lazy arrays stay lazy (two gathers along time and a weighted sum)."""
    t = ds["time"].values.astype("datetime64[ms]").astype("int64")
    u = times.astype("datetime64[ms]").astype("int64")
    inside = xr.DataArray((u >= t[0]) & (u <= t[-1]), dims="time")
    if len(t) < 2:
        return ds.reindex(time=times)
    j = np.clip(np.searchsorted(t, u, side="right") - 1, 0, len(t) - 2)
    w = xr.DataArray(np.clip((u - t[j]) / np.maximum(t[j + 1] - t[j], 1), 0.0, 1.0), dims="time")
    lo = ds.drop_vars("time").isel(time=xr.DataArray(j, dims="time"))
    hi = ds.drop_vars("time").isel(time=xr.DataArray(j + 1, dims="time"))
    out = (lo * (1 - w) + hi * w).where(inside)
    for v in ds.data_vars:
        out[v] = out[v].astype(ds[v].dtype if ds[v].dtype.kind == "f" else "float64")
        out[v].attrs = ds[v].attrs
    return out.assign_coords(time=times)


def combine(items: Iterable, *, time: str = "own") -> xr.Dataset:
    """Stack plan summaries along a ``plan`` dimension.

    ``items`` are datasets from :func:`summarise`, :class:`PlanResult` objects (failed
    ones are left out), or paths of ``summary.nc`` / results HDF files. Cells, faces
    and cross sections are aligned by name (``mesh`` and ``cell_id`` etc.), so plans
    with different meshes combine, with NaN where a plan has no value. Plan ids that
    several projects share are told apart as ``<project>/<plan>``.

    Time series: plans with the same output times share ``time``; otherwise each keeps its own
    (``time="own"``: dimension ``step``, coordinate ``time(plan, step)``; plot one plan with
    ``ds.sel(plan=p).dropna("step").plot(x="time")``), or, with ``time="common"``, all are
    interpolated onto the union of their times within each plan's window.
    """
    if time not in ("own", "common"):
        raise ValueError(f"time={time!r}: 'own' (each plan its own time axis) or 'common'")
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
    axes = [d["time"].values for d in datasets if "time" in d.dims]
    if axes and any(not np.array_equal(a, axes[0]) for a in axes[1:]):
        datasets = _own_time(datasets) if time == "own" else _common_time(datasets)
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
