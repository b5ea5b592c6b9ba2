"""Results as maps: cells as polygons, faces as lines, with their values and CRS.

``to_geodataframe(ds, "max_depth")`` gives a GeoDataFrame to write as GeoPackage or GeoParquet
and open in QGIS or ArcGIS (geopandas and shapely: ``pip install dask-hecras[geo]``).
``plot_map(ds.max_depth)`` and ``plot_maps(study)`` draw on the mesh with matplotlib alone.
"""

from __future__ import annotations

import re
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


def _source(obj, geometry_from=None, *, first_plan: bool = False) -> Path | None:
    """The HDF holding the cells' outlines: ``geometry_from`` when it is a path; else the results
    HDF the summary came from (an attribute, or a ``plan`` coordinate once stacked) of
    ``geometry_from`` or ``obj``. Of several plans, the first with ``first_plan``; else refused
    (their meshes may differ)."""
    if geometry_from is not None and not isinstance(geometry_from, (xr.Dataset, xr.DataArray)):
        return Path(geometry_from)
    for candidate in (geometry_from, obj):
        if candidate is None:
            continue
        value = candidate.attrs.get("source_file") or (
            candidate.coords["source_file"].values if "source_file" in candidate.coords else None)
        if value is None:
            continue
        value = np.asarray(value)
        if value.ndim and not first_plan:
            raise ValueError("several plans: pick one first, e.g. to_geodataframe(ds.sel(plan='p01'), ...)")
        path = Path(str(value.ravel()[0]))
        if path.is_file():
            return path
    return None


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
        source = _source(ds, geometry_from or None)
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


# --------------------------------------------------------------------------- drawing


def _cells(values: xr.DataArray):
    """(mesh, cell_id) of each value, whether ``cell`` is indexed or not."""
    flat = values.reset_index("cell") if "cell" in values.indexes else values
    return np.asarray(flat["mesh"].values).astype(str), np.asarray(flat["cell_id"].values).astype("int64")


def _outlines(source: Path, meshes: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    """Each wanted cell's outline (a list of (n, 2) arrays, in the order of ``ids``)."""
    out: list = [None] * len(ids)
    for name in np.unique(meshes):
        coords, cell = geometry.cell_rings(source, name)
        bounds = np.searchsorted(cell, np.arange(cell.max() + 2))
        for k in np.flatnonzero(meshes == name):
            out[k] = coords[bounds[ids[k]]:bounds[ids[k] + 1]]
    return out


def _style(name: str, units: str, values: np.ndarray, diverging: bool | None):
    """Colour map and limits: depth from 0 in blues, differences around 0 in red-blue, else viridis."""
    finite = values[np.isfinite(values)]
    top = float(np.nanmax(np.abs(finite))) if finite.size else 1.0
    if diverging or (diverging is None and ("minus" in name or "difference" in name)):
        return "RdBu_r", -top, top
    if "depth" in name:
        return "Blues", 0.0, float(finite.max()) if finite.size else 1.0
    return "viridis", float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 1.0


def _crs_name(obj) -> str:
    """The CRS's own name from its WKT (``NAD_1983_StatePlane_...``), for the axis label."""
    wkt = obj.coords["spatial_ref"].attrs.get("crs_wkt", "") if "spatial_ref" in obj.coords else ""
    m = re.match(r'\s*(?:PROJCS|GEOGCS|PROJCRS|GEOGCRS)\["([^"]+)"', wkt)
    return m.group(1) if m else ""


def plot_map(values: xr.DataArray, *, ax=None, geometry_from=None, dry: float | None = 0.01,
             diverging: bool | None = None, cmap=None, vmin=None, vmax=None, title: str | None = None):
    """Draw one plan's (or one statistic's) values over the mesh, one polygon per cell.

    Depth starts at 0 in blues with dry cells (below ``dry``) left blank; differences are drawn
    around 0 in red and blue; axes are in the CRS's units, equal in x and y. ``geometry_from``
    is the plan HDF (or the study dataset) to take cell outlines from when ``values`` does not
    carry its ``source_file``. Returns the matplotlib collection.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    if values.dims != ("cell",):
        raise ValueError(f"{values.name}: one value per cell to draw (dims {values.dims}); pick a plan or a time first")
    meshes, ids = _cells(values)
    data = np.asarray(values.values, dtype="float64")
    name, units = str(values.name or ""), values.attrs.get("units", "")
    style_cmap, lo, hi = _style(name, units, data, diverging)
    if dry is not None and "depth" in name and not diverging:
        data = np.where(data > dry, data, np.nan)
    source = _source(values, geometry_from, first_plan=True)
    if source is None:
        raise ValueError("no results HDF to draw the cells from: give geometry_from=<plan HDF, or the study dataset>")
    polys = PolyCollection(_outlines(source, meshes, ids), array=np.ma.masked_invalid(data),
                           cmap=cmap or style_cmap, edgecolors="none")
    polys.set_clim(lo if vmin is None else vmin, hi if vmax is None else vmax)
    ax = ax or plt.gca()
    ax.add_collection(polys)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")  # full coordinates, not an offset of 1e6
    crs = _crs_name(values)
    length = values.coords["x"].attrs.get("units", "") if "x" in values.coords else ""
    ax.set_xlabel(f"x [{length}]" + (f"  {crs}" if crs else ""))
    ax.set_ylabel(f"y [{length}]")
    ax.figure.colorbar(polys, ax=ax, label=f"{name} [{units}]" if units else name, shrink=0.8)
    ax.set_title(title if title is not None else name)
    return polys


def plot_maps(study: xr.Dataset, variable: str = "max_depth", plans=None, *, col_wrap: int = 3, **kwargs):
    """Small multiples: ``variable`` of several plans (default all) side by side, one colour
    scale for all. Returns the figure."""
    import matplotlib.pyplot as plt

    plans = list(study["plan"].values if plans is None else plans)
    rows = -(-len(plans) // col_wrap)
    cols = min(col_wrap, len(plans))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.8 * rows), squeeze=False)
    values = study[variable].sel(plan=plans)
    _, lo, hi = _style(variable, "", np.asarray(values.values, dtype="float64"), kwargs.get("diverging"))
    kwargs.setdefault("vmin", lo)
    kwargs.setdefault("vmax", hi)
    for ax, plan in zip(axes.ravel(), plans):
        one = study[variable].sel(plan=plan)
        label = str(study["plan_name"].sel(plan=plan).values) if "plan_name" in study.coords else ""
        plot_map(one, ax=ax, geometry_from=study.sel(plan=plan), title=f"{plan}: {label}" if label else str(plan),
                 **kwargs)
    for ax in axes.ravel()[len(plans):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
