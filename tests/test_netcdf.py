"""The netCDF-4 writer: what it writes reads back identically through xarray's two netCDF-4 readers
(h5netcdf and the netCDF-C library behind netCDF4), and HDF5's own dimension-scale API agrees."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from dask_hecras.netcdf import write_netcdf
from dask_hecras.results import combine, open_results, summary_files
from dask_hecras.summary import write_summary


def odd_dataset(plan: str = "p01", scale: float = 1.0) -> xr.Dataset:
    """What a summary can hold, with the awkward cases: NaT, non-ASCII and empty text, booleans,
    text variables and a text dimension coordinate, a scalar coordinate, no-coordinate dimensions."""
    times = np.array(["2026-01-01T00:00", "NaT", "2026-01-01T06:30"], "datetime64[ms]")
    return xr.Dataset(
        {
            "max_depth": ("cell", np.array([0.0, 1.5, np.nan, 2.25], "float32") * scale, {"units": "m"}),
            "max_depth_time": ("cell", np.concatenate([times, times[:1]]), {"long_name": "when"}),
            "wet": ("cell", np.array([False, True, False, True])),
            "last_to_converge": ("cell", np.array([1, 2, 3, 4], "int32")),
            "note": ("line", np.array(["Überlauf", "", "weir crest"], dtype=object)),
            "flow": (("time", "line"), np.arange(9.0).reshape(3, 3) * scale, {"units": "m3/s", "valid": [0, 9]}),
            "run_length": ((), np.timedelta64(90, "s")),
        },
        coords={
            "mesh": ("cell", np.array(["Fläche", "Fläche", "Main", "Main"], dtype=object)),
            "cell_id": ("cell", np.arange(4)),
            "line": ("line", np.array(["Upstream", "Downstream", "Süd"])),
            "time": ("time", times[[0, 2, 2]] + np.array([0, 0, 1], "timedelta64[h]")),
            "spatial_ref": ((), np.int32(0), {"crs_wkt": 'PROJCS["ETRS89 / UTM 32N"]'}),
        },
        attrs={"plan_id": plan, "plan_name": "Étude 100-year", "run_seconds": 12.5, "hecras_version": "6.6",
               "flags": np.array([1, 2], "int16")},
    )


@pytest.mark.parametrize("engine", ["h5netcdf", "netcdf4"])
def test_what_is_written_reads_back_identical(tmp_path, engine):
    ds = odd_dataset()
    path = tmp_path / "s.nc"
    write_netcdf(ds, path)
    with xr.open_dataset(path, engine=engine) as back:
        back = back.load()
    xr.testing.assert_identical(back, ds)
    assert back["max_depth_time"].values[1] != back["max_depth_time"].values[1]  # NaT stays NaT
    assert list(back["note"].values) == ["Überlauf", "", "weir crest"]
    assert back["wet"].dtype == bool and back.attrs["plan_name"] == "Étude 100-year"


def test_hdf5_sees_the_dimension_scales_netcdf_readers_use(tmp_path):
    path = tmp_path / "s.nc"
    write_netcdf(odd_dataset(), path)
    with h5py.File(path, "r") as f:
        assert f["cell"].is_scale and f["line"].is_scale and f["time"].is_scale
        for name in ("max_depth", "wet", "note", "flow", "mesh"):
            d = f[name]
            for axis in range(d.ndim):
                (scale,) = d.dims[axis].values()
                assert h5py.h5ds.is_attached(d.id, scale.id, axis), (name, axis)
        assert [d.name for d in (f["flow"].dims[0][0], f["flow"].dims[1][0])] == ["/time", "/line"]
        assert f["max_depth"].dims[0][0].attrs["NAME"].startswith(b"This is a netCDF dimension but not")
        assert f["line"].attrs["_Netcdf4Coordinates"].tolist() == [
            f["line"].attrs["_Netcdf4Dimid"], f["string10"].attrs["_Netcdf4Dimid"]]  # text's characters


def test_the_fingerprint_follows_the_layout_not_the_values(tmp_path):
    one, two = odd_dataset("p01", 1.0), odd_dataset("p02", 2.0)
    assert write_netcdf(one, tmp_path / "a.nc") == write_netcdf(two, tmp_path / "b.nc")
    other = one.assign_coords(cell_id=("cell", np.arange(4) + 10))
    assert write_netcdf(other, tmp_path / "c.nc") != write_netcdf(one, tmp_path / "a.nc")
    seen = {}
    write_netcdf(one, tmp_path / "d.nc", more_attrs=lambda key: seen.setdefault("x", {"layout_of": key}))
    with h5py.File(tmp_path / "d.nc", "r") as f:
        assert f.attrs["layout_of"] == seen["x"]["layout_of"]


def test_what_cannot_be_written_is_named(tmp_path):
    ds = odd_dataset()
    with pytest.raises(TypeError, match="'bad'"):
        write_netcdf(ds.assign(bad=("cell", np.array([1, "a", None, 2.0], dtype=object))), tmp_path / "a.nc")
    with pytest.raises(TypeError, match="'lookup'"):
        write_netcdf(ds.assign_attrs(lookup={"a": 1}), tmp_path / "b.nc")


def test_a_study_of_such_summaries_opens_straight_and_as_the_general_path(tmp_path):
    """The study reader's fast path decodes times with NaT, booleans and text variables as xarray does."""
    for k in range(3):
        out = tmp_path / "Demo" / f"p0{k + 1}"
        out.mkdir(parents=True)
        write_summary(odd_dataset(f"p0{k + 1}", 1.0 + k), out / "summary.nc")
    fast = open_results(tmp_path)
    general = combine(summary_files(tmp_path))
    assert fast["wet"].dtype == bool and fast["note"].dtype == object
    for v in ("max_depth", "max_depth_time", "wet", "note", "flow", "run_length"):
        np.testing.assert_array_equal(fast[v].values, general[v].transpose(*fast[v].dims).values, err_msg=v)
    assert fast["flow"].sel(plan="p03").values.max() == 24.0
