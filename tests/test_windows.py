"""Windows' file rules, made to happen on Linux (``fake_windows``): a file some process holds open
cannot be renamed or deleted, nor can a folder with such a file in it. An engineer's RAS Mapper
or notebook on the previous results must never cost a run or a result."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dask_hecras import Project, open_results, run_plan
from dask_hecras.batch import submit
from dask_hecras.examples import make_project
from dask_hecras.records import BESIDE, load_result, write_json

from .fake_windows import files_in_use_like_windows, held_open
from .test_chaos import office  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parents[1]


class Reader:
    """Another process holding files open, as RAS Mapper or a notebook does, until ``close``."""

    def __init__(self, *paths: Path):
        code = ("import sys, time\nheld = [open(p, 'rb') for p in sys.argv[1:]]\nprint('open', flush=True)\n"
                "time.sleep(600)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code, *map(str, paths)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "open"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_the_fake_refuses_what_windows_refuses(tmp_path, monkeypatch):
    """The stand-in itself: held files and their folders cannot move or go; others can."""
    files_in_use_like_windows(monkeypatch.setattr)
    folder = tmp_path / "p01"
    folder.mkdir()
    (folder / "a.hdf").write_bytes(b"x")
    (folder / "b.txt").write_bytes(b"y")
    reader = Reader(folder / "a.hdf")
    try:
        assert held_open(folder) and held_open(folder / "a.hdf") and not held_open(folder / "b.txt")
        for attempt in (lambda: os.replace(folder, tmp_path / "moved"), lambda: os.unlink(folder / "a.hdf"),
                        lambda: os.replace(tmp_path / "new", folder / "a.hdf")):
            (tmp_path / "new").write_bytes(b"z")
            with pytest.raises(PermissionError) as e:
                attempt()
            assert e.value.winerror == 32
        os.replace(folder / "b.txt", folder / "c.txt")  # a file nobody holds: fine
    finally:
        reader.close()
    os.replace(folder, tmp_path / "moved")


def test_a_record_is_written_once_its_reader_lets_go(tmp_path, monkeypatch):
    """``result.json`` (and every record) replaced while someone reads it: the write waits for
    the reader instead of failing."""
    files_in_use_like_windows(monkeypatch.setattr)
    path = tmp_path / "result.json"
    write_json(path, {"n": 1})
    held = open(path, "rb")
    threading.Timer(0.4, held.close).start()
    t = time.monotonic()
    write_json(path, {"n": 2})
    assert time.monotonic() - t >= 0.3 and path.read_text().count('"n": 2') == 1
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temporary file left"


@pytest.mark.parametrize("code", [errno.EEXIST, errno.EBUSY])
def test_a_record_another_pc_holds_on_a_linux_smb_mount_is_written_once_it_lets_go(tmp_path, monkeypatch, code):
    """A Linux PC's SMB client reports a file another PC holds open as EEXIST or EBUSY (seen with
    Samba in test_smb_share), not Windows' access denied: the write waits for it too."""
    real, refused = os.replace, []

    def replace(src, dst):
        if len(refused) < 3:
            refused.append(dst)
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "result.json"
    write_json(path, {"n": 2})
    assert len(refused) == 3 and json.loads(path.read_text()) == {"n": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temporary file left"


def test_a_project_folder_being_claimed_by_another_pc_is_shared_not_split(tmp_path):
    """Another PC has just created the project's mark and not yet written it: this PC waits for
    it rather than taking the next name (one project split over River and River_study)."""
    from dask_hecras.records import PROJECT_MARK, claim_project_folder, project_key

    prj = "/studies/study/River/River.prj"
    (tmp_path / "River").mkdir()
    (tmp_path / "River" / PROJECT_MARK).touch()
    threading.Timer(0.3, lambda: (tmp_path / "River" / PROJECT_MARK).write_text(
        json.dumps({"key": project_key(prj), "project": prj, "name": "River"}))).start()
    assert claim_project_folder(tmp_path, prj) == tmp_path / "River"


def test_results_held_open_never_cost_the_new_run(demo, results, monkeypatch):
    """A run ends while a reader holds the previous results of its plan: the new results land
    whole beside them and are the plan's outcome at once (records, ``open_results``); the old
    files are untouched. The next landing, once the reader let go, puts them back in place."""
    files_in_use_like_windows(monkeypatch.setattr)
    plan = Project(demo).plan("p01")
    first = run_plan(plan, results_dir=results)
    folder = results / "Demo" / "p01"
    assert first.ok and first.folder == folder and first.summary is not None, first.reason
    reader = Reader(first.hdf, first.summary)
    try:
        second = run_plan(plan, results_dir=results)
        assert second.ok and second.folder.name.startswith(f"p01{BESIDE}"), second.folder
        assert "in use" in second.reason and second.summary == second.folder / "summary.nc"
        assert second.summary.is_file() and second.hdf.is_file()
        back = load_result(folder)
        assert back.attempt_id == second.attempt_id and back.folder == second.folder and back.hdf == second.hdf
        assert load_result(first.folder).summary == second.summary
        ds = open_results(results)
        assert list(ds.plan.values) == ["p01"]
        assert (folder / "result.json").is_file() and first.hdf.is_file(), "the held results are not touched"
        third = run_plan(plan, results_dir=results)  # still held: beside again, the older beside one goes
        assert third.folder.name.startswith(f"p01{BESIDE}") and third.folder != second.folder
        assert not second.folder.exists()
        assert load_result(folder).attempt_id == third.attempt_id
    finally:
        reader.close()
    fourth = run_plan(plan, results_dir=results)
    assert fourth.ok and fourth.folder == folder and load_result(folder).attempt_id == fourth.attempt_id
    assert sorted(p.name for p in (results / "Demo").iterdir()) == [".attempts", ".project.json", "p01"]


def test_moved_in_place_by_the_next_landing(demo, results, monkeypatch):
    """Results that landed beside a held folder move into ``<plan>`` when the plan lands again
    (here a failure, which must not replace them: it lands in ``<plan>.failed``)."""
    files_in_use_like_windows(monkeypatch.setattr)
    plan = Project(demo).plan("p02")
    first = run_plan(plan, results_dir=results)
    reader = Reader(first.hdf)
    try:
        second = run_plan(plan, results_dir=results)
    finally:
        reader.close()
    assert second.folder.name.startswith(f"p02{BESIDE}")
    (demo.parent / "fake-ras.json").write_text('{"p02": {"seconds": 0.2, "outcome": "unstable"}}')
    failed = run_plan(plan, results_dir=results, raise_retryable=False)
    assert not failed.ok and failed.folder.name == "p02.failed"
    kept = load_result(results / "Demo" / "p02")
    assert kept.attempt_id == second.attempt_id and kept.folder == results / "Demo" / "p02"
    assert kept.hdf.is_file() and kept.summary.is_file()
    assert not list((results / "Demo").glob(f"p02{BESIDE}*"))


def test_a_batch_lands_beside_results_an_engineer_holds_open(office, tmp_path):  # noqa: F811
    """End to end on real processes, the workers following Windows' rules: the study is run
    again while a reader holds a plan's previous HDF and summary open. Every plan lands, each
    engine ran once, and the status, results and study dataset are the new batch's."""
    prj = make_project(tmp_path / "project", n_plans=3,
                       behaviour={f"p0{i}": {"seconds": 0.5} for i in range(1, 4)})
    results = tmp_path / "results"
    o = office()
    o.scheduler()
    preload = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    o.env.update(preload)
    o._start("pc0", [str(Path(sys.executable).parent / "dask"), "worker", o.address, "--name", "pc0",
                     "--nworkers", "1", "--nthreads", "2", "--resources", "RAS=1", "--no-dashboard",
                     "--preload", "dask_hecras.worker", "--preload", "tests.fake_windows",
                     "--local-directory", str(o.folder / "pc0")],
             {"DASK_HECRAS__SCRATCH": str(o.folder / "pc0" / "scratch")})
    with o.client() as client:
        client.wait_for_workers(1, timeout=120)
        assert client.run(lambda: os.replace.__module__) == {w: "tests.fake_windows" for w in client.scheduler_info()["workers"]}
        plans = Project(prj).plans
        first = submit(client, plans, results_dir=results).results(timeout=300)
        assert all(r.ok for r in first)
        held = first[0]
        reader = Reader(held.hdf, held.summary)
        try:
            batch = submit(client, plans, results_dir=results, force=True)
            again = batch.results(timeout=300)
            assert all(r.ok and r.batch == batch.id for r in again), [(r.plan_id, r.reason) for r in again]
            assert again[0].folder.name.startswith(f"p01{BESIDE}") and again[0].summary.is_file()
            assert [r.folder.name for r in again[1:]] == ["p02", "p03"]
            ds = open_results(results)
            assert sorted(ds.plan.values) == ["p01", "p02", "p03"]
            from dask_hecras import ledger
            st = ledger.status(results, batch.id)
            assert st.finished and st.counts() == {"succeeded": 3}
            assert held.hdf.is_file(), "the held results are not touched"
        finally:
            reader.close()
        starts = Counter(line[1] for line in o.journal_lines() if line[0] == "start")
        assert starts == {"Demo.p01": 2, "Demo.p02": 2, "Demo.p03": 2}, f"each plan's engine ran once per batch: {starts}"


# --- DSS files: HEC-DSS opens them for writing, and an unsteady plan writes its hydrographs into one ---


def _dss_records(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("fake DSS record")]


def test_a_dss_file_is_staged_as_a_writable_copy_and_lands_with_the_results(demo, results, tmp_path):
    """Never a cache link: on Windows every hard link of a blob shares its read-only attribute,
    and HEC-RAS could not open the plan's DSS (or would write into the shared blob). The source
    may itself be read-only (a project from a CD or version control)."""
    import stat as stat_

    from .conftest import folder_digest

    source = demo.parent / "Demo.dss"
    source.write_text("source DSS catalogue\n")
    source.chmod(0o444)
    plan = Project(demo).plan("p01")
    assert plan.output_dss == source
    assert [f.role for f in plan.inputs() if f.path == source] == ["dss"], "listed once, as a DSS file"
    before = folder_digest(demo.parent)
    from dask_hecras.staging import stage

    staged = stage(plan)
    copy = staged.prj.parent / "Demo.dss"
    assert copy.stat().st_nlink == 1 and copy.stat().st_mode & stat_.S_IWRITE, "a real, writable copy"
    assert copy.read_text() == source.read_text()
    def contents(path):  # the cache hashes in the background: its temporary files come and go
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    blobs = [p for p in (tmp_path / "scratch" / "cache").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert blobs and not any(contents(p) == source.read_bytes() for p in blobs), "no DSS blob in the cache"

    r = run_plan(plan, results_dir=results)
    assert r.ok, r.reason
    landed = r.folder / "Demo.dss"
    assert landed.read_text().startswith("source DSS catalogue\n") and len(_dss_records(landed)) == 1
    assert folder_digest(demo.parent) == before, "the source project is never written"


def test_a_plan_without_a_dss_file_gets_the_one_its_run_makes(demo, results):
    assert not (demo.parent / "Demo.dss").exists()
    r = run_plan(Project(demo).plan("p02"), results_dir=results)
    assert r.ok and len(_dss_records(r.folder / "Demo.dss")) == 1
    assert not (demo.parent / "Demo.dss").exists()


def test_the_fake_engine_fails_on_a_read_only_dss_as_hec_ras_does(demo):
    """What a linked (read-only) DSS would do to a real run: the engine stops, no results."""
    (demo.parent / "Demo.dss").write_text("x\n")
    (demo.parent / "Demo.dss").chmod(0o444)
    r = subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(demo), str(demo.with_suffix(".p01"))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Error opening DSS file" in r.stdout and "Demo.dss" in r.stdout
    assert not demo.with_suffix(".p01.hdf").exists()


def test_an_output_dss_outside_the_project_is_refused_unless_allowed(demo, tmp_path):
    import dask.config

    from dask_hecras.project import ProjectError

    plan_file = demo.with_suffix(".p01")
    plan_file.write_text(plan_file.read_text().replace("DSS File=dss", "DSS File=..\\common\\Out.dss"))
    with pytest.raises(ProjectError, match="outside the project folder") as e:
        Project(demo).plan("p01").inputs()
    assert "Out.dss" in str(e.value)
    (tmp_path / "common").mkdir()
    with dask.config.set({"hecras.allowed-roots": [str(tmp_path / "common")]}):
        plan = Project(demo).plan("p01")
        assert plan.output_dss == tmp_path / "common" / "Out.dss"
        assert Path(plan.output_dss) not in [f.path for f in plan.inputs()], "not there yet: made by the run"


def test_an_input_on_another_drive_is_refused_before_anything_is_copied(demo, tmp_path, monkeypatch):
    """Windows' ``relpath`` cannot join two drives (``D:\\common`` from ``P:\\project``): such a
    file cannot be mirrored in the run folder, and HEC-RAS would write the share's copy."""
    import dask.config

    from dask_hecras import staging
    from dask_hecras.project import ProjectError

    common = tmp_path / "common"
    common.mkdir()
    (common / "Out.dss").write_text("shared\n")
    plan_file = demo.with_suffix(".p01")
    plan_file.write_text(plan_file.read_text().replace("DSS File=dss", "DSS File=..\\common\\Out.dss"))
    relpath = os.path.relpath

    def windows_relpath(path, start=os.curdir):
        if Path(path).is_relative_to(common):
            raise ValueError("path is on mount 'D:', start on mount 'P:'")
        return relpath(path, start)

    monkeypatch.setattr(staging.os.path, "relpath", windows_relpath)
    with dask.config.set({"hecras.allowed-roots": [str(common)]}):
        with pytest.raises(ProjectError, match="another drive") as e:
            staging.stage(Project(demo).plan("p01"))
    assert str(common / "Out.dss") in str(e.value) and str(demo) in str(e.value)
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or not [p for p in scratch.iterdir() if p.name != "cache"], "nothing staged"


# --- drive letters: what the client types, and what the cluster's other PCs can open ---


def _drives():
    from .fake_windows import FakeDrives

    long_share = "\\\\fileserver.corp.example\\" + "hydraulics-" * 30  # past the first 260-character buffer
    return FakeDrives({"C:": 3, "D:": 2, "P:": 4, "Q:": 4, "R:": 4, "S:": 4}, {"P:": "\\\\fs\\projects",
                      "Q:": long_share, "R:": "\\\\fs\\archive\\"}, remembered=("R:",)), long_share


def test_a_mapped_drive_is_sent_as_its_share():
    from dask_hecras.shares import for_cluster

    fake, long_share = _drives()
    assert for_cluster("P:\\studies\\River\\River.prj", other_pcs=True, windll=fake) == \
        "\\\\fs\\projects\\studies\\River\\River.prj"
    assert for_cluster("p:/studies/results", other_pcs=False, windll=fake) == "\\\\fs\\projects\\studies\\results"
    assert for_cluster("Q:\\River.prj", other_pcs=True, windll=fake) == long_share + "\\River.prj"
    assert fake.mpr.WNetGetConnectionW.calls == 4, "asked again with the size Windows said it needs"
    # remembered but not connected at this moment (the laptop's VPN not up yet): still its share
    assert for_cluster("R:\\old\\River.prj", other_pcs=True, windll=fake) == "\\\\fs\\archive\\old\\River.prj"
    for same in ("\\\\fs\\projects\\River.prj", "/mnt/projects/River.prj", "relative\\River.prj"):
        assert for_cluster(same, other_pcs=True, windll=fake) == same


def test_a_path_on_this_pcs_own_drives_is_refused_for_other_pcs_only():
    from dask_hecras.shares import UnreachablePath, for_cluster

    fake, _ = _drives()
    assert for_cluster("C:\\studies\\River.prj", other_pcs=False, windll=fake) == "C:\\studies\\River.prj"
    with pytest.raises(UnreachablePath, match=r"C:\\studies\\River.prj: C: is a local disk of this PC") as e:
        for_cluster("C:\\studies\\River.prj", other_pcs=True, windll=fake)
    assert "\\\\server\\share" in str(e.value)
    with pytest.raises(UnreachablePath, match="D: is a removable drive"):
        for_cluster("D:\\River.prj", other_pcs=True, windll=fake)
    # a network drive whose share this session cannot read (mapped by an administrator's login)
    with pytest.raises(UnreachablePath, match="S: is a network drive.*error 2250"):
        for_cluster("S:\\River.prj", other_pcs=True, windll=fake)


def test_the_branch_a_windows_client_takes(monkeypatch):
    """No ``windll`` given: on Windows the real ``ctypes.windll`` is asked; elsewhere nothing."""
    import ctypes

    from dask_hecras.shares import for_cluster

    fake, _ = _drives()
    assert for_cluster("P:\\x.prj", other_pcs=True) == "P:\\x.prj", "not Windows: left alone"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", fake, raising=False)
    assert for_cluster("P:\\x.prj", other_pcs=True) == "\\\\fs\\projects\\x.prj"


def test_what_a_dead_pcs_landing_left_goes_when_the_plan_lands(demo, results):
    """A PC killed mid-landing leaves a hidden incoming folder no attempt of its will clear
    (seen on the SMB share): the plan's next landing removes those untouched for a day, never a
    landing still copying."""
    from dask_hecras.records import claim_project_folder

    project_dir = claim_project_folder(results, demo)
    old, fresh = project_dir / ".p01.incoming-direct-dead-a1-0123abcd", project_dir / ".p01.incoming-other-a2-4567ef01"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "Demo.p01.hdf").write_bytes(b"half a copy")
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    assert run_plan(Project(demo).plan("p01"), engine="fake", results_dir=results).ok
    assert not old.exists() and fresh.is_dir()
