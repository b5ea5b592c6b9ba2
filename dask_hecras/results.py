"""A batch's results as one dataset: every plan's summary stacked along ``plan``."""

from __future__ import annotations

import json
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
    with xr.open_dataset(path, engine="h5netcdf") as d:  # read and closed: an open file would, on
        return d.load(), label                             # Windows, stop a landing replacing it


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


BLOCK_BYTES = 16 * 2**20
_ENCODED = ("_FillValue", "missing_value", "scale_factor", "add_offset", "calendar", "_Encoding", "dtype")


class _Stacked:
    """One variable of many plans' ``summary.nc`` files of the same layout, as an array-like
    that dask reads plan by plan (one h5py open per block), decoding as xarray would."""

    def __init__(self, files: list[str], name: str, dims: tuple, shape: tuple, dtype, attrs: dict):
        self.files, self.name, self.dims, self.attrs = files, name, dims, attrs
        self.shape = (len(files), *shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        # plain stored values (most maxima) need no CF decoding: only fills, scales and times do;
        # a NaN fill of a float variable (xarray's default) changes nothing
        fill = np.asarray(attrs.get("_FillValue", np.nan)).ravel()
        nan_fill = fill.size == 1 and np.asarray(fill).dtype.kind == "f" and np.isnan(fill[0])
        self.encoded = (any(k in attrs for k in _ENCODED if k != "_FillValue") or not nan_fill
                        or " since " in str(attrs.get("units", "")))

    def __getitem__(self, key):
        import h5py

        plans, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        rows = []
        for path in np.asarray(self.files)[plans].ravel():
            with h5py.File(path, "r") as f:
                raw = f[self.name][rest] if rest else f[self.name][()]
            if self.encoded:
                dims = self.dims if not rest else tuple(d for d, r in zip(self.dims, rest) if not isinstance(r, int))
                if raw.ndim == len(dims) + 1:  # text stored as characters along a last dimension
                    dims += ("characters",)
                raw = xr.conventions.decode_cf_variable(self.name, xr.Variable(dims, raw, dict(self.attrs))).values
            rows.append(np.asarray(raw))
        return np.stack(rows).astype(self.dtype, copy=False) if rows else np.empty((0,) + self.shape[1:], self.dtype)


def _fast_stack(files: list[Path], plan_attrs: list[dict]) -> xr.Dataset:
    """Plans whose summaries share one layout: coordinates from the first, every variable a lazy
    stack read straight from the files (``plan_attrs``: each file's root attributes)."""
    import dask.array as da
    from dask.base import tokenize

    names = [str(f) for f in files]
    token = tokenize(names, [os.stat(n).st_mtime_ns for n in names])
    with xr.open_dataset(files[0], engine="h5netcdf", decode_cf=False) as raw:
        first = xr.decode_cf(raw)  # lazy: only the coordinates are read, the variables' layout known
        coords = first.coords.to_dataset().load().coords
        layout = {name: (var.dims, var.shape, var.dtype, dict(raw[name].attrs), dict(var.attrs))
                  for name, var in first.data_vars.items()}
        attrs = dict(first.attrs)
    variables = {}
    for name, (dims, shape, dtype, encoding, var_attrs) in layout.items():
        reader = _Stacked(names, name, dims, shape, dtype, encoding)
        per_plan = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        plans = max(1, min(len(names), BLOCK_BYTES // per_plan))  # ~16 MB blocks: few tasks, little memory
        data = da.from_array(reader, chunks=(plans, *shape), asarray=True, fancy=False,
                             name=f"hecras-summaries-{name}-{token}")
        variables[name] = (("plan", *dims), data, var_attrs)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _open_fast(files: list[Path]) -> xr.Dataset | None:
    """Summaries grouped by layout and each group stacked straight from its files (one open per
    file for its layout key and plan attributes); ``None`` when a file has no layout key
    (written before it was kept): the general path must do."""
    import h5py

    from .summary import LAYOUT

    keys, attrs = [], []
    for path in files:
        with h5py.File(path, "r") as f:
            found = f.attrs.get(LAYOUT)
        if found is None:
            return None
        found = json.loads(found.decode() if isinstance(found, bytes) else str(found))
        keys.append(found.pop("layout"))
        attrs.append(found)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    labels = [path.parent.parent.name if (path.parent / "result.json").is_file() else "" for path in files]
    parts = [(_fast_stack([files[i] for i in idx], [attrs[i] for i in idx]), [attrs[i] for i in idx],
              [labels[i] for i in idx]) for idx in groups.values()]
    return _label_plans(parts)


def _label_plans(parts) -> xr.Dataset:
    """Plan ids (``<project>/<plan>`` where ids repeat), project and per-plan attributes as
    coordinates along ``plan``; groups of different layouts joined as ``combine`` joins plans."""
    ids = [a.get("plan_id") or f"plan{i}" for _, attrs, _ in parts for i, a in enumerate(attrs)]
    projects = [label or Path(a.get("plan_file", "")).stem or ""
                for _, attrs, labels in parts for a, label in zip(attrs, labels)]
    if len(set(ids)) < len(ids):
        ids = [f"{p}/{i}" for p, i in zip(projects, ids)]
    if len(set(ids)) < len(ids):
        raise ValueError(f"plans appear more than once: {sorted(i for i in ids if ids.count(i) > 1)}")
    out, k = [], 0
    for ds, attrs, _ in parts:
        n = len(attrs)
        extra = {name: ("plan", [a.get(name, np.nan) for a in attrs]) for name in PLAN_ATTRS
                 if any(name in a for a in attrs)}
        ds = ds.assign_coords(plan=ids[k:k + n], project=("plan", projects[k:k + n]), **extra)
        for dim, names in _INDEXES.items():
            if dim in ds.dims and all(n_ in ds.coords for n_ in names):
                ds = ds.set_index({dim: names})
        ds.attrs = {"units_system": ds.attrs.get("units_system", "")}
        out.append(ds)
        k += n
    if len(out) == 1:
        return out[0]
    if any("time" in d.dims for d in out):
        out = _own_time(out)
    return xr.concat(out, dim="plan", join="outer", data_vars="all", coords="different", compat="equals",
                     combine_attrs="drop_conflicts")


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


def unsummarised(results_dir: str | os.PathLike) -> list[Path]:
    """Plan folders whose current results succeeded but carry no ``summary.nc`` (yet: a batch
    writes it just after the results land; a landing that replaced a plan's earlier results
    leaves the plan out of the study until then)."""
    root = Path(results_dir)
    out = []
    for mark in sorted(root.glob("*/*/result.json")):
        plan_dir = mark.parent
        if plan_dir.name.startswith(".") or records.BESIDE in plan_dir.name or plan_dir.name.endswith(".failed"):
            continue
        if (plan_dir / "summary.nc").is_file():
            continue
        landed = records.load_result(plan_dir)
        if landed is not None and landed.ok and not (records.current_folder(plan_dir) / "summary.nc").is_file():
            out.append(plan_dir)
    return out


def open_results(results_dir: str | os.PathLike, *, time_series: bool = False) -> xr.Dataset:
    """A whole batch's (or study's) summaries as one dataset along ``plan``.

    Summaries of one layout (same meshes, same output times) are stacked lazily straight from
    their files, read plan by plan when used: one small attribute per plan is read to open the
    study, so hundreds of plans open in seconds and a study larger than memory works. Plans of
    other layouts are joined as :func:`combine` joins them. Only landed plans are seen, so it can
    be called while a batch is still landing plans. With ``time_series=True`` the 2D mesh time
    series are added as lazy arrays read from each plan's results HDF.
    """
    files = summary_files(results_dir)
    waiting = unsummarised(results_dir)
    if waiting:
        import warnings

        warnings.warn(f"{len(waiting)} landed plan(s) have no summary yet, so are not in the study: "
                      f"{', '.join(str(p.relative_to(results_dir)) for p in waiting[:10])}"
                      f"{' ...' if len(waiting) > 10 else ''}. A batch summarises them as they land; "
                      "dask_hecras.pipeline.summarise_into(<plan folder>) builds one", stacklevel=2)
    if not files:
        raise FileNotFoundError(f"no plan summaries (summary.nc) under {results_dir}")
    if not time_series:
        fast = _open_fast(files)
        return fast if fast is not None else combine(files)
    hdfs = [next(iter(sorted(f.parent.glob("*.p[0-9][0-9].hdf"))), f) for f in files]
    return combine(hdfs)


__all__ = ["combine", "open_results", "summary_files", "MESH_SERIES"]
