from __future__ import annotations

import pickle
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path

import dask.config
import pytest

from dask_hecras import Project, ProjectError
from dask_hecras.project import parse_interval, parse_simulation_date, parse_version
from dask_hecras.staging import stage

from .conftest import copy_muncie


def rel(paths, base: Path) -> set[str]:
    return {p.relative_to(base).as_posix() for p in paths}


def test_demo_project_plans(demo):
    project = Project(demo)
    assert project.name == "Demo"
    assert project.units == "SI"
    assert [p.id for p in project.plans] == ["p01", "p02", "p03", "p04"]
    p = project.plan("p03")
    assert (p.title, p.short_id, p.geometry, p.flow) == ("100-year storm", "100yr", "g01", "u03")
    assert not p.steady
    assert p.start == datetime(2026, 1, 1) and p.end == datetime(2026, 1, 3)
    assert p.computation_interval == timedelta(seconds=20)
    assert p.output_interval == timedelta(hours=1)
    assert p.project == demo and p.project_name == "Demo"
    assert project.plan("100YR") is p  # by short identifier too
    with pytest.raises(KeyError, match="p09"):
        project.plan("p09")
    assert pickle.loads(pickle.dumps(p)) == p


def test_demo_input_files(demo):
    p = Project(demo).plan("p02")
    assert rel(p.input_files(), demo.parent) == {
        "Demo.prj", "Demo.p02", "Demo.g01", "Demo.g01.hdf", "Demo.u02", "Demo.rasmap",
        "Terrain/Projection.prj", "Terrain/Terrain.hdf", "Terrain/Terrain.vrt", "Terrain/Terrain.demo.tif",
    }
    roles = {f.path.name: f.role for f in p.inputs()}
    assert roles["Terrain.demo.tif"] == "terrain" and roles["Demo.g01.hdf"] == "geometry-hdf"


def test_muncie_real_files(realdata, tmp_path):
    prj = copy_muncie(realdata, tmp_path / "muncie")
    plan = Project(prj).plan("p01")
    assert plan.start == datetime(1900, 1, 2) and plan.end == datetime(1900, 1, 3)  # 2400 = next midnight
    assert plan.program_version == "6.50" and plan.computation_interval == timedelta(seconds=15)
    # The real u02 names a restart file but does not use it (Use Restart= 0), and uses no DSS.
    assert rel(plan.input_files(), prj.parent) == {
        "Muncie.prj", "Muncie.p01", "Muncie.g05", "Muncie.g05.hdf", "Muncie.u02", "Muncie.rasmap", "projection.prj",
    }


def test_restart_and_dss_references_are_required_when_used(realdata, tmp_path):
    prj = copy_muncie(realdata, tmp_path / "muncie")
    flow = prj.parent / "Muncie.u02"
    text = flow.read_bytes()
    assert b"\r\n" in text or b"\n" in text
    text = text.replace(b"Use Restart= 0 ", b"Use Restart=-1 ")
    text = text.replace(b"DSS Path=", b"DSS File=.\\DSS\\Inflow.dss\nDSS Path=", 1).replace(b"Use DSS=False", b"Use DSS=True", 1)
    flow.write_bytes(text)
    plan = Project(prj).plan("p01")
    with pytest.raises(ProjectError) as e:
        plan.input_files()
    missing = {p.name for p in e.value.missing}
    assert missing == {"Muncie.p05.02JAN1900 1200.rst", "Inflow.dss"}
    assert str(prj) in str(e.value) and "Inflow.dss" in str(e.value)
    (prj.parent / "DSS").mkdir()
    (prj.parent / "DSS" / "Inflow.dss").write_bytes(b"dss")
    (prj.parent / "Muncie.p05.02JAN1900 1200.rst").write_bytes(b"rst")
    roles = {f.path.name: f.role for f in plan.inputs()}
    assert roles["Inflow.dss"] == "dss" and roles["Muncie.p05.02JAN1900 1200.rst"] == "restart"


