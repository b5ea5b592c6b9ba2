"""summarise() gives the numbers HEC-RAS wrote, on real files and on the fake engine's."""

from __future__ import annotations

import json
import pickle

import dask
import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dask_hecras import Project, combine, open_results, run_plan, summarise

BASE = "Results/Unsteady/Output/Output Blocks/Base Output"


@pytest.fixture
def bald_eagle(realdata):
    return realdata / "results" / "BaldEagleDamBrk.p18.hdf"


def _seconds(values) -> np.ndarray:
    return np.asarray(values).astype("datetime64[s]")


def test_bald_eagle_cells_equal_rashdf_reference(bald_eagle):
    ds = summarise(bald_eagle)
    ref = pd.read_csv(bald_eagle.with_name("BaldEagleDamBrk.summary-cells.csv"), index_col=0)
    assert ds.sizes["cell"] == len(ref) == 3359 + 1066  # real cells only: ghost cells left out
    np.testing.assert_array_equal(ds["mesh"].values, ref["mesh_name"].values)
    np.testing.assert_array_equal(ds["cell_id"].values, ref["cell_id"].values)
    for var, col in (("max_water_surface", "max_ws"), ("min_water_surface", "min_ws")):
        np.testing.assert_allclose(ds[var].values, ref[col].values.astype("float32"), rtol=1e-6)
        np.testing.assert_array_equal(_seconds(ds[f"{var}_time"].values), _seconds(pd.to_datetime(ref[f"{col}_time"])))
    assert ds["max_water_surface"].attrs["units"] == "ft"


