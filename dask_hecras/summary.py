"""Turn a results HDF into an ``xarray.Dataset`` holding the numbers HEC-RAS wrote.

Only what the file holds is included:

- 2D meshes: dimension ``cell`` over the real cells of all meshes (ghost cells left
  out), coordinates ``mesh`` and ``cell_id`` (numbered from 0 within each mesh, as
  rashdf does); dimension ``face`` with ``face_mesh`` and ``face_id`` (xarray allows one
  coordinate called ``mesh``); maxima, minima and their times; time series
  ``water_surface(time, cell)`` and ``face_velocity(time, face)`` as lazy dask arrays
  over the HDF chunks.
- 1D cross sections: dimension ``cross_section`` with ``river``, ``reach``, ``station``;
  ``xs_water_surface``, ``xs_flow``, ``xs_energy_grade`` over ``profile`` (steady) or
  ``time`` (unsteady).
- Reference lines and points: dimensions ``refline`` / ``refpoint`` indexed by name,
  with ``refline_mesh`` / ``refpoint_mesh``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import xarray as xr

from . import hdf

TS = f"{hdf.BASE}/Unsteady Time Series"
SUMMARY = f"{hdf.BASE}/Summary Output"

# Time series too big to copy into summary.nc: they stay in the results HDF, read lazily.
MESH_SERIES = ("water_surface", "face_velocity")


def _times(start: datetime | None, days: np.ndarray) -> np.ndarray:
    """Day offsets after ``Simulation Start Time`` as datetime64, rounded to 0.1 s as rashdf does."""
    if start is None:
        return days.astype("float64")
    tenths = np.round(days.astype("float64") * 864000.0).astype("int64")
    return np.datetime64(start, "ms") + (tenths * 100).astype("timedelta64[ms]")


def _names(name: str, n: int) -> np.ndarray:
    """``n`` references to one str: 8 bytes a cell (np.full would make a str per cell)."""
    out = np.empty(n, dtype=object)
    out.fill(name)
    return out


def _lazy(path: Path, d: h5py.Dataset, columns: int | None = None) -> da.Array:
    """A dask array over an HDF dataset, in blocks of whole HDF chunks (~16 MB)."""
    source = hdf.LazyDataset(path, d.name, d.shape, d.dtype)
    hchunks = d.chunks or d.shape
    target = 16 * 2**20 // max(1, d.dtype.itemsize)
    per_block = max(1, target // max(1, int(np.prod(hchunks))))
    rows = min(d.shape[0], hchunks[0] * per_block) if d.ndim else ()
    chunks = (rows,) + tuple(hchunks[1:]) if d.ndim > 1 else (rows,)
    arr = da.from_array(source, chunks=chunks, name=f"hecras-{path.name}-{d.name}-{path.stat().st_mtime_ns}",
                        asarray=True, fancy=False)
    return arr if columns is None else arr[:, :columns]


def _time_coordinate(f: h5py.File, start: datetime | None) -> np.ndarray | None:
    g = f.get(TS)
    if g is None:
        return None
    for name in ("Time Date Stamp (ms)", "Time Date Stamp"):
        if name in g:
            stamps = [hdf.parse_stamp_ms(hdf.text(s)) for s in g[name][()]]
            if all(s is not None for s in stamps):
                return np.array(stamps, dtype="datetime64[ms]")
    if "Time" in g:
        return _times(start, g["Time"][()])
    return None


def _mesh_variables(f: h5py.File, path: Path, start, time_series: bool, time) -> tuple[dict, dict]:
    cells: dict[str, list] = {}
    faces: dict[str, list] = {}
    units: dict[str, str] = {}
    cell_coords: dict[str, list] = {"mesh": [], "cell_id": []}
    face_coords: dict[str, list] = {"face_mesh": [], "face_id": []}
    for name, count in hdf.meshes(f):
        summary = f.get(f"{SUMMARY}/2D Flow Areas/{name}")
        series = f.get(f"{TS}/2D Flow Areas/{name}")
        n_faces = None
        n_cells = None
        for group, source, var, is_cell, lazy in (
            (summary, "Maximum Water Surface", "max_water_surface", True, False),
            (summary, "Minimum Water Surface", "min_water_surface", True, False),
            (summary, "Maximum Face Velocity", "max_face_velocity", False, False),
            (summary, "Minimum Face Velocity", "min_face_velocity", False, False),
            (series, "Water Surface", "water_surface", True, True),
            (series, "Face Velocity", "face_velocity", False, True),
        ):
            if group is None or source not in group or (lazy and (not time_series or time is None)):
                continue
            d = group[source]
            target = cells if is_cell else faces
            width = count if is_cell else d.shape[-1]
            if is_cell:
                n_cells = count
            else:
                n_faces = d.shape[-1]
            if lazy:
                target.setdefault(var, []).append(_lazy(path, d, width))
            else:
                values = d[:, :width]  # rows: value, time in days; ghost cells left out
                target.setdefault(var, []).append(values[0])
                target.setdefault(var + "_time", []).append(_times(start, values[1]))
            units[var] = hdf.units(d, 0)
        if n_cells is not None:
            cell_coords["mesh"].append(_names(name, n_cells))
            cell_coords["cell_id"].append(np.arange(n_cells))
        if n_faces is not None:
            face_coords["face_mesh"].append(_names(name, n_faces))
            face_coords["face_id"].append(np.arange(n_faces))

    # Variables as (dims, data, attrs) with the coordinates given once: per-variable
    # DataArrays would copy the (large) coordinate arrays for every variable.
    out: dict[str, tuple] = {}
    coords: dict[str, tuple] = {}
    for values, names, dim in ((cells, cell_coords, "cell"), (faces, face_coords, "face")):
        if not values:
            continue
        for k, v in names.items():
            coords[k] = (dim, np.concatenate(v))
        for var, parts in values.items():
            if var in MESH_SERIES:
                data = da.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
                out[var] = (("time", dim), data, {"units": units[var]})
            else:
                attrs = {} if var.endswith("_time") else {"units": units.get(var, "")}
                out[var] = (dim, np.concatenate(parts), attrs)
    if any(v in out for v in MESH_SERIES):
        coords["time"] = time
    return out, coords


def _cross_section_coords(f: h5py.File, paths: tuple[str, ...], n: int) -> dict | None:
    for p in paths:
        d = f.get(p)
        if d is None or d.dtype.names is None or len(d) != n:
            continue
        table = d[()]
        station = "Station" if "Station" in table.dtype.names else "RS" if "RS" in table.dtype.names else None
        if station is None or "River" not in table.dtype.names:
            continue
        return {
            "river": ("cross_section", [hdf.text(v).strip() for v in table["River"]]),
            "reach": ("cross_section", [hdf.text(v).strip() for v in table["Reach"]]),
            "station": ("cross_section", [hdf.text(v).strip() for v in table[station]]),
        }
    return None


_XS_VARS = (("Water Surface", "xs_water_surface"), ("Flow", "xs_flow"), ("Energy Grade", "xs_energy_grade"))


def _steady_variables(f: h5py.File) -> dict[str, xr.DataArray]:
    group = f.get(f"{hdf.STEADY_PROFILES}/Cross Sections")
    names = f.get(f"{hdf.STEADY_PROFILES}/Profile Names")
    if group is None or names is None:
        return {}
    out = {}
    for source, var in _XS_VARS:
        d = group.get(source)
        if d is None:
            continue
        coords = _cross_section_coords(f, ("Results/Steady/Output/Geometry Info/Cross Section Attributes",
                                           "Geometry/Cross Sections/Attributes"), d.shape[1]) or {}
        coords["profile"] = [hdf.text(n).strip() for n in names[()]]
        out[var] = xr.DataArray(d[()], dims=("profile", "cross_section"), coords=coords,
                                attrs={"units": hdf.units(d)})
    return out


def _unsteady_series(f: h5py.File, path: Path, time) -> dict[str, xr.DataArray]:
    out: dict[str, xr.DataArray] = {}
    if time is None:
        return out
    xs = f.get(f"{TS}/Cross Sections")
    if xs is not None:
        for source, var in _XS_VARS:
            d = xs.get(source)
            if d is None or d.ndim != 2:
                continue
            coords = _cross_section_coords(f, (
                "Results/Unsteady/Output/Geometry Info/Cross Section Attributes",
                f"{TS}/Cross Sections/Cross Section Attributes",
                "Geometry/Cross Sections/Attributes"), d.shape[1]) or {}
            out[var] = xr.DataArray(_lazy(path, d), dims=("time", "cross_section"),
                                    coords={**coords, "time": time}, attrs={"units": hdf.units(d)})
    for group_name, dim, variables in (
        ("Reference Lines", "refline", (("Flow", "refline_flow"), ("Water Surface", "refline_water_surface"))),
        ("Reference Points", "refpoint", (("Velocity", "refpoint_velocity"), ("Water Surface", "refpoint_water_surface"))),
    ):
        g = f.get(f"{TS}/{group_name}")
        if g is None or "Name" not in g:
            continue
        labels = [hdf.text(n).strip() for n in g["Name"][()]]
        names = [s.split("|", 1)[0].strip() for s in labels]
        meshes = [s.split("|", 1)[1].strip() if "|" in s else "" for s in labels]
        for source, var in variables:
            d = g.get(source)
            if d is None:
                continue
            out[var] = xr.DataArray(d[()], dims=("time", dim),
                                    coords={dim: names, f"{dim}_mesh": (dim, meshes), "time": time},
                                    attrs={"units": hdf.units(d)})
    return out


def summarise(hdf_path: str | Path, *, time_series: bool = True) -> xr.Dataset:
    """The numbers of one plan's results file as an ``xarray.Dataset``.

    Big 2D time series are lazy dask arrays read chunk by chunk from the HDF; pass
    ``time_series=False`` for maxima, minima and 1D results only.
    """
    path = Path(hdf_path).resolve()
    with h5py.File(path, "r") as f:
        info = hdf.plan_information(f)
        start, end = hdf.simulation_window(f)
        messages = hdf.compute_messages(f)
        time = _time_coordinate(f, start)
        mesh_vars, coords = _mesh_variables(f, path, start, time_series, time)
        variables = {
            **mesh_vars,
            **_steady_variables(f),
            **(_unsteady_series(f, path, time) if time_series else {}),
        }
        plan_file = info.get("Plan Filename", "")
        attrs = {
            "plan_id": plan_file.rsplit(".", 1)[-1].lower() if "." in plan_file else "",
            "plan_name": info.get("Plan Name", "") or info.get("Plan Title", ""),
            "plan_file": plan_file,
            "geometry_file": info.get("Geometry Filename", ""),
            "flow_file": info.get("Flow Filename", ""),
            "hecras_version": hdf.version(f),
            "units_system": hdf.text(f.attrs.get("Units System", b"")).strip(),
            "simulation_start": start.isoformat() if start else "",
            "simulation_end": end.isoformat() if end else "",
            "source_file": str(path),
        }
        seconds = hdf.run_seconds(f, messages)
        volume = hdf.volume_error_percent(f, messages)
    if seconds is not None:
        attrs["run_seconds"] = seconds
    if volume is not None:
        attrs["volume_error_percent"] = volume
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_summary(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` as netCDF without the big 2D time series (they stay in the HDF).

    Written through h5netcdf, so no netCDF C library is needed. What is left is small and read
    here, by threads, never through a notebook's default Client (whose workers may not even see
    this local HDF).
    """
    small = ds.drop_vars([v for v in MESH_SERIES if v in ds]).load(scheduler="threads")
    small.to_netcdf(path, engine="h5netcdf")
    return path