def test_windows_references_resolve_case_insensitively(demo):
    rasmap = demo.parent / "Demo.rasmap"
    rasmap.write_text(rasmap.read_text().replace(".\\Terrain\\Terrain.hdf", ".\\terrain\\TERRAIN.hdf"))
    names = {p.name for p in Project(demo).plan("p01").input_files()}
    assert "Terrain.hdf" in names and "Terrain.demo.tif" in names


def test_missing_prj_and_not_a_project(tmp_path, demo):
    with pytest.raises(ProjectError, match="does not exist"):
        Project(tmp_path / "nothing.prj")
    with pytest.raises(ProjectError, match="projection file"):
        Project(demo.parent / "Terrain" / "Projection.prj")


def test_listed_plans_absent_are_all_named(demo):
    (demo.parent / "Demo.p02").unlink()
    (demo.parent / "Demo.p04").unlink()
    with pytest.raises(ProjectError) as e:
        Project(demo)
    assert {p.name for p in e.value.missing} == {"Demo.p02", "Demo.p04"}
    assert "Demo.prj" in str(e.value) and "Demo.p02" in str(e.value) and "Demo.p04" in str(e.value)


def test_every_missing_referenced_file_in_one_error(demo):
    (demo.parent / "Demo.u01").unlink()
    (demo.parent / "Terrain" / "Terrain.hdf").unlink()
    project = Project(demo)
    with pytest.raises(ProjectError) as e:
        project.plan("p01").input_files()
    assert {p.name for p in e.value.missing} == {"Demo.u01", "Terrain.hdf"}
    with pytest.raises(ProjectError) as e:
        project.check()  # all plans at once: u01 (p01) and the terrain (all)
    assert {p.name for p in e.value.missing} == {"Demo.u01", "Terrain.hdf"}


def test_reference_outside_project_refused_unless_allowed(tmp_path, demo):
    common = tmp_path / "common"
    common.mkdir()
    (common / "Projection.prj").write_text("PROJCS[]")
    rasmap = demo.parent / "Demo.rasmap"
    rasmap.write_text(rasmap.read_text().replace(".\\Terrain\\Projection.prj", "..\\common\\Projection.prj"))
    plan = Project(demo).plan("p01")
    with pytest.raises(ProjectError, match="outside the project folder"):
        plan.input_files()
    with dask.config.set({"hecras.allowed-roots": [str(common)]}):
        assert common / "Projection.prj" in plan.input_files()
        staged = stage(plan)
        # The run folder mirrors the layout, so ..\common\Projection.prj resolves the same way.
        assert (staged.prj.parent / ".." / "common" / "Projection.prj").resolve().is_file()
        assert staged.prj.parent.resolve().is_relative_to(staged.run_dir.resolve())
        assert staged.files == len(plan.input_files())


def test_windows_absolute_reference_refused(demo):
    rasmap = demo.parent / "Demo.rasmap"
    rasmap.write_text(rasmap.read_text().replace(".\\Terrain\\Terrain.hdf", "D:\\GIS\\Terrain.hdf"))
    with pytest.raises(ProjectError, match="D:"):
        Project(demo).plan("p01").input_files()


def test_broken_rasmap_is_named(demo):
    (demo.parent / "Demo.rasmap").write_text("<RASMapper><Terrains>")
    with pytest.raises(ProjectError, match="Demo.rasmap"):
        Project(demo).plan("p01").input_files()


