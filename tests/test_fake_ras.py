"""The fake engine writes what HEC-RAS 6.x writes, and fails the way it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dask_hecras import Project
from dask_hecras.engines import FakeRas
from dask_hecras.engines.runner import run_process
from dask_hecras.summary import summarise

BASE = "Results/Unsteady/Output/Output Blocks/Base Output"


def fake(prj: Path, plan_id: str, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(prj.with_suffix(f".{plan_id}")), *extra],
                          capture_output=True, text=True, timeout=timeout)


def set_behaviour(prj: Path, table: dict) -> None:
    (prj.parent / "fake-ras.json").write_text(json.dumps(table))


def add_steady_plan(prj: Path) -> None:
    folder = prj.parent
    (folder / "Demo.f01").write_bytes(b"Flow Title=Steady flows\r\nProgram Version=6.60\r\nNumber of Profiles= 2\r\n"
                                      b"Profile Names=Big,Small\r\n")
    (folder / "Demo.p09").write_bytes(b"Plan Title=Steady check\r\nProgram Version=6.60\r\nShort Identifier=steady\r\n"
                                      b"Geom File=g01\r\nFlow File=f01\r\n")
    text = prj.read_bytes().replace(b"Plan File=p01", b"Flow File=f01\r\nPlan File=p01\r\nPlan File=p09")
    prj.write_bytes(text)


def test_success_has_the_hecras_layout(demo):
    r = fake(demo, "p01")
    assert r.returncode == 0, r.stderr
    hdf = demo.with_suffix(".p01.hdf")
    assert hdf.is_file() and not demo.with_suffix(".p01.tmp.hdf").exists()
    messages = demo.parent / "Demo.p01.computeMsgs.txt"
    assert b"\r\n" in messages.read_bytes()
    with h5py.File(hdf) as f:
        assert f.attrs["File Type"] == b"HEC-RAS Results"
        assert f.attrs["File Version"].startswith(b"HEC-RAS 6.")
        assert f["Event Conditions"].attrs["Completed Successfully"] == b"True"
        info = f["Plan Data/Plan Information"].attrs
        assert info["Plan Filename"] == b"Demo.p01" and info["Simulation Start Time"] == b"01Jan2026 00:00:00"
        text = f["Results/Summary/Compute Messages (text)"][0].decode()
        assert text == messages.read_bytes().decode()
        assert "Computations Summary" in text and "\nComplete Process\t" in text
        assert "Finished Unsteady Flow Simulation" in text
        assert "Overall Volume Accounting Error as percentage:" in text
        procs = f["Results/Summary/Compute Processes"][()]
        assert set(procs.dtype.names) >= {"Process", "Filename", "Compute Time", "Compute Time (ms)"}
        va = f["Results/Unsteady/Summary/Volume Accounting"].attrs
        assert {"Error", "Error Percent", "Volume Starting", "Volume Ending",
                "Total Boundary Flux of Water In", "Total Boundary Flux of Water Out"} <= set(va)
        assert f["Results/Unsteady/Summary"].attrs["Solution"] == b"Unsteady Finished Successfully"
        (name, count), = [(r["Name"].decode(), r["Cell Count"]) for r in f["Geometry/2D Flow Areas/Attributes"][()]]
        ws = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/{name}/Water Surface"]
        assert ws.shape[1] > count, "arrays carry ghost cells beyond Cell Count"
        assert ws.compression == "gzip" and ws.chunks is not None
        bed = f[f"Geometry/2D Flow Areas/{name}/Cells Minimum Elevation"][:count]
        values = ws[:, :count]
        assert (values >= bed - 1e-3).all(), "water surface above the bed"
        assert np.ptp(values, axis=0).max() > 0.5, "water surface varies in time"
        stamps = f[f"{BASE}/Unsteady Time Series/Time Date Stamp (ms)"][()]
        assert stamps[0] == b"01JAN2026 00:00:00:000" and len(stamps) == ws.shape[0]
        smax = f[f"{BASE}/Summary Output/2D Flow Areas/{name}/Maximum Water Surface"]
        assert smax.shape == (2, ws.shape[1])
        np.testing.assert_allclose(smax[0, :count], values.max(axis=0))
        refs = f[f"{BASE}/Unsteady Time Series/Reference Lines/Name"][()]
        assert refs[0] == f"Bridge Road|{name}".encode()


def test_values_are_deterministic_per_plan(demo, tmp_path):
    fake(demo, "p01")
    hdf = demo.with_suffix(".p01.hdf")
    with h5py.File(hdf) as f:
        first = f[f"{BASE}/Summary Output/2D Flow Areas/Floodplain/Maximum Water Surface"][()]
    hdf.unlink()
    fake(demo, "p01")
    fake(demo, "p02")
    with h5py.File(hdf) as f, h5py.File(demo.with_suffix(".p02.hdf")) as g:
        again = f[f"{BASE}/Summary Output/2D Flow Areas/Floodplain/Maximum Water Surface"][()]
        other = g[f"{BASE}/Summary Output/2D Flow Areas/Floodplain/Maximum Water Surface"][()]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[0], other[0])


def test_steady_plan_gets_steady_profiles(demo):
    add_steady_plan(demo)
    assert Project(demo).plan("p09").steady
    assert fake(demo, "p09").returncode == 0
    with h5py.File(demo.with_suffix(".p09.hdf")) as f:
        assert f["Results/Steady/Summary"].attrs["Solution"] == b"Steady Finished Successfully"
        names = f["Results/Steady/Output/Output Blocks/Base Output/Steady Profiles/Profile Names"][()]
        assert list(names) == [b"Big", b"Small"]
        assert "Finished Steady Flow Simulation" in f["Results/Summary/Compute Messages (text)"][0].decode()
    ds = summarise(demo.with_suffix(".p09.hdf"))
    assert ds["xs_water_surface"].dims == ("profile", "cross_section")
    assert list(ds["profile"].values) == ["Big", "Small"]


def test_unstable(demo):
    set_behaviour(demo, {"p01": {"seconds": 0.1, "outcome": "unstable"}})
    r = fake(demo, "p01")
    assert r.returncode == 0
    with h5py.File(demo.with_suffix(".p01.hdf")) as f:
        assert f["Event Conditions"].attrs["Completed Successfully"] == b"False"
        text = f["Results/Summary/Compute Messages (text)"][0].decode()
    assert "went unstable" in text and "Unsteady Flow Simulation Terminated" in text
    assert "Finished Unsteady Flow Simulation" not in text


def test_crash_leaves_tmp_hdf_and_nonzero_exit(demo):
    set_behaviour(demo, {"p02": {"seconds": 0.1, "outcome": "crash"}})
    r = fake(demo, "p02")
    assert r.returncode != 0
    assert demo.with_suffix(".p02.tmp.hdf").exists() and not demo.with_suffix(".p02.hdf").exists()
    assert "Error with program" in r.stdout


def test_no_results(demo):
    set_behaviour(demo, {"p01": {"seconds": 0.1, "outcome": "no-results"}})
    assert fake(demo, "p01").returncode == 0
    assert not list(demo.parent.glob("Demo.p01*.hdf"))


def test_truncated(demo):
    set_behaviour(demo, {"p01": {"seconds": 0.1, "outcome": "truncated"}})
    assert fake(demo, "p01").returncode == 0
    with pytest.raises(OSError):
        h5py.File(demo.with_suffix(".p01.hdf"), "r")


def test_hang_never_exits_until_killed(demo, tmp_path):
    set_behaviour(demo, {"p01": {"seconds": 0.1, "outcome": "hang"}})
    plan = Project(demo).plan("p01")
    r = run_process(FakeRas().command(demo, plan.file, plan), cwd=demo.parent, log=tmp_path / "hang.log", timeout=4)
    assert r.timed_out
    assert demo.with_suffix(".p01.tmp.hdf").exists() and not demo.with_suffix(".p01.hdf").exists()


def test_unknown_outcome_is_a_clear_error(demo):
    set_behaviour(demo, {"p01": {"outcome": "explode"}})
    r = fake(demo, "p01")
    assert r.returncode != 0 and "explode" in r.stderr and "fake-ras.json" in r.stderr


def test_size_option_writes_a_large_mesh(demo):
    assert fake(demo, "p01", "--cells", "50000", "--steps", "7").returncode == 0
    with h5py.File(demo.with_suffix(".p01.hdf")) as f:
        (count,) = f["Geometry/2D Flow Areas/Attributes"]["Cell Count"]
        ws = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/Big Mesh/Water Surface"]
        assert count == 50000 and ws.shape[0] == 7 and ws.shape[1] > 50000
        # a real, regular mesh: its geometry is there and consistent
        m = f["Geometry/2D Flow Areas/Big Mesh"]
        assert f["Geometry/2D Flow Areas/Cell Info"][()].tolist() == [[0, 50000]]
        np.testing.assert_array_equal(f["Geometry/2D Flow Areas/Cell Points"][()], m["Cells Center Coordinate"][:50000])
        assert len(m["Cells Center Coordinate"]) == ws.shape[1] == len(m["Cells Face and Orientation Info"])
        nx, ny = 250, 200  # as square as 50,000 allows
        assert ws.shape[1] == 50000 + 2 * (nx + ny)  # one ghost cell per perimeter face
        assert m["Faces FacePoint Indexes"].shape == m["Faces Cell Indexes"].shape == (2 * nx * ny + nx + ny, 2)
        checks = ring_check(m, 50000)
        assert all(v.all() for v in checks.values())
        assert f.attrs["Projection"].startswith(b"PROJCS[")
        bc = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/Big Mesh/Boundary Conditions"]
        assert bc["Upstream"].shape == (7, 2) and "Downstream - Flow per Face" in bc


def test_real_muncie_geometry_runs(realdata, tmp_path):
    from .conftest import copy_muncie

    prj = copy_muncie(realdata, tmp_path / "muncie")
    assert fake(prj, "p01").returncode == 0
    with h5py.File(prj.with_suffix(".p01.hdf")) as f:
        meshes = {r["Name"].decode().strip(): r["Cell Count"] for r in f["Geometry/2D Flow Areas/Attributes"][()]}
        assert meshes == {"2D Interior Area": 5271, "Perimeter_NW": 519}
        ws = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/2D Interior Area/Water Surface"]
        assert ws.shape == (25, 5643)  # 24 hours hourly + start; ghost cells included
        assert f["Plan Data/Plan Information"].attrs["Simulation End Time"] == b"03Jan1900 00:00:00"
        xs = f["Results/Unsteady/Output/Geometry Info/Cross Section Attributes"][()]
        assert len(xs) == 61 and xs[0]["River"] == b"White"
        assert f.attrs["Projection"].startswith(b'PROJCS["NAD_1983_StatePlane_Indiana_East')  # copied as HEC-RAS does
        # the real geometry's boundary lines (outflows: the inflow is on the 1D river), in 6.6's layout
        out = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/2D Interior Area/Boundary Conditions/2d_out"]
        assert out.shape == (25, 2) and out.attrs["Flow"] == b"cfs" and out.attrs["Stage"] == b"ft"
        faces = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/2D Interior Area/Boundary Conditions/2d_out - Flow per Face"].attrs["Faces"]
        external = f["Geometry/Boundary Condition Lines/External Faces"][()]
        np.testing.assert_array_equal(faces, external["Face Index"][external["BC Line ID"] == 0])
        assert "Perimeter_NW/Boundary Conditions/NW_out" in f[f"{BASE}/Unsteady Time Series/2D Flow Areas"]
        ws = ws[()]
        bed = f["Geometry/2D Flow Areas/2D Interior Area/Cells Minimum Elevation"][:5271]
        assert (ws[:, :5271] >= bed).all() and ((ws[:, :5271] - bed).max(axis=0) > 0.01).any()


# --------------------------------------------------------------------------- geometry and water


MESH = "Geometry/2D Flow Areas/Floodplain"


def ring_check(m: h5py.Group, count: int) -> dict[str, np.ndarray]:
    """Per real cell, whether its faces (``Cells Face and Orientation``) chain into a closed ring
    whose vertices are its ``Cells FacePoint Indexes``, with orientation 1 exactly when the cell
    is the face's cell 0 (HEC-RAS's convention, see test_muncie_uses_the_convention_the_fake_writes)."""
    info = m["Cells Face and Orientation Info"][:count].astype("int64")
    values = m["Cells Face and Orientation Values"][()]
    ab = m["Faces FacePoint Indexes"][()]
    cells_of = m["Faces Cell Indexes"][()]
    ring = m["Cells FacePoint Indexes"][:count]
    starts, counts = info[:, 0], info[:, 1]
    k = np.arange(counts.max())
    valid = k[None, :] < counts[:, None]
    entry = np.minimum(starts[:, None] + k[None, :], len(values) - 1)
    face, orientation = values[entry, 0], values[entry, 1]
    first = np.where(orientation == 1, ab[face, 0], ab[face, 1])
    last = np.where(orientation == 1, ab[face, 1], ab[face, 0])
    following = np.take_along_axis(first, (k[None, :] + 1) % counts[:, None], axis=1)
    padded = np.full((count, ring.shape[1]), -1)
    padded[:, :len(k)] = np.where(valid, first, -1)[:, :ring.shape[1]]
    return {
        "closed": np.where(valid, last == following, True).all(axis=1),
        "vertices": (padded == ring).all(axis=1) & (counts <= ring.shape[1]),
        "orientation": np.where(valid, (orientation == 1) == (cells_of[face, 0] == np.arange(count)[:, None]), True).all(axis=1),
        "own faces": np.where(valid, (cells_of[face] == np.arange(count)[:, None, None]).any(axis=2), True).all(axis=1),
    }


def test_muncie_uses_the_convention_the_fake_writes(realdata):
    """Real HEC-RAS: a cell lists its faces as a ring; orientation 1 when it is the face's
    cell 0 (the ring walks the face from A to B), -1 when it is cell 1; rings run counter-clockwise."""
    with h5py.File(realdata / "muncie" / "Muncie.g05.hdf") as f:
        m = f["Geometry/2D Flow Areas/2D Interior Area"]
        count = 5271
        assert all(v.all() for v in ring_check(m, count).values())
        points, ring = m["FacePoints Coordinate"][()], m["Cells FacePoint Indexes"][0]
        x, y = points[ring[ring >= 0]].T
        assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # counter-clockwise


def test_demo_geometry_is_a_complete_consistent_mesh(demo):
    with h5py.File(demo.with_suffix(".g01.hdf")) as f:
        assert f.attrs["Projection"].decode() == (demo.parent / "Terrain" / "Projection.prj").read_text()
        (name, count), = [(r["Name"].decode(), int(r["Cell Count"])) for r in f["Geometry/2D Flow Areas/Attributes"][()]]
        m = f[MESH]
        assert f["Geometry/2D Flow Areas/Cell Info"][()].tolist() == [[0, count]]
        np.testing.assert_array_equal(f["Geometry/2D Flow Areas/Cell Points"][()], m["Cells Center Coordinate"][:count])
        checks = ring_check(m, count)
        assert all(v.all() for v in checks.values()), {k: int((~v).sum()) for k, v in checks.items()}
        points = m["FacePoints Coordinate"][()]
        ring = m["Cells FacePoint Indexes"][:count]
        x, y = points[ring][..., 0], points[ring][..., 1]
        area = 0.5 * np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1)
        np.testing.assert_allclose(area, m["Cells Surface Area"][:count])  # counter-clockwise, as HEC-RAS
        np.testing.assert_allclose(points[ring].mean(axis=1), m["Cells Center Coordinate"][:count])
        # ghost cells: one per perimeter face, after the real cells, no bed, their one face at -1
        cells_of, ab = m["Faces Cell Indexes"][()], m["Faces FacePoint Indexes"][()]
        perimeter = cells_of[:, 1] >= count
        total = len(m["Cells Center Coordinate"])
        assert sorted(cells_of[perimeter, 1]) == list(range(count, total))
        assert np.isnan(m["Cells Minimum Elevation"][count:]).all() and np.isfinite(m["Cells Minimum Elevation"][:count]).all()
        ghost_info = m["Cells Face and Orientation Info"][count:]
        assert (ghost_info[:, 1] == 1).all()
        assert (m["Cells Face and Orientation Values"][ghost_info[:, 0], 1] == -1).all()
        is_perimeter = np.zeros(len(points), bool)
        is_perimeter[ab[perimeter].ravel()] = True
        np.testing.assert_array_equal(m["FacePoints Is Perimeter"][()], np.where(is_perimeter, -1, 0))
        # faces: normal from cell 0 to cell 1, to the right of A→B; length |AB|; bed no lower than its cells'
        centres = m["Cells Center Coordinate"][()]
        nl = m["Faces NormalUnitVector and Length"][()]
        assert ((centres[cells_of[:, 1]] - centres[cells_of[:, 0]]) * nl[:, :2]).sum(axis=1).min() > 0
        t = points[ab[:, 1]] - points[ab[:, 0]]
        assert (t[:, 0] * nl[:, 1] - t[:, 1] * nl[:, 0]).max() < 0
        np.testing.assert_allclose(np.hypot(t[:, 0], t[:, 1]), nl[:, 2])
        bed = m["Cells Minimum Elevation"][()]
        lowest = np.fmin(bed[cells_of[:, 0]], bed[cells_of[:, 1]])
        assert (m["Faces Minimum Elevation"][()] >= lowest - 1e-4).all()
        assert m["Faces Perimeter Info"][()].any() == False and m["Faces Perimeter Values"].shape == (0, 2)  # noqa: E712
        outline = m["Perimeter"][()]
        assert (outline[0] == outline[-1]).all() and len(outline) == 5
        # boundary lines: upstream on the west edge, downstream on the east edge
        bc = f["Geometry/Boundary Condition Lines"]
        lines = [(r["Name"].decode(), r["SA-2D"].decode(), r["Type"].decode()) for r in bc["Attributes"][()]]
        assert lines == [("Upstream", name, "External"), ("Downstream", name, "External")]
        faces = bc["External Faces"][()]
        west, east = points[:, 0].min(), points[:, 0].max()
        for line_id, edge in ((0, west), (1, east)):
            rows = faces[faces["BC Line ID"] == line_id]
            assert len(rows) == 20 and perimeter[rows["Face Index"]].all()
            assert {tuple(sorted(p)) for p in ab[rows["Face Index"]]} == {tuple(sorted(p)) for p in zip(rows["FP Start Index"], rows["FP End Index"])}
            assert (points[rows["FP Start Index"], 0] == edge).all() and (rows["Station End"] > rows["Station Start"]).all()
            assert (rows["FP End Index"][:-1] == rows["FP Start Index"][1:]).all()  # in order along the line
    flow = demo.with_suffix(".u01").read_text()
    assert "Floodplain      ,                ,Upstream " in flow and "Floodplain      ,                ,Downstream " in flow


def test_demo_geometry_has_hecras_dtypes_and_labels(realdata, demo):
    """Every dataset the demo writes that Muncie (real HEC-RAS) has: same dtype, same columns."""
    with h5py.File(realdata / "muncie" / "Muncie.g05.hdf") as real, h5py.File(demo.with_suffix(".g01.hdf")) as ours:
        for group, real_group in ((MESH, "Geometry/2D Flow Areas/2D Interior Area"),
                                  ("Geometry/2D Flow Areas", "Geometry/2D Flow Areas"),
                                  ("Geometry/Boundary Condition Lines", "Geometry/Boundary Condition Lines")):
            for key, d in ours[group].items():
                if not isinstance(d, h5py.Dataset):
                    continue
                r = real[real_group][key]
                assert d.dtype == r.dtype and d.ndim == r.ndim, key
                if key != "Cells FacePoint Indexes":  # as wide as the widest ring
                    assert d.shape[1:] == r.shape[1:], key
                for attr in ("Column", "Row", "Feature Type"):
                    if attr in r.attrs:
                        assert np.array_equal(d.attrs[attr], r.attrs[attr]), (key, attr)
        assert {"Cells Face and Orientation Info", "FacePoints Coordinate", "Faces NormalUnitVector and Length",
                "Cells FacePoint Indexes", "Perimeter"} <= set(ours[MESH])


def _flow_hydrograph(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Flow Hydrograph="))
    n = int(lines[at].split("=")[1])
    values = [float(row[i:i + 8]) for row in lines[at + 1:at + 1 + (n + 9) // 10] for i in range(0, len(row), 8)]
    return np.array(values[:n])


def test_boundary_lines_have_stage_and_flow_in_the_66_layout(demo):
    assert fake(demo, "p01").returncode == 0
    with h5py.File(demo.with_suffix(".p01.hdf")) as f:
        assert f.attrs["Projection"].decode() == (demo.parent / "Terrain" / "Projection.prj").read_text()
        ts = f[f"{BASE}/Unsteady Time Series"]
        assert "Boundary Conditions" not in ts  # the layout before 6.6
        bc = ts["2D Flow Areas/Floodplain/Boundary Conditions"]
        steps = len(ts["Time"])
        external = f["Geometry/Boundary Condition Lines/External Faces"][()]
        cells_of = f[f"{MESH}/Faces Cell Indexes"][()]
        bed = f[f"{MESH}/Cells Minimum Elevation"][()]
        for line_id, name in enumerate(("Upstream", "Downstream")):
            line = bc[name]
            assert line.shape == (steps, 2) and line.dtype == np.float32
            assert list(line.attrs["Columns"]) == [b"Stage", b"Flow"]
            assert (line.attrs["Stage"], line.attrs["Flow"], line.attrs["2D Area"]) == (b"m", b"m3/s", b"Floodplain")
            faces = external["Face Index"][external["BC Line ID"] == line_id]
            q, stage = bc[f"{name} - Flow per Face"], bc[f"{name} - Stage per Face"]
            for d, unit in ((q, b"m3/s"), (stage, b"m")):
                assert d.shape == (steps, len(faces)) and d.dtype == np.float32
                assert d.attrs["Units"] == unit and d.attrs["2D Area"] == b"Floodplain"
                np.testing.assert_array_equal(d.attrs["Faces"], faces)
                assert d.attrs["Faces"].dtype == np.int32
            np.testing.assert_allclose(q[()].sum(axis=1), line[:, 1], rtol=1e-4)
            np.testing.assert_allclose(stage[()].min(axis=1), line[:, 0])
            assert (stage[()] >= bed[cells_of[faces, 0]] - 1e-3).all()
        hours = ts["Time"][()] * 24
        inflow = _flow_hydrograph(demo.with_suffix(".u01"))
        np.testing.assert_allclose(bc["Upstream"][:, 1], np.interp(hours, np.arange(len(inflow)), inflow), rtol=1e-6)
        assert bc["Downstream"][:, 1].max() > 0.9 * inflow.max()  # the flood leaves, later
        assert np.argmax(bc["Downstream"][:, 1]) >= np.argmax(bc["Upstream"][:, 1])
        s = f[f"{BASE}/Summary Output/2D Flow Areas/Floodplain"]
        err = s["Cell Maximum Water Surface Error"]
        assert list(err.attrs["Units per row"]) == [b"m", b"days"] and err.attrs["Units"] == b"m"
        assert err.attrs["Name"] == b"Water Surface Error Maximum" and err.attrs["Location"] == b"Cells"
        assert s["Cell Cumulative Iteration"].attrs["Units"] == b"Iterations"
        assert b"last cell to converge" in s["Cell Last Iteration"].attrs["Cell"]
        assert list(s["Maximum Water Surface"].attrs["Units"]) == [b"m", b"days"]
        assert s["Maximum Face Velocity"].attrs["Location"] == b"Faces"
        assert s["Starting Differences WSE"].shape == (3, len(bed))


def _wet_cells(prj: Path, plan_id: str) -> tuple[int, int]:
    with h5py.File(prj.with_suffix(f".{plan_id}.hdf")) as f:
        count = int(f["Geometry/2D Flow Areas/Attributes"]["Cell Count"][0])
        bed = f[f"{MESH}/Cells Minimum Elevation"][:count]
        ws = f[f"{BASE}/Unsteady Time Series/2D Flow Areas/Floodplain/Water Surface"][:, :count]
        depth = ws - bed
        assert depth.min() >= 0, "water below the bed"
        dry = depth.max(axis=0) == 0
        assert (ws[:, dry] == bed[dry]).all(), "a dry cell's water surface is its bed, as HEC-RAS writes it"
        return int((depth.max(axis=0) > 0.01).sum()), count


def test_bigger_storms_and_dam_breaks_flood_more(tmp_path):
    from dask_hecras.examples import make_project

    prj = make_project(tmp_path / "project", n_plans=6)
    wet = {}
    for plan_id in ("p01", "p02", "p04", "p05"):  # 10-year, 50-year, 500-year, dam break (with the 10-year inflow)
        assert fake(prj, plan_id).returncode == 0
        wet[plan_id], count = _wet_cells(prj, plan_id)
    assert 0 < wet["p01"] < wet["p02"] < wet["p04"] < count
    assert wet["p01"] < count / 2, "a small storm leaves most of the floodplain dry"
    assert wet["p05"] >= 0.9 * count, "a dam break floods most of it"


def test_additional_output_when_the_plan_asks(demo):
    plan = demo.with_suffix(".p03").read_text()
    assert "HDF Additional Output Variable=Cell Velocity" in plan  # the demo's 100-year plan asks
    p01 = demo.with_suffix(".p01")
    p01.write_bytes(p01.read_bytes().replace(b"DSS File=", b"HDF Additional Output Variable=Face Shear Stress\r\nDSS File="))
    assert fake(demo, "p03").returncode == 0 and fake(demo, "p01").returncode == 0 and fake(demo, "p02").returncode == 0
    series = f"{BASE}/Unsteady Time Series/2D Flow Areas/Floodplain"
    with h5py.File(demo.with_suffix(".p03.hdf")) as f:
        g = f[series]
        steps, cells = g["Water Surface"].shape
        faces = g["Face Velocity"].shape[1]
        count = int(f["Geometry/2D Flow Areas/Attributes"]["Cell Count"][0])
        for name, width, unit in (("Cell Velocity - Velocity X", cells, b"m/s"), ("Cell Velocity - Velocity Y", cells, b"m/s"),
                                  ("Cell Hydraulic Depth", cells, b"m"), ("Face Shear Stress", faces, b"N/m^2")):
            d = g[name]
            assert d.shape == (steps, width) and d.dtype == np.float32 and d.attrs["Units"] == unit, name
            assert d.compression == "gzip" and d.chunks is not None
        depth = g["Cell Hydraulic Depth"][:, :count]
        bed = f[f"{MESH}/Cells Minimum Elevation"][:count]
        np.testing.assert_allclose(depth, g["Water Surface"][:, :count] - bed, atol=1e-3)
        speed = np.hypot(g["Cell Velocity - Velocity X"][:, :count], g["Cell Velocity - Velocity Y"][:, :count])
        assert (speed[depth == 0] == 0).all() and speed.max() > 0.5
        assert g["Face Shear Stress"][()].min() >= 0 and g["Face Shear Stress"][()].max() > 0
    with h5py.File(demo.with_suffix(".p01.hdf")) as f, h5py.File(demo.with_suffix(".p02.hdf")) as g:
        assert "Face Shear Stress" in f[series] and "Cell Velocity - Velocity X" not in f[series]
        assert not {"Face Shear Stress", "Cell Velocity - Velocity X", "Cell Hydraulic Depth"} & set(g[series])


def test_steady_additional_variables(demo):
    add_steady_plan(demo)
    assert fake(demo, "p09").returncode == 0
    with h5py.File(demo.with_suffix(".p09.hdf")) as f:
        g = f["Results/Steady/Output/Output Blocks/Base Output/Steady Profiles/Cross Sections"]
        shape = g["Water Surface"].shape
        for name, label, unit in (("Velocity Total", b"Total Velocity", b"m/s"), ("Velocity Channel", b"Channel Velocity", b"m/s"),
                                  ("Area Flow Total", b"Total Flow Area", b"m^2"),
                                  ("Encroachment Station Left", b"Encroachment Station Left", b"m"),
                                  ("Encroachment Station Right", b"Encroachment Station Right", b"m")):
            d = g[f"Additional Variables/{name}"]
            assert d.shape == shape and d.dtype == np.float32
            assert d.attrs["Variable_Unit"].tolist() == [[label, unit]]
        v, a = g["Additional Variables/Velocity Total"][()], g["Additional Variables/Area Flow Total"][()]
        np.testing.assert_allclose(v * a, g["Flow"][()], rtol=1e-4)
        assert (g["Additional Variables/Encroachment Station Left"][()] < g["Additional Variables/Encroachment Station Right"][()]).all()
