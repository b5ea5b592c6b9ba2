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
