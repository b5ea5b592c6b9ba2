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
    assert set(real_2d.coords) <= set(fake_2d.coords)  # the fake's also has boundary lines
    add_steady_plan(demo)
    fake(demo, "p09")
    real_1d, fake_1d = summarise(realdata / "results" / "Baxter.p01.hdf"), summarise(demo.with_suffix(".p09.hdf"))
    # the fake writes the steady outputs an engineer reads first (HEC-RAS writes some fifty)
    asked = {"xs_water_surface", "xs_flow", "xs_energy_grade", "xs_velocity_total", "xs_velocity_channel",
             "xs_area_flow_total"}
    assert asked <= set(real_1d.data_vars) & set(fake_1d.data_vars)
    assert {"xs_encroachment_station_left", "xs_encroachment_station_right"} <= set(fake_1d.data_vars)
    for v in set(real_1d.data_vars) & set(fake_1d.data_vars):
        assert real_1d[v].dims == fake_1d[v].dims and bool(real_1d[v].attrs["units"]) == bool(fake_1d[v].attrs["units"])


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


# --------------------------------------------------------------------------- geometry (issue 13)


def test_bald_eagle_cell_centres_equal_rashdf_reference(bald_eagle):
    """Cell centres in the file's CRS; rashdf's reference holds them reprojected to lon/lat."""
    pyproj = pytest.importorskip("pyproj")
    ds = summarise(bald_eagle)
    ref = json.loads(bald_eagle.with_name("bald-eagle-mesh-cell-points.geojson").read_text())["features"]
    assert [f["properties"]["mesh_name"] for f in ref] == list(ds["mesh"].values)
    assert [f["properties"]["cell_id"] for f in ref] == list(ds["cell_id"].values)
    crs = pyproj.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"])
    assert crs.name == "NAD83 / Pennsylvania North (ftUS)" and ds["x"].attrs["units"] == "ft"
    lon, lat = pyproj.Transformer.from_crs(crs, "OGC:CRS84", always_xy=True).transform(ds["x"].values, ds["y"].values)
    expected = np.array([f["geometry"]["coordinates"] for f in ref])
    np.testing.assert_array_equal(np.column_stack([lon, lat]), expected)
    np.testing.assert_array_equal(ds["max_water_surface"].values, np.array([f["properties"]["max_ws"] for f in ref], "float32"))
    assert ds["max_water_surface"].attrs["grid_mapping"] == "spatial_ref"
    # every summary output is kept: run health per cell, starting differences per face
    assert {"max_water_surface_error", "cumulative_max_iterations", "last_to_converge"} <= set(ds.data_vars)
    assert ds["max_water_surface_error"].dims == ("cell",) and ds["starting_differences_velocity_difference"].dims == ("face",)


def test_lower_kanawha_boundary_line_equals_rashdf_reference(realdata):
    hdf = realdata / "results" / "LowerKanawha.p01.bclines.hdf"
    ds = summarise(hdf)
    ref = pd.read_csv(hdf.with_name("LowerKanawha.p01.bclines.7.csv"))
    line = ds.sel(bc_line="Kanawha")
    assert int(line["bc_line_id"]) == 7 and line["bc_line_type"] == "External" and line["bc_line_mesh"] == "LKLE"
    np.testing.assert_array_equal(line["bc_flow"].values, ref["Flow"].values.astype("float32"))
    np.testing.assert_array_equal(line["bc_stage"].values, ref["Stage"].values.astype("float32"))
    np.testing.assert_array_equal(_seconds(ds["time"].values), _seconds(pd.to_datetime(ref["time"])))
    assert ds["bc_flow"].attrs["units"] == "cfs" and ds["bc_stage"].attrs["units"] == "ft"
    assert ds.sizes["bc_line"] == 10 and list(ds["bc_line_id"].values) == list(range(10))
    faces = ds["bc_face_flow"].where(ds["bc_face_line"] == "Kanawha", drop=True)
    assert isinstance(ds["bc_face_flow"].data, dask.array.Array)  # per face: lazy
    assert list(faces["bc_face_index"].values) == [41583, 41899, 42702]  # from the geometry's External Faces
    with h5py.File(hdf) as f:
        raw = f[f"{BASE}/Unsteady Time Series/Boundary Conditions/Kanawha - Flow per Face"][()]
    np.testing.assert_array_equal(faces.values, raw)


def test_boundary_lines_in_the_hec_ras_6_6_layout(realdata, tmp_path):
    """6.6 nests boundary-line output under its mesh."""
    src = realdata / "results" / "LowerKanawha.p01.bclines.hdf"
    moved = tmp_path / "LowerKanawha.p01.hdf"
    with h5py.File(src) as f, h5py.File(moved, "w") as g:
        f.copy("Geometry", g)
        ts = f[f"{BASE}/Unsteady Time Series"]
        out = g.create_group(f"{BASE}/Unsteady Time Series")
        ts.copy("Time Date Stamp (ms)", out)
        ts.copy("Boundary Conditions", out.require_group("2D Flow Areas/LKLE"))
    assert summarise(moved)["bc_flow"].equals(summarise(src)["bc_flow"])


