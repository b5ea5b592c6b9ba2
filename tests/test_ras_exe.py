from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import dask.config
import pytest

from dask_hecras import Project, RetryableFailure, run_plan
from dask_hecras.engines import EngineNotFound, RasExe, get_engine
from dask_hecras.engines.ras import choose_install, find_installs


def fake_install(root: Path, version: str, exe_name: str = "Ras.exe", script: str | None = None) -> Path:
    folder = root / version
    folder.mkdir(parents=True)
    exe = folder / exe_name
    exe.write_text(script or "not a real program")
    if script:
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


@pytest.fixture
def installs(tmp_path):
    root = tmp_path / "Program Files (x86)" / "HEC" / "HEC-RAS"
    for v in ("5.0.7", "6.3.1", "6.5"):
        fake_install(root, v)
    fake_install(root, "6.6", exe_name="RAS.EXE")  # Windows names are case-insensitive
    (root / "6.4").mkdir()  # an uninstalled version leaves an empty folder
    (root / "Docs").mkdir()
    return root


def test_discovery_finds_versions_with_ras_exe(installs):
    found = find_installs([installs])
    assert [i.label for i in found] == ["5.0.7", "6.3.1", "6.5", "6.6"]
    assert found[-1].exe.name == "RAS.EXE"


def test_discovery_reads_standard_folders_from_the_environment(installs, monkeypatch):
    monkeypatch.setenv("ProgramFiles(x86)", str(installs.parent.parent))
    monkeypatch.delenv("ProgramFiles", raising=False)
    assert [i.label for i in RasExe().installs()] == ["5.0.7", "6.3.1", "6.5", "6.6"]


@pytest.mark.parametrize("plan_version,choice,expected", [
    ("6.50", "plan", "6.5"),      # the version that wrote the plan
    ("6.31", "plan", "6.3.1"),
    ("6.40", "plan", "6.5"),      # not installed: the oldest newer one
    ("", "plan", "6.6"),          # unknown: the newest
    ("5.07", "newest", "6.6"),
    ("6.50", "6.3.1", "6.3.1"),   # pinned by hecras.ras-version
])
def test_version_choice(installs, plan_version, choice, expected):
    assert choose_install(find_installs([installs]), plan_version, choice).label == expected


def test_version_choice_refuses_older_than_the_plan(installs):
    with pytest.raises(EngineNotFound, match="only older versions"):
        choose_install(find_installs([installs]), "6.70", "plan")
    with pytest.raises(EngineNotFound, match="6.2 is not installed"):
        choose_install(find_installs([installs]), "6.50", "6.2")


def test_command_line(installs, demo):
    plan = Project(demo).plan("p01")
    prj, plan_file = Path("D:/work/Demo.prj"), Path("D:/work/Demo.p01")
    cmd = RasExe(roots=[installs]).command(prj, plan_file, plan)  # demo plans say Program Version=6.60
    assert cmd == [str(installs / "6.6" / "RAS.EXE"), "-c", str(prj), str(plan_file)]
    with dask.config.set({"hecras.ras-exe": str(installs / "6.3.1" / "Ras.exe")}):
        assert RasExe().command(prj, plan_file, plan)[0] == str(installs / "6.3.1" / "Ras.exe")
    with dask.config.set({"hecras.ras-version": "6.5"}):
        assert RasExe(roots=[installs]).command(prj, plan_file, plan)[0] == str(installs / "6.5" / "Ras.exe")


def test_engines_are_chosen_by_name(tmp_path, demo, results):
    assert get_engine("ras").name == "ras" and get_engine("fake").name == "fake"
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("/usr/bin/rm")
    # An engine object from a client could name any executable: refused before anything runs.
    marker = tmp_path / "ran"
    with pytest.raises(TypeError, match="chosen by name"):
        run_plan(Project(demo).plan("p01"), engine=RasExe(exe=f"/bin/touch {marker}"), results_dir=results)
    assert not marker.exists() and not results.exists()
    from dask_hecras.batch import submit

    for bad in ("/bin/sh", RasExe(exe="/bin/sh")):  # refused on the client, before any task is sent
        with pytest.raises(ValueError, match="engine must be one of"):
            submit(None, Project(demo).plans, engine=bad, results_dir=results)


