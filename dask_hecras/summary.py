"""Turn a results HDF into an ``xarray.Dataset`` of the numbers engineers look at.

2D meshes become a ``cell`` dimension over the real cells of all meshes (ghost cells
left out) and a ``face`` dimension; steady 1D profiles a ``profile × cross_section``
table. Only what the file holds is included.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from . import hdf


def _times(start: datetime | None, days: np.ndarray) -> np.ndarray:
    """Day offsets after ``Simulation Start Time`` as datetime64, to the millisecond."""
    if start is None:
        return days.astype("float64")
    ms = np.round(days.astype("float64") * 86400000.0).astype("int64")
    return np.datetime64(start, "ms") + ms.astype("timedelta64[ms]")


def _mesh_summary(f: h5py.File, start) -> dict[str, xr.DataArray | tuple]:
    out: dict = {}
    cells: dict[str, list] = {"mesh": [], "cell_id": []}
    faces: dict[str, list] = {"mesh": [], "face_id": []}
    cell_vars: dict[str, list] = {}
    face_vars: dict[str, list] = {}
    cell_units: dict[str, str] = {}
    face_units: dict[str, str] = {}
    meshes = hdf.meshes(f)
    for name, count in meshes:
        group = f.get(f"{hdf.BASE}/Summary Output/2D Flow Areas/{name}")
        if group is None:
            continue
        cells["mesh"].append(np.full(count, name, dtype=object))
        cells["cell_id"].append(np.arange(count))
        n_faces = None
        for source, var, target, target_units in (
            ("Maximum Water Surface", "max_water_surface", cell_vars, cell_units),
            ("Minimum Water Surface", "min_water_surface", cell_vars, cell_units),
            ("Maximum Face Velocity", "max_face_velocity", face_vars, face_units),
            ("Minimum Face Velocity", "min_face_velocity", face_vars, face_units),
        ):
            d = group.get(source)
            if d is None:
                continue
            if target is cell_vars:
                values = d[:, :count]  # ghost cells beyond Cell Count left out
            else:
                values = d[()]
                n_faces = values.shape[1]
            target.setdefault(var, []).append(values[0])
            target.setdefault(var + "_time", []).append(_times(start, values[1]))
            target_units[var] = hdf.units(d, 0)
        if n_faces is not None:
            faces["mesh"].append(np.full(n_faces, name, dtype=object))
            faces["face_id"].append(np.arange(n_faces))
    if cell_vars:
        coords = {"mesh": ("cell", np.concatenate(cells["mesh"]).astype(str)),
                  "cell_id": ("cell", np.concatenate(cells["cell_id"]))}
        for var, parts in cell_vars.items():
            out[var] = xr.DataArray(np.concatenate(parts), dims="cell", coords=coords,
                                    attrs={"units": cell_units.get(var, "")} if not var.endswith("_time") else {})
    if face_vars:
        # xarray allows one "mesh" coordinate; on the face dimension it is "face_mesh".
        coords = {"face_mesh": ("face", np.concatenate(faces["mesh"]).astype(str)),
                  "face_id": ("face", np.concatenate(faces["face_id"]))}
        for var, parts in face_vars.items():
            out[var] = xr.DataArray(np.concatenate(parts), dims="face", coords=coords,
                                    attrs={"units": face_units.get(var, "")} if not var.endswith("_time") else {})
    return out


def _steady_summary(f: h5py.File) -> dict[str, xr.DataArray]:
    group = f.get(f"{hdf.STEADY_PROFILES}/Cross Sections")
    names = f.get(f"{hdf.STEADY_PROFILES}/Profile Names")
    table = f.get("Results/Steady/Output/Geometry Info/Cross Section Attributes")
    if group is None or names is None or table is None:
        return {}
    xs = table[()]
    coords = {
        "profile": [hdf.text(n).strip() for n in names[()]],
        "river": ("cross_section", [hdf.text(v).strip() for v in xs["River"]]),
        "reach": ("cross_section", [hdf.text(v).strip() for v in xs["Reach"]]),
        "station": ("cross_section", [hdf.text(v).strip() for v in xs["Station"]]),
    }
    out = {}
    for source, var in (("Water Surface", "xs_water_surface"), ("Flow", "xs_flow"), ("Energy Grade", "xs_energy_grade")):
        d = group.get(source)
        if d is not None:
            out[var] = xr.DataArray(d[()], dims=("profile", "cross_section"), coords=coords,
                                    attrs={"units": hdf.units(d)})
    return out


def summarise(hdf_path: str | Path) -> xr.Dataset:
    """The summary of one plan's results file as an ``xarray.Dataset``."""
    path = Path(hdf_path)
    with h5py.File(path, "r") as f:
        info = hdf.plan_information(f)
        start, end = hdf.simulation_window(f)
        messages = hdf.compute_messages(f)
        variables = {**_mesh_summary(f, start), **_steady_summary(f)}
        plan_file = info.get("Plan Filename", "")
        attrs = {
            "plan_id": plan_file.rsplit(".", 1)[-1] if "." in plan_file else "",
            "plan_name": info.get("Plan Name", "") or info.get("Plan Title", ""),
            "plan_file": plan_file,
            "geometry_file": info.get("Geometry Filename", ""),
            "flow_file": info.get("Flow Filename", ""),
            "hecras_version": hdf.version(f),
            "units_system": hdf.text(f.attrs.get("Units System", b"")).strip(),
            "simulation_start": start.isoformat() if start else "",
            "simulation_end": end.isoformat() if end else "",
            "source_file": path.name,
        }
        seconds = hdf.run_seconds(f, messages)
        volume = hdf.volume_error_percent(f, messages)
        if seconds is not None:
            attrs["run_seconds"] = seconds
        if volume is not None:
            attrs["volume_error_percent"] = volume
    return xr.Dataset(variables, attrs=attrs)


def write_summary(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` as netCDF (through h5netcdf, so no netCDF C library is needed)."""
    ds.to_netcdf(path, engine="h5netcdf")
    return path
