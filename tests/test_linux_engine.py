"""HEC-RAS's Linux engine: plans prepared on Windows, run by RasUnsteady (here the fake one of
``examples.make_linux_install``) through the real pipeline: discovery, prepared inputs, staging,
command lines, environment, the rename, validation, failures, the time limit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dask.config
import h5py
import psutil
import pytest

from dask_hecras import Project, RetryableFailure, run_plan
from dask_hecras.engines import get_engine
from dask_hecras.engines.linux import (LinuxEngine, engine_environment, find_linux_installs, install_at,
                                       make_tmp_hdf, missing_inputs, threads)
from dask_hecras.engines.runner import run_process
from dask_hecras.examples import make_linux_install, make_project, prepare_for_linux

from .conftest import folder_digest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="HEC-RAS's Linux engine runs on Linux")


@pytest.fixture
def engines(tmp_path) -> Path:
    """A root holding a fake Linux engine 6.6, configured as hecras.linux-roots."""
    root = tmp_path / "engines"
    make_linux_install(root, "6.6")
    with dask.config.set({"hecras.linux-roots": [str(root)]}):
        yield root


@pytest.fixture
def journal(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "journal.txt"
    monkeypatch.setenv("FAKE_RAS_JOURNAL", str(path))
    return path


def project(tmp_path: Path, behaviour: dict | None = None, monkeypatch=None) -> Path:
    prj = make_project(tmp_path / "project", n_plans=4, behaviour=behaviour)
    if behaviour and monkeypatch is not None:  # the run folder has no fake-ras.json: point at the source's
        monkeypatch.setenv("FAKE_RAS_CONFIG", str(prj.parent / "fake-ras.json"))
    return prj


def commands(log: Path) -> list[str]:
    return [line[2:] for line in log.read_text().splitlines() if line.startswith("$ ")]


def said(log: Path, key: str) -> str:
    """The value the fake engine printed for ``key`` (a line ``fake-linux: KEY=value``)."""
    for line in log.read_text().splitlines():
        if line.startswith(f"fake-linux: {key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"the engine log does not say {key}:\n{log.read_text()}")


def events(journal: Path) -> list[tuple[str, str]]:
    if not journal.exists():
        return []
    return [(line.split()[0], line.split()[1]) for line in journal.read_text().splitlines()]


def run_folders(tmp_path: Path) -> list[Path]:
    scratch = tmp_path / "scratch"  # conftest's hecras.scratch
    return [p for p in scratch.iterdir() if p.name.startswith("Demo-")] if scratch.is_dir() else []


def stack_expected() -> str:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    return "unlimited" if hard == resource.RLIM_INFINITY else str(hard)


# --------------------------------------------------------------------------- installs


def test_discovery_finds_versions_with_rasunsteady_and_libs(tmp_path):
    root = tmp_path / "engines"
    for v in ("6.3.1", "6.5", "6.6"):
        make_linux_install(root, v)
    make_linux_install(root, "6.0")  # before Linux engines named RasUnsteady
    shutil.rmtree(make_linux_install(root, "6.4") / "libs")  # no libraries: cannot run
    (root / "7.0").mkdir()  # an empty version folder
    (root / "Docs").mkdir()
    binned = make_linux_install(tmp_path / "other", "7.0.1")  # HEC's EngineOnly layout: bin/ beside libs/
    (binned / "bin").mkdir()
    (binned / "RasUnsteady").rename(binned / "bin" / "RasUnsteady")
    found = find_linux_installs([root, tmp_path / "other", tmp_path / "nowhere"])
    assert [i.label for i in found] == ["6.3.1", "6.5", "6.6", "7.0.1"]
    assert [i.version for i in found] == [(6, 3, 1), (6, 5), (6, 6), (7, 0, 1)]
    assert found[2].folder == root / "6.6" and found[3].bin == binned / "bin"
    assert not found[0].modern and found[1].modern
    assert found[2].geometry_preprocessor == root / "6.6" / "RasGeomPreprocess" and found[2].steady is None
    with dask.config.set({"hecras.linux-roots": [str(root)]}):  # what a worker reports
        assert [i.label for i in find_linux_installs()] == ["6.3.1", "6.5", "6.6"]
        with dask.config.set({"hecras.linux-engine": str(binned)}):  # one folder instead
            (only,) = find_linux_installs()
            assert (only.label, only.folder) == ("7.0.1", binned)
        with dask.config.set({"hecras.linux-engine": str(tmp_path / "missing")}):
            assert find_linux_installs() == []
    assert install_at(root / "6.4") is None


@pytest.mark.parametrize("plan_version,choice,expected", [
    ("6.60", "plan", "6.6"),
    ("6.40", "plan", "6.5"),     # not installed: the oldest newer one
    ("", "plan", "6.6"),         # unknown: the newest
    ("6.60", "6.5", "6.5"),      # pinned by hecras.ras-version
    ("6.31", "newest", "6.6"),
])
def test_version_choice_as_for_ras_exe(tmp_path, demo, plan_version, choice, expected):
    root = tmp_path / "engines"
    for v in ("6.5", "6.6"):
        make_linux_install(root, v)
    plan = Project(demo).plan("p01")
    plan = type(plan)(**{**plan.__dict__, "program_version": plan_version})
    assert LinuxEngine(roots=[root], choice=choice).install_for(plan).label == expected


def test_no_linux_engine_is_a_retryable_failure_before_anything_is_copied(tmp_path, demo, results):
    prepare_for_linux(demo, "p01")
    with dask.config.set({"hecras.linux-roots": [str(tmp_path / "none")]}), pytest.raises(RetryableFailure) as e:
        run_plan(Project(demo).plan("p01"), engine="linux", results_dir=results)
    r = e.value.result
    assert r.problem == "engine-not-found" and r.retryable
    assert "Linux engine is not installed" in r.reason and r.host in r.reason and "hecras.linux-roots" in r.reason
    assert run_folders(tmp_path) == []
    assert get_engine("linux").name == "linux"


# --------------------------------------------------------------------------- a prepared plan, end to end


def test_prepared_plan_runs_end_to_end(tmp_path, engines, journal, monkeypatch):
    prj = project(tmp_path)
    prepare_for_linux(prj, "p01")
    before = folder_digest(prj.parent)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/site/lib")  # the worker's own: kept, after the engine's
    r = run_plan(Project(prj).plan("p01"), engine="linux", results_dir=tmp_path / "results", timeout="10min")
    assert r.ok, r.reason
    assert r.engine == "linux" and r.exit_code == 0 and r.validation == "succeeded"
    home = engines / "6.6"
    assert commands(r.log) == [subprocess.list2cmdline([str(home / "RasUnsteady"), "Demo.p01.tmp.hdf", "x01"])]
    libs = f"{home}/libs:{home}/libs/mkl:{home}/libs/rhel_8"
    assert said(r.log, "LD_LIBRARY_PATH") == f"{libs}:/opt/site/lib"
    assert said(r.log, "PATH").split(os.pathsep)[0] == str(home)
    cores = str(psutil.cpu_count())  # the demo plans say UNET D2 Cores=0: all of them
    assert said(r.log, "OMP_NUM_THREADS") == cores and said(r.log, "MKL_NUM_THREADS") == cores
    assert said(r.log, "OMP_STACKSIZE") == "2G" and said(r.log, "KMP_STACKSIZE") == "2G"
    assert f"fake-linux: stack {stack_expected()}" in r.log.read_text()
    text = r.log.read_text()
    assert "SIMTIME=" in text and "LABEL=" in text
    engine_output = text.split("\n[dask-hecras]")[0].rstrip().splitlines()
    assert engine_output[-1] == "Finished Unsteady Flow Simulation"
    assert "[dask-hecras] renamed Demo.p01.tmp.hdf to Demo.p01.hdf" in text
    assert r.hdf.name == "Demo.p01.hdf" and not (r.folder / "Demo.p01.tmp.hdf").exists()
    with h5py.File(r.hdf) as f:
        assert f["Plan Data/Plan Information"].attrs["Plan Filename"] == b"Demo.p01"
        assert f["Event Conditions"].attrs["Completed Successfully"] == b"True"
        processes = [p.decode() for p in f["Results/Summary/Compute Processes"]["Filename"]]
        assert "RasUnsteady" in processes
    assert events(journal) == [("start", "Demo.p01"), ("end", "Demo.p01")]
    assert folder_digest(prj.parent) == before, "the source project was written"
    assert run_folders(tmp_path) == []


def test_threads_from_cores_per_plan_or_the_plan(tmp_path, engines, monkeypatch):
    prj = project(tmp_path)
    plan_file = prj.with_suffix(".p02")
    plan_file.write_bytes(plan_file.read_bytes().replace(b"UNET D2 Cores=0", b"UNET D2 Cores=3"))
    for pid in ("p01", "p02"):
        prepare_for_linux(prj, pid)
    p1, p2 = Project(prj).plan("p01"), Project(prj).plan("p02")
    assert threads(p2) == 3 and threads(p1) == psutil.cpu_count()
    r = run_plan(p2, engine="linux", results_dir=tmp_path / "results")
    assert r.ok and said(r.log, "OMP_NUM_THREADS") == "3"
    with dask.config.set({"hecras.cores-per-plan": 1}):
        assert threads(p1) == threads(p2) == 1
        r = run_plan(p1, engine="linux", results_dir=tmp_path / "results")
        assert r.ok and said(r.log, "OMP_NUM_THREADS") == "1" and said(r.log, "MKL_NUM_THREADS") == "1"
    env = engine_environment(find_linux_installs([engines])[0], 4, base={"PATH": "/usr/bin"})
    assert env["LD_LIBRARY_PATH"] == f"{engines}/6.6/libs:{engines}/6.6/libs/mkl:{engines}/6.6/libs/rhel_8"
    assert env["PATH"] == f"{engines}/6.6{os.pathsep}/usr/bin" and env["OMP_NUM_THREADS"] == "4"


def test_tmp_hdf_made_from_a_plan_hdf_never_carries_results(tmp_path, engines, journal):
    """A plan computed once on Windows has NAME.p01.hdf (with its results), .b and .x, no
    .tmp.hdf: the run's input file is made from the results file's input groups."""
    prj = project(tmp_path)
    windows = tmp_path / "windows"
    shutil.copytree(prj.parent, windows)
    done = subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(windows / prj.name),
                           str(windows / "Demo.p01")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copy2(windows / "Demo.p01.hdf", prj.parent / "Demo.p01.hdf")
    prepare_for_linux(prj, "p01", hdf=None)
    with h5py.File(prj.parent / "Demo.p01.hdf") as f:
        assert "Results" in f and "Ras.exe" in [p.decode() for p in f["Results/Summary/Compute Processes"]["Process"]]
    before = folder_digest(prj.parent)
    r = run_plan(Project(prj).plan("p01"), engine="linux", results_dir=tmp_path / "results")
    assert r.ok, r.reason  # the fake RasUnsteady refuses an HDF holding Results
    with h5py.File(r.hdf) as f:  # results of this run, not the old ones
        assert "Ras.exe" not in [p.decode() for p in f["Results/Summary/Compute Processes"]["Process"]]
    assert folder_digest(prj.parent) == before
    made = tmp_path / "made.tmp.hdf"
    make_tmp_hdf(prj.parent / "Demo.p01.hdf", made)
    with h5py.File(made) as f, h5py.File(prj.parent / "Demo.p01.hdf") as src:
        assert sorted(f.keys()) == ["Event Conditions", "Geometry", "Plan Data"]
        assert sorted(f.attrs) == sorted(a for a in ("File Type", "File Version", "Projection", "Units System")
                                         if a in src.attrs)
        assert f.attrs["File Version"] == src.attrs["File Version"]
        assert f["Plan Data/Plan Information"].attrs["Plan Filename"] == b"Demo.p01"


def test_geometry_preprocessor_runs_first_when_the_x_file_is_missing(tmp_path, engines, journal):
    prj = project(tmp_path)
    prepare_for_linux(prj, "p01", x_file=False)
    (prj.parent / "Demo.b01").rename(prj.parent / "DEMO.B01")  # as a Windows PC may name it: staged as Demo.b01
    r = run_plan(Project(prj).plan("p01"), engine="linux", results_dir=tmp_path / "results")
    assert r.ok, r.reason
    home = engines / "6.6"
    assert commands(r.log) == [
        subprocess.list2cmdline([str(home / "RasGeomPreprocess"), "Demo.p01.tmp.hdf", "x01"]),
        subprocess.list2cmdline([str(home / "RasUnsteady"), "Demo.p01.tmp.hdf", "x01"]),
    ]
    assert events(journal) == [("geometry", "Demo.p01"), ("start", "Demo.p01"), ("end", "Demo.p01")]
    assert not (prj.parent / "Demo.x01").exists()  # made in the run folder, never in the project


def test_an_install_without_the_preprocessor_needs_the_x_file(tmp_path, results):
    root = tmp_path / "engines"
    make_linux_install(root, "6.6", geometry_preprocessor=False)
    prj = project(tmp_path)
    prepare_for_linux(prj, "p01", x_file=False)
    with dask.config.set({"hecras.linux-roots": [str(root)]}):
        r = run_plan(Project(prj).plan("p01"), engine="linux", results_dir=results)
    assert not r.ok and r.problem == "input" and not r.retryable
    assert "Demo.x01" in r.reason and "no RasGeomPreprocess" in r.reason


def test_older_engines_run_the_c_and_b_files(tmp_path, journal):
    """6.1-6.4: RasUnsteady NAME.cGG bPP."""
    root = tmp_path / "engines"
    make_linux_install(root, "6.3.1")
    prj = project(tmp_path)
    prepare_for_linux(prj, "p01", x_file=False)
    plan = Project(prj).plan("p01")
    with dask.config.set({"hecras.linux-roots": [str(root)], "hecras.ras-version": "6.3.1"}):
        r = run_plan(plan, engine="linux", results_dir=tmp_path / "results", raise_retryable=False)
        assert not r.ok and r.problem == "input" and "Demo.c01" in r.reason and "preprocessed geometry" in r.reason
        (prj.parent / "Demo.c01").write_bytes(b"stand-in preprocessed geometry\r\n")
        r = run_plan(plan, engine="linux", results_dir=tmp_path / "results")
    assert r.ok, r.reason
    assert commands(r.log) == [subprocess.list2cmdline([str(root / "6.3.1" / "RasUnsteady"), "Demo.c01", "b01"])]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("outcome,retryable,words", [
    ("unstable", False, "went unstable"),
    ("crash", True, "stopped before it finished"),
    ("no-results", True, "stopped before it finished"),
    ("truncated", True, "cannot be read as HDF5"),
])
def test_failures_are_judged_from_the_results_file(tmp_path, engines, monkeypatch, outcome, retryable, words):
    prj = project(tmp_path, {"p01": {"seconds": 0.1, "outcome": outcome}}, monkeypatch)
    prepare_for_linux(prj, "p01")
    r = run_plan(Project(prj).plan("p01"), engine="linux", results_dir=tmp_path / "results", raise_retryable=False)
    assert not r.ok and r.retryable is retryable and words in r.reason, r.reason
    if outcome == "crash":
        assert r.exit_code == 157 and "forrtl: severe (157)" in r.log.read_text()
    if outcome == "unstable":
        assert r.problem == "run" and r.hdf is not None and r.exit_code == 0
        assert "Unsteady Flow Simulation Terminated" in r.log.read_text()
    if retryable:
        with pytest.raises(RetryableFailure):
            run_plan(Project(prj).plan("p01"), engine="linux", results_dir=tmp_path / "results")


def test_a_hung_engine_is_killed_at_the_time_limit(tmp_path, engines, monkeypatch):
    prj = project(tmp_path, {"p01": {"outcome": "hang"}}, monkeypatch)
    prepare_for_linux(prj, "p01")
    r = run_plan(Project(prj).plan("p01"), engine="linux", results_dir=tmp_path / "results", timeout=3,
                 raise_retryable=False)
    assert not r.ok and r.retryable and r.problem == "timeout" and "Timed out after 3 s" in r.reason
    assert "process tree killed" in r.log.read_text()
    mark = json.loads((r.scratch / ".engine.json").read_text())  # the engine process the runner started
    try:
        assert psutil.Process(mark["pid"]).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


def test_a_plan_lacking_prepared_files_fails_once_naming_each_before_copying(tmp_path, results):
    root = tmp_path / "engines"
    make_linux_install(root, "6.6", geometry_preprocessor=False)
    prj = project(tmp_path)
    (prj.parent / "Terrain" / "Terrain.hdf").unlink()  # one of the plan's own inputs missing too
    plan = Project(prj).plan("p01")
    before = folder_digest(prj.parent)
    assert missing_inputs(plan) == [
        "Demo.p01.tmp.hdf (or Demo.p01.hdf: the plan's geometry, plan data and event conditions)",
        "Demo.b01 (boundary conditions and run settings)",
    ]  # on the client the .x does not count: RasGeomPreprocess can make it
    with dask.config.set({"hecras.linux-roots": [str(root)]}):
        r = run_plan(plan, engine="linux", results_dir=results)
    assert not r.ok and not r.retryable and r.problem == "input"
    assert r.reason.count("HEC-RAS project") == 1  # one error
    for name in ("Demo.p01.tmp.hdf", "Demo.b01", "Demo.x01", "Terrain.hdf"):
        assert name in r.reason, name
    assert "compute plan p01" in r.reason and "on Windows" in r.reason
    assert run_folders(tmp_path) == [], "something was staged"
    assert folder_digest(prj.parent) == before


def test_a_restart_plan_needs_its_initial_conditions_file(tmp_path, engines):
    prj = project(tmp_path)
    flow = prj.with_suffix(".u01")
    flow.write_bytes(flow.read_bytes().replace(b"Use Restart= 0 ", b"Use Restart=-1\r\nRestart Filename=Demo.rst"))
    (prj.parent / "Demo.rst").write_bytes(b"restart state")
    prepare_for_linux(prj, "p01", ic_file=False)
    plan = Project(prj).plan("p01")
    assert missing_inputs(plan) == ["Demo.ic.o01 (initial conditions: the plan starts from a restart file)"]
    r = run_plan(plan, engine="linux", results_dir=tmp_path / "results")
    assert not r.ok and r.problem == "input" and "Demo.ic.o01" in r.reason
    prepare_for_linux(prj, "p01")
    r = run_plan(plan, engine="linux", results_dir=tmp_path / "results")
    assert r.ok, r.reason


def test_steady_plans_need_ras_exe(tmp_path, engines, demo, results):
    folder = demo.parent
    (folder / "Demo.f01").write_bytes(b"Flow Title=Steady\r\nProgram Version=6.60\r\nNumber of Profiles= 1\r\n")
    (folder / "Demo.p09").write_bytes(b"Plan Title=Steady check\r\nProgram Version=6.60\r\nShort Identifier=steady\r\n"
                                      b"Geom File=g01\r\nFlow File=f01\r\n")
    demo.write_bytes(demo.read_bytes().replace(b"Plan File=p01", b"Flow File=f01\r\nPlan File=p01\r\nPlan File=p09"))
    plan = Project(demo).plan("p09")
    assert missing_inputs(plan) and "Ras.exe" in missing_inputs(plan)[0]
    r = run_plan(plan, engine="linux", results_dir=results)
    assert not r.ok and r.problem == "input" and "steady" in r.reason and "Ras.exe" in r.reason


def test_stale_or_foreign_preparations_are_refused(tmp_path, engines, results):
    prj = project(tmp_path)
    for pid in ("p01", "p02"):
        prepare_for_linux(prj, pid)
    plan = Project(prj).plan("p01")
    shutil.copy2(prj.with_suffix(".b02"), prj.with_suffix(".b01"))  # another plan's boundary file
    r = run_plan(plan, engine="linux", results_dir=results)
    assert not r.ok and r.problem == "input" and "written for plan '50-year storm'" in r.reason
    prepare_for_linux(prj, "p01")
    later = prj.with_suffix(".b01").stat().st_mtime + 600
    os.utime(prj.with_suffix(".u01"), (later, later))  # the flow edited after the plan was prepared
    r = run_plan(plan, engine="linux", results_dir=results)
    assert not r.ok and r.problem == "input" and "older than the plan" in r.reason and "Demo.u01" in r.reason
    assert run_folders(tmp_path) == []


# --------------------------------------------------------------------------- the fake engine's own checks


def fake_run(folder: Path, home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "FAKE_RAS_CONFIG")}
    if env is None:
        env = engine_environment(install_at(home), 1, base=base)
    return subprocess.run([str(home / args[0]), *args[1:]], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


def test_fake_rasunsteady_checks_its_inputs_like_the_real_one(tmp_path):
    home = make_linux_install(tmp_path / "engines", "6.6")
    prj = project(tmp_path)
    folder = prj.parent
    prepare_for_linux(prj, "p01")
    bare = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    done = fake_run(folder, home, "RasUnsteady", "Demo.p01.tmp.hdf", "x01", env=bare)
    assert done.returncode == 127 and "error while loading shared libraries: libifport.so.5" in done.stderr
    for missing, name in (("Demo.b01", "Demo.b01"), ("Demo.x01", "Demo.x01")):
        (folder / missing).rename(folder / (missing + ".away"))
        done = fake_run(folder, home, "RasUnsteady", "Demo.p01.tmp.hdf", "x01")
        assert done.returncode == 29 and "forrtl: severe (29): file not found, unit" in done.stdout
        assert str(folder / name) in done.stdout
        (folder / (missing + ".away")).rename(folder / missing)
    done = fake_run(folder, home, "RasUnsteady", "Demo.p01.tmp.hdf", "x01")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "Finished Unsteady Flow Simulation" and any(x.startswith("SIMTIME=") for x in lines)
    assert (folder / "Demo.p01.tmp.hdf").is_file() and not (folder / "Demo.p01.hdf").exists()  # the caller renames
    done = fake_run(folder, home, "RasUnsteady", "Demo.p01.tmp.hdf", "x01")  # it holds Results now
    assert done.returncode == 1 and "already contains results" in done.stdout
    done = fake_run(folder, home, "RasUnsteady", "Demo.p01.hdf")
    assert done.returncode == 2 and "usage" in done.stdout


def test_stack_limits_are_raised_never_lowered(tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    log = tmp_path / "log.txt"
    run_process(["sh", "-c", "ulimit -s"], cwd=tmp_path, log=log, timeout=60,
                limits={resource.RLIMIT_STACK: resource.RLIM_INFINITY})
    shown = log.read_text().splitlines()[1]
    assert shown == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard // 1024))
    log.unlink()
    run_process(["sh", "-c", "ulimit -s"], cwd=tmp_path, log=log, timeout=60, limits={resource.RLIMIT_STACK: 1024})
    shown = log.read_text().splitlines()[1]
    assert shown == ("unlimited" if soft == resource.RLIM_INFINITY else str(soft // 1024))