def test_no_hecras_is_a_retryable_failure_naming_the_machine(tmp_path, demo, results):
    with dask.config.set({"hecras.ras-roots": [str(tmp_path / "none")]}), pytest.raises(RetryableFailure) as e:
        run_plan(Project(demo).plan("p01"), engine="ras", results_dir=results)
    r = e.value.result
    assert r.status == "failed" and r.retryable
    assert "not installed" in r.reason and r.host in r.reason


@pytest.mark.skipif(os.name == "nt", reason="uses a POSIX shell script as Ras.exe")
def test_ras_engine_end_to_end_with_a_stand_in_ras_exe(tmp_path, demo, results):
    """The production Ras.exe path (discovery, command line, runner, validation) with a
    stand-in executable that answers Ras.exe's command line by running the fake engine."""
    root = tmp_path / "HEC-RAS"
    fake_install(root, "6.6", script=f'#!/bin/sh\nexec "{sys.executable}" -m dask_hecras.fake_ras "$@"\n')
    with dask.config.set({"hecras.ras-roots": [str(root)]}):
        r = run_plan(Project(demo).plan("p02"), engine="ras", results_dir=results, timeout="1h")
    assert r.ok, r.reason
    assert r.engine == "ras" and r.exit_code == 0
    log = r.log.read_text()
    assert f"{root / '6.6' / 'Ras.exe'} -c " in log and "Demo.p02" in log


def test_ras_exe_never_runs_without_a_time_limit(tmp_path, demo):
    """A licence or error dialog would hold the PC's slot for ever: no timeout, no run, and the
    PC is taken out of rotation at once, as when HEC-RAS is missing."""
    import sys

    from dask_hecras import Project, run_plan
    from dask_hecras.engines import EngineNotFound
    from dask_hecras.engines.ras import RasExe

    exe = fake_install(tmp_path / "HEC-RAS", "6.6", script=f'#!/bin/sh\nexec "{sys.executable}" -m dask_hecras.fake_ras "$@"\n')
    plan = Project(demo).plan("p01")
    with pytest.raises(EngineNotFound, match="no time limit"):
        RasExe(exe).run(plan, demo, plan.file, log=tmp_path / "log.txt", timeout=None)
    with dask.config.set({"hecras.ras-exe": str(exe), "hecras.timeout": None}):
        refused = run_plan(plan, engine="ras", results_dir=tmp_path / "r", raise_retryable=False)
        assert refused.problem == "engine-not-found" and "hecras.timeout" in refused.reason
        assert run_plan(plan, engine="ras", results_dir=tmp_path / "r", timeout="1h").ok


def test_where_windows_installs_hec_ras_is_looked_at_by_default(monkeypatch):
    """A Scheduled Task may start without ``ProgramFiles`` set: Windows' folders still count."""
    from dask_hecras.engines.ras import standard_roots

    monkeypatch.delenv("ProgramFiles", raising=False)
    monkeypatch.delenv("ProgramFiles(x86)", raising=False)
    assert standard_roots() == []  # not Windows, nothing set: nothing to look at
    monkeypatch.setattr(sys, "platform", "win32")
    assert [str(r) for r in standard_roots()] == [str(Path("C:\\Program Files (x86)") / "HEC" / "HEC-RAS"),
                                                  str(Path("C:\\Program Files") / "HEC" / "HEC-RAS")]


def test_engines_start_in_a_process_group_of_their_own_on_windows(monkeypatch):
    """CREATE_NEW_PROCESS_GROUP: a Ctrl+C meant for the worker's console does not reach Ras.exe."""
    from dask_hecras.engines.runner import _new_group_kwargs

    assert _new_group_kwargs()["start_new_session"] is True
    monkeypatch.setattr(sys, "platform", "win32")
    assert _new_group_kwargs() == {"creationflags": 0x200}