def test_bald_eagle_faces_equal_rashdf_reference(bald_eagle):
    ds = summarise(bald_eagle)
    ref = pd.read_csv(bald_eagle.with_name("BaldEagleDamBrk.summary-faces.csv"), index_col=0)
    assert ds.sizes["face"] == len(ref)
    np.testing.assert_array_equal(ds["face_mesh"].values, ref["mesh_name"].values)
    np.testing.assert_array_equal(ds["face_id"].values, ref["face_id"].values)
    np.testing.assert_allclose(ds["max_face_velocity"].values, ref["max_v_x"].values.astype("float32"), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ds["min_face_velocity"].values, ref["min_v"].values.astype("float32"), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(_seconds(ds["max_face_velocity_time"].values), _seconds(pd.to_datetime(ref["max_v_time_x"])))
    np.testing.assert_array_equal(_seconds(ds["min_face_velocity_time"].values), _seconds(pd.to_datetime(ref["min_v_time"])))
    assert ds.attrs["plan_id"] == "p18" and ds.attrs["hecras_version"] == "6.5"
    assert ds.attrs["simulation_start"] == "1999-01-01T12:00:00"


def test_baxter_steady_water_surface_equals_reference(realdata):
    hdf = realdata / "results" / "Baxter.p01.hdf"
    ds = summarise(hdf)
    ref = json.loads(hdf.with_name("Baxter.xs_wsel.json").read_text())["Big"]
    expected = np.array([ref[str(i)] for i in range(len(ref))])
    got = ds["xs_water_surface"].sel(profile="Big").values
    assert got.shape == expected.shape == (173,)
    np.testing.assert_allclose(np.round(got.astype("float64"), 2), expected, atol=1e-9)
    assert ds["xs_water_surface"].attrs["units"] == "ft"
    assert list(ds["river"].values[:2]) == ["Baxter River", "Baxter River"] and ds["station"].values[0] == "84816."
    assert ds.attrs["run_seconds"] == pytest.approx(2.891)


def test_fake_files_give_the_same_variables_as_real_ones(bald_eagle, realdata, demo, tmp_path):
    from .test_fake_ras import add_steady_plan, fake

    fake(demo, "p01")
    real_2d, fake_2d = summarise(bald_eagle, time_series=False), summarise(demo.with_suffix(".p01.hdf"), time_series=False)
    assert set(real_2d.data_vars) <= set(fake_2d.data_vars)
    for v in real_2d.data_vars:
        assert real_2d[v].dims == fake_2d[v].dims and real_2d[v].dtype == fake_2d[v].dtype
    assert set(real_2d.coords) == set(fake_2d.coords)
    add_steady_plan(demo)
    fake(demo, "p09")
    real_1d, fake_1d = summarise(realdata / "results" / "Baxter.p01.hdf"), summarise(demo.with_suffix(".p09.hdf"))
    assert set(real_1d.data_vars) == set(fake_1d.data_vars)
    assert {v: real_1d[v].dims for v in real_1d.data_vars} == {v: fake_1d[v].dims for v in fake_1d.data_vars}


def test_time_series_are_lazy_and_exact(demo):
    from .test_fake_ras import fake

    fake(demo, "p01")
    hdf = demo.with_suffix(".p01.hdf")
    ds = summarise(hdf)
    ws = ds["water_surface"]
    assert isinstance(ws.data, dask.array.Array) and ws.dims == ("time", "cell")
    with h5py.File(hdf) as f:
        raw = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/Floodplain/Water Surface"][()]
        count = f["Geometry/2D Flow Areas/Attributes"]["Cell Count"][0]
    np.testing.assert_array_equal(ws.values, raw[:, :count])
    assert ds.sizes["time"] == raw.shape[0] and ds["time"].values[0] == np.datetime64("2026-01-01T00:00")
    # the maxima of the series are the maxima HEC-RAS stored
    np.testing.assert_allclose(ws.max("time").values, ds["max_water_surface"].values)
    assert ds["face_velocity"].dims == ("time", "face")
    assert ds["refpoint_water_surface"].dims == ("time", "refpoint")
    assert list(ds["refpoint"].values) == ["Village gauge", "Farm"]
    assert list(ds["refline_mesh"].values) == ["Floodplain"]
    # picklable without an open file: it can go to a Dask worker
    again = pickle.loads(pickle.dumps(ws))
    np.testing.assert_array_equal(again.values, ws.values)


def test_unsteady_cross_sections_on_real_muncie_geometry(realdata, tmp_path):
    from .conftest import copy_muncie
    from .test_fake_ras import fake

    prj = copy_muncie(realdata, tmp_path / "muncie")
    fake(prj, "p01")
    ds = summarise(prj.with_suffix(".p01.hdf"))
    assert ds["xs_water_surface"].dims == ("time", "cross_section")
    assert ds.sizes["cross_section"] == 61 and ds["river"].values[0] == "White" and ds["station"].values[0] == "15696.24"
    assert ds["xs_flow"].attrs["units"] == "cfs"
    assert set(ds["mesh"].values) == {"2D Interior Area", "Perimeter_NW"}
    assert ds.sizes["cell"] == 5271 + 519


def test_missing_groups_are_left_out(tmp_path):
    path = tmp_path / "X.p01.hdf"
    with h5py.File(path, "w") as f:
        f.attrs["File Type"] = np.bytes_(b"HEC-RAS Results")
    ds = summarise(path)
    assert len(ds.data_vars) == 0 and ds.attrs["plan_id"] == ""


def test_combine_and_open_results(tmp_path):
    from dask_hecras.examples import make_project

    a = make_project(tmp_path / "a", n_plans=2)
    b = make_project(tmp_path / "b", n_plans=1, name="Small", cells=(6, 4))
    results_dir = tmp_path / "results"
    runs = [run_plan(p, results_dir=results_dir) for p in Project(a).plans + Project(b).plans]
    (a.parent / "fake-ras.json").write_text(json.dumps({"p02": {"seconds": 0.1, "outcome": "unstable"}}))
    failed = run_plan(Project(a).plan("p02"), results_dir=results_dir)
    assert not failed.ok
    ds = combine(runs + [failed])  # the failed plan has no summary and is left out
    assert list(ds["plan"].values) == ["Demo/p01", "Demo/p02", "Small/p01"]  # ids repeat across projects
    assert list(ds["project"].values) == ["Demo", "Demo", "Small"]
    # different meshes still combine: cells aligned by (mesh, cell_id), NaN where a plan has none
    assert ds.sizes["cell"] == 600
    small = ds["max_water_surface"].isel(plan=2)
    assert int(small.notnull().sum()) == 24
    assert ds["max_water_surface"].attrs["units"] == "m"
    assert (ds["run_seconds"] > 0).all()

    opened = open_results(results_dir)
    assert opened.sizes["plan"] == 3  # the failed retry in p02.failed is not a result
    np.testing.assert_allclose(opened["max_water_surface"].values, ds["max_water_surface"].values)
    with_series = open_results(results_dir, time_series=True)
    assert with_series["water_surface"].dims == ("plan", "time", "cell")
    assert float(with_series["water_surface"].sel(plan="Demo/p01").max()) == pytest.approx(
        float(opened["max_water_surface"].sel(plan="Demo/p01").max()))
    assert isinstance(xr.open_dataset(runs[0].summary, engine="h5netcdf"), xr.Dataset)
