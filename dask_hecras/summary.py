"""Turn a results HDF into an ``xarray.Dataset`` holding the numbers HEC-RAS wrote, and where.

Only what the file holds is included:

- 2D meshes: dimension ``cell`` over the real cells of all meshes (ghost cells left
  out), coordinates ``mesh``, ``cell_id`` (numbered from 0 within each mesh, as rashdf does)
  and the cell centre ``x``, ``y``; ``bed_elevation`` (the cell's minimum elevation) and
  ``max_depth`` (highest water surface less the bed, never negative), ``cell_area``; dimension ``face`` with
  ``face_mesh``, ``face_id`` and each face's end points (``face_start_x`` ...). Every summary
  output HEC-RAS wrote per cell or face is kept (maxima, minima and their times, run health:
  ``max_water_surface_error``, ``cumulative_max_iterations``, ...); every time series over
  cells or faces (``water_surface``, ``face_velocity``, ``cell_velocity_x`` ..., and ``depth``)
  is a lazy dask array over the HDF chunks. Geometry missing from a plan HDF is read from the
  geometry HDF it names, beside it. Cell polygons: ``geometry.cell_polygons``.
- The CRS the CF way: a ``spatial_ref`` coordinate with ``crs_wkt``, named by each mapped
  variable's ``grid_mapping``; units in every variable's ``units``.
- 1D cross sections: dimension ``cross_section`` with ``river``, ``reach``, ``station``;
  ``xs_water_surface``, ``xs_flow``, ``xs_energy_grade`` and every steady "Additional
  Variable" (``xs_velocity_total``, ``xs_area_flow_total``, ``xs_encroachment_station_left`` ...)
  over ``profile`` (steady) or ``time`` (unsteady).
- Boundary-condition lines: ``bc_flow``, ``bc_stage`` over ``time`` and ``bc_line`` (with
  ``bc_line_id``, ``bc_line_type``, ``bc_line_mesh``); per face of each line lazily
  (``bc_face_flow``, ``bc_face_stage`` over ``bc_face``).
- Reference lines and points: dimensions ``refline`` / ``refpoint`` indexed by name,
  with ``refline_mesh`` / ``refpoint_mesh``.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import xarray as xr

from . import geometry, hdf
from .netcdf import write_netcdf

TS = f"{hdf.BASE}/Unsteady Time Series"
SUMMARY = f"{hdf.BASE}/Summary Output"

# The default 2D time series; with any other series over cells or faces (``lazy_series``) they
# are too big to copy into summary.nc: they stay in the results HDF, read lazily.
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


# HEC-RAS's dataset names → ours; any other 2D output is kept under a name made from its own
# (``_snake``), so nothing HEC-RAS wrote with a clear dimension is dropped.
_NAMES = {
    "Maximum Water Surface": "max_water_surface", "Minimum Water Surface": "min_water_surface",
    "Maximum Face Velocity": "max_face_velocity", "Minimum Face Velocity": "min_face_velocity",
    "Cell Maximum Water Surface Error": "max_water_surface_error",
    "Cell Cumulative Iteration": "cumulative_max_iterations", "Cell Last Iteration": "last_to_converge",
    "Water Surface": "water_surface", "Face Velocity": "face_velocity",
}


def _snake(name: str) -> str:
    """``Cell Velocity - Velocity X`` → ``cell_velocity_x``; ``Face Shear Stress`` → ``face_shear_stress``."""
    if " - " in name:
        head, tail = name.split(" - ", 1)
        words = head.split() + [w for w in tail.split() if w not in head.split()]
    else:
        words = name.split()
    return "_".join("".join(c if c.isalnum() else "_" for c in w.lower()) for w in words).strip("_")


def _var(source: str) -> str:
    return _NAMES.get(source, _snake(source))


def _mesh_sizes(f: h5py.File, name: str, summary, series, geo) -> tuple[int | None, int | None]:
    """Cells (ghost cells included) and faces of a mesh, from whichever file holds them."""
    cells = faces = None
    for group, key in ((summary, "Maximum Water Surface"), (series, "Water Surface")):
        if cells is None and group is not None and key in group:
            cells = group[key].shape[-1]
    for group, key in ((summary, "Maximum Face Velocity"), (series, "Face Velocity")):
        if faces is None and group is not None and key in group:
            faces = group[key].shape[-1]
    g = geo.get(f"{geometry.AREAS}/{name}") if geo is not None else None
    if g is not None:
        if cells is None and "Cells Center Coordinate" in g:
            cells = g["Cells Center Coordinate"].shape[0]
        if faces is None and "Faces FacePoint Indexes" in g:
            faces = g["Faces FacePoint Indexes"].shape[0]
    return cells, faces


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    """The meshes' pieces end to end; one mesh's own array as it is (a copy of every variable of
    a 250,000-cell mesh would add ~70 MB at the peak)."""
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _summary_outputs(summary, count: int, cells: int | None, faces: int | None, start):
    """Every summary array of a mesh with a clear dimension: (value, time-in-days) rows, one
    row per cell or face, or named rows (``Row0``...): → [(var, is_cell, values, units, is_time)]."""
    out = []
    if summary is None:
        return out
    for source, d in summary.items():
        if not isinstance(d, h5py.Dataset) or d.ndim not in (1, 2) or d.dtype.kind not in "fiu":
            continue
        width = d.shape[-1]
        is_cell = width == cells
        if not is_cell and width != faces:
            continue
        take = count if is_cell else width
        var = _var(source)
        if d.ndim == 1:
            out.append((var, is_cell, d[:take], hdf.units(d, 0), False))
            continue
        rows = d[:, :take]
        row_names = [hdf.text(d.attrs[f"Row{i}"]).strip() for i in range(d.shape[0]) if f"Row{i}" in d.attrs]
        if d.shape[0] == 2 and len(row_names) < 2:  # value, then the time it happened
            out.append((var, is_cell, rows[0], hdf.units(d, 0), False))
            out.append((var + "_time", is_cell, _times(start, rows[1]), "", True))
        elif len(row_names) == d.shape[0]:
            for row, label in zip(rows, row_names):
                out.append((f"{var}_{_snake(label)}", is_cell, row, hdf.units(d, 0), False))
    return out


def _mesh_variables(f: h5py.File, path: Path, start, time_series: bool, time, geo) -> tuple[dict, dict]:
    """Per real cell and per face of every mesh: summary outputs, geometry (centres, bed, depth,
    face end points) and, lazily, time series."""
    parts: dict[str, dict[str, list]] = {"cell": {}, "face": {}}
    units: dict[str, str] = {}
    coords: dict[str, dict[str, list]] = {"cell": {"mesh": [], "cell_id": []}, "face": {"face_mesh": [], "face_id": []}}
    meshes = {m.name: m for m in geometry.read_meshes(geo)} if geo is not None else {}
    lazy_vars: set[str] = set()
    dim_of = lambda is_cell: "cell" if is_cell else "face"  # noqa: E731
    for name, count in hdf.meshes(f):
        summary = f.get(f"{SUMMARY}/2D Flow Areas/{name}")
        series = f.get(f"{TS}/2D Flow Areas/{name}")
        cells, faces = _mesh_sizes(f, name, summary, series, geo)
        found = {"cell": False, "face": False}
        for var, is_cell, values, unit, _ in _summary_outputs(summary, count, cells, faces, start):
            parts[dim_of(is_cell)].setdefault(var, []).append(values)
            units.setdefault(var, unit)
            found[dim_of(is_cell)] = True
        if series is not None and time_series and time is not None:
            for source, d in series.items():
                if not isinstance(d, h5py.Dataset) or d.ndim != 2 or d.shape[0] != len(time):
                    continue
                if d.shape[1] not in (cells, faces):
                    continue
                is_cell = d.shape[1] == cells
                var = _var(source)
                parts[dim_of(is_cell)].setdefault(var, []).append(_lazy(path, d, count if is_cell else d.shape[1]))
                units.setdefault(var, hdf.units(d, 0))
                lazy_vars.add(var)
                found[dim_of(is_cell)] = True
        mesh = meshes.get(name)
        if mesh is not None:
            found["cell"] = True
            for var, values in (("x", mesh.x), ("y", mesh.y), ("bed_elevation", mesh.bed), ("cell_area", mesh.area)):
                if values is not None:
                    parts["cell"].setdefault(var, []).append(values)
            if mesh.face_ends is not None and faces in (None, len(mesh.face_ends)):
                found["face"] = True
                faces = len(mesh.face_ends)
                for k, var in enumerate(("face_start_x", "face_start_y", "face_end_x", "face_end_y")):
                    parts["face"].setdefault(var, []).append(mesh.face_ends[:, k])
        if found["cell"]:
            coords["cell"]["mesh"].append(_names(name, count))
            coords["cell"]["cell_id"].append(np.arange(count))
        if found["face"] and faces:
            coords["face"]["face_mesh"].append(_names(name, faces))
            coords["face"]["face_id"].append(np.arange(faces))

    # Variables as (dims, data, attrs) with the coordinates given once: per-variable
    # DataArrays would copy the (large) coordinate arrays for every variable.
    out: dict[str, tuple] = {}
    coord_out: dict[str, tuple] = {}
    length = geometry.length_unit(geo if geo is not None else f)
    for dim in ("cell", "face"):
        n = sum(len(c) for c in coords[dim]["mesh" if dim == "cell" else "face_mesh"])
        if not n:
            continue
        for k, v in coords[dim].items():
            coord_out[k] = (dim, _joined(v))
        for var, pieces in parts[dim].items():
            if sum(p.shape[-1] for p in pieces) != n:
                continue  # not written for every mesh: no honest way to place it
            if var in lazy_vars:
                data = da.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]
                out[var] = (("time", dim), data, {"units": units.get(var, "")})
            elif var in ("x", "y"):
                coord_out[var] = (dim, _joined(pieces), {
                    "units": length, "standard_name": f"projection_{var}_coordinate",
                    "long_name": f"{var} of the cell centre"})
            else:
                unit = length if var.startswith("face_") and var.endswith(("_x", "_y")) or var == "bed_elevation" \
                    else f"{length}2" if var == "cell_area" else units.get(var, "")
                attrs = {} if var.endswith("_time") else {"units": unit}
                out[var] = (dim, _joined(pieces), attrs)
    if "bed_elevation" in out:
        bed = out["bed_elevation"][1]
        out["bed_elevation"][2]["long_name"] = "cell minimum elevation"
        if "max_water_surface" in out:  # the deepest the water got: its highest surface less the bed
            out["max_depth"] = ("cell", np.maximum(out["max_water_surface"][1] - bed, 0).astype("float32"),
                                {"units": length, "long_name": "maximum depth (water surface - bed, >= 0)"})
        if "water_surface" in out:
            ws = out["water_surface"][1]
            out["depth"] = (("time", "cell"), da.maximum(ws - bed.astype(ws.dtype)[None, :], 0),
                            {"units": length, "long_name": "depth (water surface - bed, >= 0)"})
            lazy_vars.add("depth")
    if any(v in out for v in lazy_vars):
        coord_out["time"] = time
    return out, coord_out


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
    extra = group.get("Additional Variables")
    found = [(g, source, var) for source, var in _XS_VARS for g in (group,) if source in g]
    if extra is not None:  # velocity, flow area, encroachment stations...: every one HEC-RAS wrote
        found += [(extra, source, "xs_" + _snake(source)) for source in extra
                  if isinstance(extra[source], h5py.Dataset) and extra[source].ndim == 2]
    profiles = [hdf.text(n).strip() for n in names[()]]
    coords_by_width: dict[int, dict] = {}
    for g, source, var in found:
        d = g[source]
        if var in out or d.shape[0] != len(profiles):
            continue
        if d.shape[1] not in coords_by_width:
            coords_by_width[d.shape[1]] = _cross_section_coords(f, (
                "Results/Steady/Output/Geometry Info/Cross Section Attributes",
                "Geometry/Cross Sections/Attributes"), d.shape[1]) or {}
        coords = {**coords_by_width[d.shape[1]], "profile": profiles}
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


_PER_FACE = (" - Flow per Face", " - Stage per Face")


def _boundary_groups(f: h5py.File):
    """Boundary-condition-line outputs: ``Unsteady Time Series/Boundary Conditions`` (to 6.5) and
    ``Unsteady Time Series/2D Flow Areas/<mesh>/Boundary Conditions`` (6.6)."""
    g = f.get(f"{TS}/Boundary Conditions")
    if g is not None:
        yield g
    areas = f.get(f"{TS}/2D Flow Areas")
    if areas is not None:
        for mesh in areas.values():
            if isinstance(mesh, h5py.Group) and "Boundary Conditions" in mesh:
                yield mesh["Boundary Conditions"]


def _boundary_lines(f: h5py.File, path: Path, time, geo, time_series: bool) -> dict:
    """Flow and stage per boundary-condition line over time (dimension ``bc_line``, with its
    type and mesh), and per face of each line lazily (``bc_face``)."""
    if time is None:
        return {}
    lines = {line["name"]: line for line in geometry.boundary_lines(geo if geo is not None else f)}
    if not lines:
        lines = {line["name"]: line for line in geometry.boundary_lines(f)}
    names, types, meshes, flow, stage, units = [], [], [], [], [], {}
    face_parts: dict[str, list] = {"flow": [], "stage": []}
    face_line, face_number, face_index = [], [], []  # index: the face's mesh face, -1 where the file does not say
    for group in _boundary_groups(f):
        for name, d in group.items():
            if not isinstance(d, h5py.Dataset) or name.endswith(_PER_FACE) or d.ndim != 2 or d.shape[0] != len(time):
                continue
            columns = [hdf.text(c).strip() for c in d.attrs.get("Columns", [b"Stage", b"Flow"])]
            if "Flow" not in columns or "Stage" not in columns:
                continue
            values = d[()]
            line = lines.get(name, {})
            names.append(name)
            types.append(line.get("type", ""))
            meshes.append(line.get("mesh") or hdf.text(d.attrs.get("2D Area", b"")).strip())
            flow.append(values[:, columns.index("Flow")])
            stage.append(values[:, columns.index("Stage")])
            units.setdefault("flow", hdf.text(d.attrs.get("Flow", b"")).strip())
            units.setdefault("stage", hdf.text(d.attrs.get("Stage", b"")).strip())
            per_face = [group.get(name + suffix) for suffix in _PER_FACE]
            if time_series and all(p is not None and p.shape[0] == len(time) for p in per_face) \
                    and per_face[0].shape[1] == per_face[1].shape[1]:
                n = per_face[0].shape[1]
                face_parts["flow"].append(_lazy(path, per_face[0]))
                face_parts["stage"].append(_lazy(path, per_face[1]))
                ids = geometry.boundary_faces(geo if geo is not None else f, line.get("id", -1)) if line else []
                face_line.append(_names(name, n))
                face_number.append(np.arange(n))
                face_index.append(np.asarray(ids) if len(ids) == n else np.full(n, -1))
    if not names:
        return {}
    ids = [lines.get(n, {}).get("id", -1) for n in names]
    order = sorted(range(len(names)), key=lambda i: (ids[i] < 0, ids[i], names[i]))  # as the geometry lists them
    names, types, meshes, ids = ([v[i] for i in order] for v in (names, types, meshes, ids))
    flow, stage = [flow[i] for i in order], [stage[i] for i in order]
    coords = {"bc_line": names, "bc_line_id": ("bc_line", ids), "bc_line_type": ("bc_line", types),
              "bc_line_mesh": ("bc_line", meshes), "time": time}
    out = {
        "bc_flow": xr.DataArray(np.column_stack(flow), dims=("time", "bc_line"), coords=coords,
                                attrs={"units": units["flow"], "long_name": "flow across the boundary line"}),
        "bc_stage": xr.DataArray(np.column_stack(stage), dims=("time", "bc_line"), coords=coords,
                                 attrs={"units": units["stage"], "long_name": "stage at the boundary line"}),
    }
    if face_line:
        face_coords = {"bc_face_line": ("bc_face", np.concatenate(face_line)),
                       "bc_face_number": ("bc_face", np.concatenate(face_number)),
                       "bc_face_index": ("bc_face", np.concatenate(face_index)), "time": time}
        for key, unit in (("flow", units["flow"]), ("stage", units["stage"])):
            out[f"bc_face_{key}"] = xr.DataArray(da.concatenate(face_parts[key], axis=1), dims=("time", "bc_face"),
                                                 coords=face_coords, attrs={"units": unit})
    return out


def summarise(hdf_path: str | Path, *, time_series: bool = True) -> xr.Dataset:
    """The numbers of one plan's results file as an ``xarray.Dataset``.

    Big 2D time series are lazy dask arrays read chunk by chunk from the HDF; pass
    ``time_series=False`` for maxima, minima and 1D results only.
    """
    path = Path(hdf_path).resolve()
    with h5py.File(path, "r") as f, _geometry_source(f, path) as geo:
        info = hdf.plan_information(f)
        start, end = hdf.simulation_window(f)
        messages = hdf.compute_messages(f)
        time = _time_coordinate(f, start)
        mesh_vars, coords = _mesh_variables(f, path, start, time_series, time, geo)
        variables = {
            **mesh_vars,
            **_steady_variables(f),
            **(_unsteady_series(f, path, time) if time_series else {}),
            **_boundary_lines(f, path, time, geo, time_series),
        }
        wkt = geometry.crs_wkt(f, path) or (geometry.crs_wkt(geo, path) if geo is not None and geo is not f else "")
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
    if wkt:  # CF: a grid-mapping variable with the WKT, named by every mapped variable
        coords["spatial_ref"] = ((), np.int32(0), {"crs_wkt": wkt, "spatial_ref": wkt})
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    if wkt:
        for name in ds.data_vars:
            if {"cell", "face"} & set(ds[name].dims):
                ds[name].attrs["grid_mapping"] = "spatial_ref"
    return ds


@contextlib.contextmanager
def _geometry_source(f: h5py.File, path: Path):
    """The file holding the plan's mesh geometry: the plan HDF itself, else the geometry HDF
    it names beside it (opened and closed here), else ``None``."""
    if not hdf.meshes(f) or geometry.has_mesh_geometry(f):
        yield f if hdf.meshes(f) else None
        return
    beside = geometry.geometry_file_beside(path, f)
    if beside is None:
        yield None
        return
    with h5py.File(beside, "r") as g:
        yield g


def lazy_series(ds: xr.Dataset) -> list[str]:
    """The big 2D time series (over time and cells or faces), read from the HDF when used."""
    return [v for v in ds.data_vars if "time" in ds.variables[v].dims and {"cell", "face"} & set(ds.variables[v].dims)]


def write_summary(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` as netCDF without the big 2D time series (they stay in the HDF).

    Written straight with h5py (``netcdf.write_netcdf``: no netCDF C library, and a tenth of
    xarray's cost). What is left is small and read here, by threads, never through a notebook's
    default Client (whose workers may not even see this local HDF). One global attribute holds
    what a study reader needs per plan: the layout's fingerprint and what tells the plan apart.
    """
    small = ds.drop_vars(lazy_series(ds)).load(scheduler="threads")
    plan = {k: v.item() if hasattr(v, "item") else v for k, v in small.attrs.items()
            if k in PLAN_FIELDS and isinstance(v, (str, int, float, np.generic))}
    write_netcdf(small, path, more_attrs=lambda key: {LAYOUT: json.dumps({"layout": key, **plan})})
    return path


LAYOUT = "hecras_layout"
PLAN_FIELDS = ("plan_id", "plan_name", "plan_file", "geometry_file", "flow_file", "hecras_version",
               "simulation_start", "simulation_end", "run_seconds", "volume_error_percent", "source_file", "engine")