@pytest.mark.parametrize("text,expected", [
    ("6.50", (6, 5)), ("6.31", (6, 3, 1)), ("6.3.1", (6, 3, 1)), ("6.6", (6, 6)), ("5.07", (5, 0, 7)),
    ("6.10", (6, 1)), ("", None), ("beta", None),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_parse_interval_and_dates():
    assert parse_interval("30SEC") == timedelta(seconds=30)
    assert parse_interval("5MIN") == timedelta(minutes=5)
    assert parse_interval("1HOUR") == timedelta(hours=1)
    assert parse_interval("1DAY") == timedelta(days=1)
    assert parse_interval("nonsense") is None
    assert parse_simulation_date("01AUG2026,0000,05AUG2026,2400") == (datetime(2026, 8, 1), datetime(2026, 8, 6))
    assert parse_simulation_date("") == (None, None)


def test_staging_copies_every_input_and_keeps_file_times(demo):
    plan = Project(demo).plan("p01")
    staged = stage(plan)
    for source in plan.input_files():
        copy = staged.prj.parent / source.relative_to(demo.parent)
        assert copy.read_bytes() == source.read_bytes()
        assert copy.stat().st_mtime_ns == source.stat().st_mtime_ns
    assert staged.bytes_copied == sum(p.stat().st_size for p in plan.input_files())
    shutil.rmtree(staged.run_dir)


def test_hec_ras_text_is_read_in_the_offices_code_page(demo, monkeypatch):
    """HEC-RAS writes its text files in Windows' ANSI code page. In a Czech office a plan's
    ``DSS File=.\\Řeka.dss`` is cp1250; read as cp1252 it names another file."""
    import ctypes
    from types import SimpleNamespace

    from dask_hecras.project import text_encoding

    from .fake_windows import FakeDll

    plan_file = demo.with_suffix(".p01")
    text = plan_file.read_bytes().decode("cp1252").replace("DSS File=dss", "DSS File=.\\Řeka.dss")
    plan_file.write_bytes(text.encode("cp1250"))
    (demo.parent / "Řeka.dss").write_text("boundaries\n")
    assert Project(demo).plan("p01").output_dss.name == "Øeka.dss", "read as on a Western PC"
    with dask.config.set({"hecras.text-encoding": "cp1250"}):
        assert Project(demo).plan("p01").output_dss == demo.parent / "Řeka.dss"
    czech = SimpleNamespace(kernel32=FakeDll(GetACP=lambda: 1250))
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", czech, raising=False)
    assert Project(demo).plan("p01").output_dss == demo.parent / "Řeka.dss", "a Czech Windows PC, no setting"
    assert text_encoding(SimpleNamespace(kernel32=FakeDll(GetACP=lambda: 65001))) == "utf-8"
    assert text_encoding(SimpleNamespace(kernel32=FakeDll(GetACP=lambda: 932))) == "cp932"
    with dask.config.set({"hecras.text-encoding": "klingon"}), pytest.raises(ValueError, match="hecras.text-encoding"):
        Project(demo)


def test_references_split_as_windows_splits_them(demo):
    """One rule on every platform: either slash separates, ``.`` and ``..`` fold, a leading slash
    is the root (outside the project, so refused)."""
    from dask_hecras.project import resolve_reference

    terrain = demo.parent / "Terrain" / "Terrain.hdf"
    for ref in (".\\Terrain\\Terrain.hdf", "Terrain/Terrain.hdf", ".\\Terrain/../Terrain\\Terrain.hdf",
                ' ".\\terrain\\TERRAIN.HDF" '):
        assert resolve_reference(ref, demo.parent, demo) == terrain, ref
    with pytest.raises(ProjectError, match="outside the project folder"):
        resolve_reference("\\Terrain\\Terrain.hdf", demo.parent, demo)


def test_times_hec_ras_would_not_write_are_named_with_their_line(demo):
    """Read as "no window" they let a broken plan run (and the fake engine "succeed")."""
    plan_file = demo.with_suffix(".p02")
    text = plan_file.read_text()
    good = [line for line in text.splitlines() if line.startswith("Simulation Date=")][0]
    bad = text.replace(good, "Simulation Date=02JNA2026,0000,03JAN2026,0000")
    bad = bad.replace("Computation Interval=" + bad.split("Computation Interval=")[1].split("\n")[0].strip(),
                      "Computation Interval=20SCE")
    plan_file.write_text(bad)
    lines = bad.splitlines()
    with pytest.raises(ProjectError) as e:
        Project(demo)
    said = str(e.value)
    n_date = next(i for i, t in enumerate(lines, 1) if t.startswith("Simulation Date="))
    n_step = next(i for i, t in enumerate(lines, 1) if t.startswith("Computation Interval="))
    assert f"Demo.p02 line {n_date}: Simulation Date=02JNA2026" in said
    assert f"Demo.p02 line {n_step}: Computation Interval=20SCE" in said and str(demo) in said
    plan_file.write_text(text.replace(good, "Simulation Date=,,,"))  # none given: not an error
    assert Project(demo).plan("p02").start is None