def test_muncie_cell_polygons_match_hec_ras_cell_areas(realdata):
    shapely = pytest.importorskip("shapely")
    from dask_hecras.geometry import cell_polygons

    g05 = realdata / "muncie" / "Muncie.g05.hdf"
    polys = cell_polygons(g05)
    with h5py.File(g05) as f:
        m = f["Geometry/2D Flow Areas/2D Interior Area"]
        area = m["Cells Surface Area"][:5271]
        ring = m["Cells FacePoint Indexes"][0]
        points = m["FacePoints Coordinate"][()]
    assert len(polys) == 5271 + 519 and shapely.is_valid(polys).all()
    np.testing.assert_allclose(shapely.area(polys[:5271]), area, rtol=1e-6)  # HEC-RAS's own areas, float32
    straight = np.asarray(polys[1].exterior.coords)[:-1]
    assert len(straight) == 4  # and its corners are the cell's face points, in HEC-RAS's order
    with h5py.File(g05) as f:
        ring1 = f["Geometry/2D Flow Areas/2D Interior Area/Cells FacePoint Indexes"][1]
    np.testing.assert_array_equal(straight, points[ring1[ring1 >= 0]])
    assert len(np.asarray(polys[0].exterior.coords)) - 1 > (ring >= 0).sum()  # a curved perimeter face's points kept


def test_geometry_comes_from_the_geometry_hdf_beside_a_plan_file_without_it(bald_eagle, tmp_path):
    plan = tmp_path / "BaldEagleDamBrk.p18.hdf"
    with h5py.File(bald_eagle) as f, h5py.File(plan, "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        f.copy("Plan Data", g)
        f.copy("Results", g)
        g.create_dataset("Geometry/2D Flow Areas/Attributes", data=f["Geometry/2D Flow Areas/Attributes"][()])
        with h5py.File(tmp_path / "BaldEagleDamBrk.g11.hdf", "w") as geo:
            f.copy("Geometry", geo)
    beside, whole = summarise(plan), summarise(bald_eagle)
    np.testing.assert_array_equal(beside["x"].values, whole["x"].values)
    np.testing.assert_array_equal(beside["face_end_y"].values, whole["face_end_y"].values)
    pytest.importorskip("shapely")
    from dask_hecras.geometry import cell_polygons

    assert len(cell_polygons(plan)) == 4425


def test_depth_is_water_over_the_bed_and_never_negative(demo):
    from .test_fake_ras import fake

    assert fake(demo, "p01").returncode == 0
    ds = summarise(demo.with_suffix(".p01.hdf"))
    bed = ds["bed_elevation"].values
    np.testing.assert_allclose(ds["max_depth"].values, np.maximum(ds["max_water_surface"].values - bed, 0), rtol=1e-6)
    assert (ds["max_depth"] >= 0).all() and ds["max_depth"].attrs["units"] == "m"
    depth = ds["depth"]
    assert isinstance(depth.data, dask.array.Array) and depth.dims == ("time", "cell")
    assert float(depth.min()) >= 0
    np.testing.assert_allclose(depth.max("time").values, ds["max_depth"].values, rtol=1e-6, atol=1e-6)
    assert "ETRS_1989_UTM_Zone_32N" in ds["spatial_ref"].attrs["crs_wkt"]  # the project's projection


def test_to_geodataframe_writes_a_layer_qgis_opens(demo, tmp_path):
    geopandas = pytest.importorskip("geopandas")
    from dask_hecras import to_geodataframe

    from .test_fake_ras import fake

    assert fake(demo, "p01").returncode == 0
    ds = summarise(demo.with_suffix(".p01.hdf"))
    cells = to_geodataframe(ds, ["max_depth", "max_water_surface"])
    assert len(cells) == ds.sizes["cell"] and cells.crs is not None and "UTM" in cells.crs.name
    assert cells.geometry.geom_type.eq("Polygon").all()
    centres = geopandas.GeoSeries(geopandas.points_from_xy(ds["x"].values, ds["y"].values), crs=cells.crs)
    assert cells.geometry.contains(centres).all()
    np.testing.assert_array_equal(cells["max_depth"].values, ds["max_depth"].values)
    layer = tmp_path / "depth.gpkg"
    cells.to_file(layer, layer="max_depth")
    back = geopandas.read_file(layer)
    assert len(back) == len(cells) and back.crs == cells.crs
    faces = to_geodataframe(ds, "max_face_velocity")
    assert faces.geometry.geom_type.eq("LineString").all() and len(faces) == ds.sizes["face"]
    with pytest.raises(ValueError, match="pick a time or a plan"):
        to_geodataframe(ds, "depth")


def test_hec_ras_5_0_time_window_gives_the_start(bald_eagle, tmp_path):
    """5.0 writes no Simulation Start Time, only the Time Window: maxima times still read."""
    old = tmp_path / "BaldEagleDamBrk.p18.hdf"
    old.write_bytes(bald_eagle.read_bytes())
    with h5py.File(old, "a") as f:
        info = f["Plan Data/Plan Information"].attrs
        del info["Simulation Start Time"], info["Simulation End Time"]
        info["Time Window"] = b"01Jan1999 12:00:00 to 04Jan1999 12:00:00"
    ds, ref = summarise(old), summarise(bald_eagle)
    assert ds.attrs["simulation_start"] == "1999-01-01T12:00:00" and ds.attrs["simulation_end"] == "1999-01-04T12:00:00"
    np.testing.assert_array_equal(ds["max_water_surface_time"].values, ref["max_water_surface_time"].values)
