"""A study as a whole: statistics over the ``plan`` dimension of stacked results.

Each function takes the dataset ``open_results``/``combine`` returns (plans along ``plan``,
cells along ``cell``) and gives an xarray object back with units kept. They are plain xarray
operations, so a study chunked with dask (``ds.chunk({"cell": 100_000})``) stays lazy and a
study larger than memory works; nothing here computes until asked.

    env = ensemble.envelope(ds)                              # highest water per cell, and which plan
    p = ensemble.exceedance(ds, 0.5, weights=event_weights)  # chance a cell gets over 0.5 m deep
    aep = ensemble.exceedance(ds, 0.5, rates=annual_rates)   # annual exceedance probability
    q = ensemble.percentile(ds, [50, 90])
    d = ensemble.difference(ds, base="p01")                  # every plan minus the base plan
    a = ensemble.flooded(ds)                                 # wet area and volume per plan
"""

from __future__ import annotations

import numpy as np
import xarray as xr

PLAN = "plan"


def _weights(ds: xr.Dataset, values, name: str) -> xr.DataArray:
    """Per-plan weights as a DataArray along ``plan`` (a dict by plan id, a sequence in plan
    order, or a DataArray)."""
    if isinstance(values, xr.DataArray):
        return values
    plans = list(ds[PLAN].values)
    if isinstance(values, dict):
        missing = [p for p in plans if p not in values]
        if missing:
            raise ValueError(f"{name}: no value for plan(s) {missing}")
        values = [values[p] for p in plans]
    values = np.asarray(values, dtype="float64")
    if values.shape != (len(plans),):
        raise ValueError(f"{name}: {values.shape[0] if values.ndim else 1} values for {len(plans)} plans")
    if (values < 0).any():
        raise ValueError(f"{name}: weights cannot be negative")
    return xr.DataArray(values, dims=PLAN, coords={PLAN: plans})


def envelope(ds: xr.Dataset, variable: str = "max_water_surface") -> xr.Dataset:
    """The highest value over plans per cell (``envelope``) and the plan that set it
    (``envelope_plan``; empty where no plan has a value)."""
    da = ds[variable]
    top = da.max(PLAN, skipna=True)
    # idxmax is lazy on dask; cells no plan reached get a placeholder, then an empty label
    which = da.fillna(-np.inf).idxmax(PLAN).where(da.notnull().any(PLAN), "")
    top.attrs = dict(da.attrs, long_name=f"envelope of {variable} over plans")
    return xr.Dataset({"envelope": top, "envelope_plan": which})


def exceedance(ds: xr.Dataset, threshold: float, variable: str = "max_depth", *,
               weights=None, rates=None) -> xr.DataArray:
    """Per cell, how likely ``variable`` exceeds ``threshold`` across the plans.

    ``weights``: each plan's probability weight (normalised here; default equal): the weighted
    share of plans over the threshold, among those with a value at the cell.
    ``rates``: each event's annual rate of occurrence (stochastic events): the annual
    exceedance probability ``1 - exp(-sum of the rates of events over the threshold)``.
    """
    if weights is not None and rates is not None:
        raise ValueError("give weights (a probability per plan) or rates (annual rates per event), not both")
    da = ds[variable]
    over = (da > threshold).where(da.notnull())
    units = da.attrs.get("units", "")
    if rates is not None:
        rate = (over.fillna(0) * _weights(ds, rates, "rates")).sum(PLAN)
        out = 1 - np.exp(-rate)
        out.attrs = {"long_name": f"annual exceedance probability of {variable} > {threshold:g} {units}".strip(),
                     "units": "1"}
        return out
    w = _weights(ds, weights, "weights") if weights is not None else xr.ones_like(ds[PLAN], dtype="float64")
    out = (over.fillna(0) * w).sum(PLAN) / (over.notnull() * w).sum(PLAN)
    out.attrs = {"long_name": f"probability of {variable} > {threshold:g} {units}".strip(), "units": "1"}
    return out


def percentile(ds: xr.Dataset, q, variable: str = "max_depth") -> xr.DataArray:
    """Percentiles (0–100) of ``variable`` over plans per cell, NaN-aware."""
    da = ds[variable]
    if da.chunks is not None:
        da = da.chunk({PLAN: -1})  # a quantile needs every plan of a cell in one block
    out = da.quantile(np.asarray(q, dtype="float64") / 100.0, dim=PLAN, skipna=True)
    out = out.assign_coords(quantile=out["quantile"] * 100.0).rename(quantile="percentile")
    out.attrs = dict(da.attrs)
    return out


def difference(ds: xr.Dataset, base: str, variable: str = "max_water_surface") -> xr.DataArray:
    """Every plan's ``variable`` minus the ``base`` plan's (the difference a culvert makes);
    NaN where either has no value."""
    if base not in ds[PLAN].values:
        raise KeyError(f"base plan {base!r} is not among the plans: {list(ds[PLAN].values)}")
    da = ds[variable]
    out = da - da.sel({PLAN: base}, drop=True)
    out.attrs = dict(da.attrs, long_name=f"{variable} minus plan {base}")
    out.name = f"{variable}_minus_base"
    return out


def flooded(ds: xr.Dataset, depth: float = 0.01, variable: str = "max_depth", area: str = "cell_area") -> xr.Dataset:
    """Per plan: the area of cells deeper than ``depth`` (``flooded_area``) and the water they
    hold at that depth (``flooded_volume``, depth times cell area)."""
    if area not in ds:
        raise KeyError(f"no {area!r} in the results: cell areas come from the plan's geometry (Cells Surface Area)")
    d, a = ds[variable], ds[area]
    wet = d > depth
    length = d.attrs.get("units", "")
    out = xr.Dataset({
        "flooded_area": a.where(wet).sum("cell"),
        "flooded_volume": (d * a).where(wet).sum("cell"),
    })
    out["flooded_area"].attrs = {"units": a.attrs.get("units", ""), "long_name": f"area deeper than {depth:g} {length}"}
    out["flooded_volume"].attrs = {"units": f"{length}3" if length else "",
                                   "long_name": f"water over cells deeper than {depth:g} {length}"}
    return out
