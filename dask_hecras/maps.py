"""Results as map layers: cells as polygons, faces as lines, with their values and CRS.

``to_geodataframe(ds, "max_depth")`` gives a GeoDataFrame to write as GeoPackage or GeoParquet
and open in QGIS or ArcGIS. geopandas and shapely are an optional extra:
``pip install dask-hecras[geo]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from . import geometry


def _geopandas():
    try:
        import geopandas
        import shapely
    except ImportError as e:
        raise ImportError("map layers need geopandas and shapely: pip install dask-hecras[geo]") from e
    return geopandas, shapely


def _source(ds: xr.Dataset | xr.DataArray) -> Path | None:
    """The results HDF a plan's summary came from (an attribute, or a coordinate once stacked)."""
    value = ds.attrs.get("source_file") or (ds.coords["source_file"].values if "source_file" in ds.coords else None)
    if value is None:
        return None
    value = np.asarray(value)
    if value.ndim:
        raise ValueError("several plans: pick one first, e.g. to_geodataframe(ds.sel(plan='p01'), ...)")
    path = Path(str(value))
    return path if path.is_file() else None


def to_geodataframe(ds: xr.Dataset, variable: str | list[str], *, shape: str = "polygons",
                    geometry_from: str | Path | None = None):
    """A GeoDataFrame of one plan's ``variable`` (or variables) per cell or face, with ``mesh``,
    ``cell_id``/``face_id`` and the plan's CRS.

    Cells are their polygons (read from the results HDF the summary came from, or from
    ``geometry_from``), or their centres with ``shape="points"``; faces are lines between
    their end points.
    """
    geopandas, shapely = _geopandas()
    names = [variable] if isinstance(variable, str) else list(variable)
    dims = {ds[n].dims for n in names}
    if len(dims) != 1 or len(next(iter(dims))) != 1 or next(iter(dims))[0] not in ("cell", "face"):
        raise ValueError(f"{names}: one or more variables over cells or over faces only (got {sorted(dims)}); "
                         "pick a time or a plan first, e.g. ds.sel(plan='p01') or ds['depth'].isel(time=-1)")
    dim = next(iter(dims))[0]
    flat = ds[names].reset_index(dim) if dim in ds.indexes else ds[names]
    mesh_name = "mesh" if dim == "cell" else "face_mesh"
    id_name = "cell_id" if dim == "cell" else "face_id"
    meshes = np.asarray(flat[mesh_name].values).astype(str)
    ids = np.asarray(flat[id_name].values).astype("int64")
    if dim == "face":
        ends = np.column_stack([ds[v].values for v in ("face_start_x", "face_start_y", "face_end_x", "face_end_y")])
        geoms = shapely.linestrings(ends.reshape(-1, 2, 2))
    elif shape == "points":
        geoms = shapely.points(ds["x"].values, ds["y"].values)
    else:
        source = Path(geometry_from) if geometry_from else _source(ds)
        if source is None:
            raise ValueError("no results HDF to read cell polygons from (the summary's source_file is gone): "
                             "give geometry_from=<plan or geometry HDF>, or shape='points'")
        geoms = np.empty(len(ids), dtype=object)
        for name in np.unique(meshes):
            polys = geometry.cell_polygons(source, name)
            here = meshes == name
            geoms[here] = polys[ids[here]]
    table = {mesh_name: meshes, id_name: ids}
    for n in names:
        table[n] = ds[n].values
    crs = ds["spatial_ref"].attrs.get("crs_wkt") if "spatial_ref" in ds.coords else None
    return geopandas.GeoDataFrame(table, geometry=geoms, crs=crs or None)
