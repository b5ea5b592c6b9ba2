"""Live progress of a run: the parsers, the file follower, the stall watch, the dialog finder,
and the fake engines writing progress as HEC-RAS does (``NAME.bcoNN``; ``SIMTIME=`` lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from dask_hecras import Project
from dask_hecras.engines.dialogs import open_dialogs
from dask_hecras.engines.runner import run_process
from dask_hecras.fake_ras import PROGRESS_STEPS
from dask_hecras.progress import (BCO, SIMTIME, ProgressFile, RunWatch, StallRule, bco_file, parse_bco_time,
                                  parse_simtime)
from dask_hecras.project import set_plan_detailed

from .fake_windows import FakeDesktop, FakeWindow

START = datetime(2026, 1, 1)


def wait_for(condition, within: float, what: str):
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within:g} s for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize("line, expected", [
    ("01JAN2026  06:20:00  time step     1140 (20SEC)  iterations  3", datetime(2026, 1, 1, 6, 20)),
    ("Time: 01Jan2026 06:20 [  1.25% Done]", datetime(2026, 1, 1, 6, 20)),
    ("01JAN2026 0620", datetime(2026, 1, 1, 6, 20)),
    ("01JAN2026,2400", datetime(2026, 1, 2)),  # the end of a day is the next day's midnight
    ("31DEC2025  24:00:00", datetime(2026, 1, 1)),
    ("15aug1999 12:34:56 max error", datetime(1999, 8, 15, 12, 34, 56)),
    ("The model went unstable at 02JAN2026  04:00:00", datetime(2026, 1, 2, 4)),
])
def test_parse_bco_time(line, expected):
    assert parse_bco_time(line) == expected
    assert parse_bco_time(line + "\r") == expected  # a CRLF line read by \n


@pytest.mark.parametrize("line", [
    "", "Starting Unsteady Flow Computations", "Plan: '100-year storm' (Demo.p03)", "Finished Unsteady Flow Simulation",
    "32JAN2026 06:00",  # no such day
    "01XYZ2026 06:00",  # no such month
    "01JAN2026",  # a date without a time
    "time step 1140 iterations 3",
])
def test_parse_bco_time_without_a_date_time(line):
    assert parse_bco_time(line) is None


@pytest.mark.parametrize("line, expected", [
    ("SIMTIME=12.5", 12.5), ("SIMTIME=7", 7.0), ("SIMTIME= 3.25", 3.25), ("SIMTIME=   0.0000", 0.0),
    ("SIMTIME=-1.5", -1.5), ("SIMTIME= -0.25", -0.25),  # warm-up, before the simulation start
    ("  SIMTIME=4.0000\r", 4.0),
    ("LABEL=Reading Data", None), ("SIMTIME=", None), ("SIMTIME=abc", None), ("", None),
])
def test_parse_simtime(line, expected):
    assert parse_simtime(line) == expected


def test_bco_file_is_named_after_the_plan(tmp_path):
    assert bco_file(tmp_path, "Demo", "p03") == tmp_path / "Demo.bco03"
    assert bco_file(tmp_path, "Muncie", "p12") == tmp_path / "Muncie.bco12"


# --------------------------------------------------------------------------- following a file


def append(path: Path, data: str) -> None:
    with open(path, "ab") as fh:
        fh.write(data.encode())


def test_progress_file_reads_only_what_is_new(tmp_path):
    path = tmp_path / "Demo.bco01"
    source = ProgressFile(path, BCO, START)
    assert source.read() is None  # not written yet: nothing yet
    append(path, "HEC-RAS 6.6\r\nPlan: 'Test' (Demo.p01)\r\nStarting Unsteady Flow Computations\r\n")
    assert source.read() is None  # a header carries no time
    append(path, "01JAN2026  01:00:00  time step 180\r\n")
    assert source.read() == 1.0
    offset = source.offset
    assert source.read() == 1.0 and source.offset == offset  # nothing new: nothing read
    append(path, "01JAN2026  03:0")  # a line still being written
    assert source.read() == 1.0
    append(path, "0:00  time step 540\r\n")
    assert source.read() == 3.0
    append(path, "01JAN2026  04:00:00  a\r\n01JAN2026  05:30:00  b\r\nnot a time\r\n")  # several at once
    assert source.read() == 5.5  # the latest time read wins
    append(path, "02JAN2026  00:00:00  c\r\n")
    assert source.read() == 24.0
    path.write_bytes(b"Starting Unsteady Flow Computations\r\n01JAN2026  00:30:00  again\r\n")  # started again
    assert path.stat().st_size < source.offset
    assert source.read() == 0.5, "a shorter file is the engine starting again: read from its beginning"
    append(path, "01JAN2026  00:45:00\r\n")
    assert source.read() == 0.75


def test_progress_file_of_simtime_lines_in_an_engine_log(tmp_path):
    log = tmp_path / "engine.log"
    source = ProgressFile(log, SIMTIME, START)
    append(log, "$ RasUnsteady Demo.p01.tmp.hdf x01\nLABEL=Reading Data\nSIMTIME=-0.5\n")
    assert source.read() == -0.5  # warm-up
    append(log, "SIMTIME= 2.0\nSIMTIME=")
    assert source.read() == 2.0
    append(log, "3.25\n")
    assert source.read() == 3.25


def test_progress_file_checks_its_kind_and_needs_a_start_for_dates(tmp_path):
    with pytest.raises(ValueError):
        ProgressFile(tmp_path / "x", "percent", START)
    path = tmp_path / "Demo.bco01"
    path.write_text("01JAN2026  01:00:00\n")
    assert ProgressFile(path, BCO, None).read() is None  # a date without the window's start says nothing


# --------------------------------------------------------------------------- watching a run


class Clock:
    def __init__(self):
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def bco_line(hours: float) -> str:
    t = START + timedelta(hours=hours)
    return f"{t.strftime('%d%b%Y').upper()}  {t.strftime('%H:%M:%S')}  time step\r\n"


def test_run_watch_fraction_pace_and_time_left(tmp_path):
    path, clock = tmp_path / "Demo.bco01", Clock()
    path.write_text("Starting Unsteady Flow Computations\r\n")
    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=StallRule(after=60), interval=2.0, clock=clock)
    assert watch.poll() is None and watch.still_seconds == 0.0  # the first poll reads at once: nothing yet
    clock.now += 2
    append(path, bco_line(0))
    first = watch.poll()
    assert first is not None and first.source == BCO
    assert (first.fraction, first.sim_hours, first.window_hours, first.wall_seconds) == (0.0, 0.0, 24.0, 2.0)
    assert first.pace is None and first.left_seconds is None  # no simulated time yet
    clock.now += 2
    append(path, bco_line(1))
    p = watch.poll()
    assert p.fraction == pytest.approx(1 / 24) and p.wall_seconds == 4.0
    assert p.pace == pytest.approx(2.0)  # wall seconds per simulated hour, from the first reading on
    assert p.left_seconds == pytest.approx(2.0 * 23)
    clock.now += 1
    append(path, bco_line(2))
    assert watch.poll() is None, "read at most every interval"
    clock.now += 1
    assert watch.poll().sim_hours == 2.0
    clock.now += 2
    assert watch.poll() is None and watch.still_seconds == 2.0  # nothing new
    clock.now += 2
    append(path, bco_line(6))
    p = watch.poll()
    assert p.still_seconds == 0.0 and watch.longest_still == 4.0
    assert p.fraction == 0.25 and p.wall_seconds == 10.0
    assert p.pace == pytest.approx(8 / 6) and p.left_seconds == pytest.approx(8 / 6 * 18)
    assert p.as_dict()["fraction"] == 0.25
    assert not watch.stall and watch() is False


def test_run_watch_calls_a_stall_after_a_fixed_time(tmp_path):
    path, clock = tmp_path / "Demo.bco01", Clock()
    path.write_text(bco_line(0) + bco_line(43))
    watch = RunWatch(ProgressFile(path, BCO, START), 100.0, rule=StallRule(after=300), interval=2.0, clock=clock)
    assert watch.poll().fraction == 0.43
    for _ in range(149):
        clock.now += 2
        assert watch() is False
    assert watch.still_seconds == 298.0
    clock.now += 2
    reason = watch()
    assert reason == "no progress for 5 min at 43% of the simulation: a dialog or a hang"
    assert watch.stall == reason
    append(path, bco_line(44))  # the stall stands: the runner stops the run at the first
    clock.now += 2
    assert watch() == reason


def test_run_watch_auto_rule_sizes_the_limit_from_the_run(tmp_path):
    rule = StallRule(floor=30, startup=100, factor=3)
    path, clock = tmp_path / "Demo.bco01", Clock()
    path.write_text("Starting Unsteady Flow Computations\r\n")
    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=rule, interval=2.0, clock=clock)
    watch.poll()
    clock.now += 98  # start-up (preprocessing, a licence dialog): the start-up limit
    assert watch() is False
    clock.now += 2
    assert watch() == "no progress for 100 s before any simulation time was reached: a dialog or a hang"

    path, clock = tmp_path / "Demo.bco02", Clock()
    path.write_text("")
    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=rule, interval=2.0, clock=clock)
    watch.poll()
    hours = 0
    for still in (4, 20, 6):  # moves after standing still that long; the longest: 20 s
        clock.now += still
        hours += 3
        append(path, bco_line(hours))
        assert watch.poll() is not None
    assert watch.longest_still == 20.0
    clock.now += 58  # 3 x 20 s = 60 s, above the 30 s floor
    assert watch() is False
    clock.now += 2
    assert watch() == "no progress for 60 s at 38% of the simulation: a dialog or a hang"

    path, clock = tmp_path / "Demo.bco03", Clock()
    path.write_text(bco_line(0))
    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=rule, interval=2.0, clock=clock)
    watch.poll()
    clock.now += 2
    append(path, bco_line(1))
    watch.poll()  # stood still 2 s at most: the floor rules
    clock.now += 28
    assert watch() is False
    clock.now += 2
    assert watch().startswith("no progress for 30 s at 4% of the simulation")
    assert not RunWatch(ProgressFile(path, BCO, START), 24.0, rule=StallRule(enabled=False), clock=clock).stall


def test_run_watch_leaves_suspended_time_out(tmp_path):
    path, clock = tmp_path / "Demo.bco01", Clock()
    path.write_text(bco_line(0))
    paused = [False]
    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=StallRule(after=10), interval=2.0, clock=clock,
                     suspended=lambda: paused[0])
    watch.poll()
    clock.now += 4
    append(path, bco_line(2))
    assert watch.poll().pace == pytest.approx(2.0)
    paused[0] = True  # the owner came back: the engine is paused, for a long while
    for _ in range(300):
        clock.now += 2
        assert watch() is False
    assert watch.still_seconds == 0.0 and watch.run_seconds == 4.0, "suspended time is neither run time nor still"
    paused[0] = False
    clock.now += 2
    append(path, bco_line(4))
    p = watch.poll()
    assert p.wall_seconds == 6.0 and p.pace == pytest.approx(1.5)  # 6 s of running for 4 simulated hours
    for _ in range(4):
        clock.now += 2
        assert watch() is False
    clock.now += 2
    assert watch().startswith("no progress for 10 s at 17% of the simulation")


def test_run_watch_names_the_dialog_it_waits_on(tmp_path):
    path, clock = tmp_path / "Demo.bco01", Clock()
    path.write_text(bco_line(0))
    titles: list[str] = []
    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=StallRule(after=4), interval=2.0, clock=clock,
                     dialogs=lambda: titles)
    watch.poll()
    titles.append("Terms and Conditions for Use (TCU)")
    clock.now += 4
    assert watch() == ('no progress for 4 s at 0% of the simulation: a dialog is open: '
                       '"Terms and Conditions for Use (TCU)"')

    def broken() -> list[str]:
        raise OSError("no desktop")

    watch = RunWatch(ProgressFile(path, BCO, START), 24.0, rule=StallRule(after=4), interval=2.0, clock=clock,
                     dialogs=broken)
    watch.poll()
    clock.now += 4
    assert watch().endswith(": a dialog or a hang")


# --------------------------------------------------------------------------- dialogs (Windows)


@pytest.fixture(scope="module")
def engine_tree():
    """A real process with a child (as Ras.exe with RasUnsteady.exe): ``(root, child)`` pids."""
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(120)'])"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        root = psutil.Process(proc.pid)
        child = wait_for(lambda: root.children(), 30, "the child process")[0]
        yield proc.pid, child.pid
    finally:
        try:
            members = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
        except psutil.NoSuchProcess:
            members = []
        for p in members:  # the child first: its parent reaps it at once
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
            psutil.wait_procs([p], timeout=10)
        proc.wait(timeout=10)


def desktop(root: int, child: int, **kwargs) -> FakeDesktop:
    other = os.getpid()  # a process outside the engine's tree
    big = 0x1_0000_0000  # handles past 2**31: passed as C ints (no argtypes), they would not fit
    return FakeDesktop([
        FakeWindow(big + 0x10, "WindowsForms10.Window.8.app.0.1ca0192_r6_ad1", "HEC-RAS 6.6", root),  # not a dialog
        FakeWindow(big + 0x20, "#32770", "Save changes?", other),  # another program's dialog
        FakeWindow(big + 0x30, "#32770", "Computing", child, visible=False),  # hidden
        FakeWindow(big + 0x40, "#32770", "Terms and Conditions for Use (TCU)", child),
        FakeWindow(big + 0x50, "#32770", "Fehler – Datei nicht gefunden", root),
        FakeWindow(big + 0x60, "Shell_TrayWnd", "", other),
    ], **kwargs)


def test_open_dialogs_of_the_engine_tree(engine_tree, capfd):
    root, child = engine_tree
    fake = desktop(root, child)
    assert open_dialogs([root, child], user32=fake.user32) == ["Terms and Conditions for Use (TCU)",
                                                               "Fehler – Datei nicht gefunden"]
    assert open_dialogs(iter([child]), user32=fake.user32) == ["Terms and Conditions for Use (TCU)"]
    assert open_dialogs([], user32=fake.user32) == []
    assert fake.user32.EnumWindows.argtypes is not None and fake.user32.GetWindowThreadProcessId.restype is not None
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("broken", ["EnumWindows", "GetWindowThreadProcessId", "GetClassNameW", "GetWindowTextW"])
def test_open_dialogs_never_raises(engine_tree, broken, capfd):
    root, child = engine_tree
    assert open_dialogs([root, child], user32=desktop(root, child, broken=broken).user32) == []
    assert capfd.readouterr().err == "", "an exception in the callback crossed the C boundary"


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows there is no ctypes.windll")
def test_open_dialogs_off_windows_is_empty():
    assert open_dialogs([os.getpid()]) == []


# --------------------------------------------------------------------------- the fake engines


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie is dead, not yet reaped
    except psutil.NoSuchProcess:
        return False


def window_hours(plan) -> float:
    return (plan.end - plan.start).total_seconds() / 3600


def fake_ras(prj: Path, plan_id: str) -> list[str]:
    return [sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(prj.with_suffix(f".{plan_id}"))]


class Recorder:
    """A ``cancel`` check that reads a progress file while the engine runs and never cancels."""

    def __init__(self, source: ProgressFile):
        self.source, self.readings = source, []

    def __call__(self) -> bool:
        hours = self.source.read()
        if hours is not None and (not self.readings or hours != self.readings[-1][1]):
            self.readings.append((time.monotonic(), hours))
        return False


def test_fake_ras_writes_its_progress_to_the_bco_as_it_computes(demo, tmp_path):
    plan_file = demo.with_suffix(".p01")
    assert b"Write Detailed= 0 \r\n" in plan_file.read_bytes()  # HEC-RAS's default
    set_plan_detailed(plan_file)
    text = plan_file.read_bytes()
    assert text.count(b"Write Detailed=") == 1 and b"\r\nWrite Detailed= 1 \r\n" in text
    plan = Project(demo).plan("p01")
    window = window_hours(plan)
    bco = bco_file(demo.parent, plan.project_name, plan.id)
    recorder = Recorder(ProgressFile(bco, BCO, plan.start))
    r = run_process([*fake_ras(demo, "p01"), "--seconds", "3"], cwd=demo.parent, log=tmp_path / "p01.log",
                    timeout=120, cancel=recorder)
    assert r.exit_code == 0, r.log.read_text()
    hours = [h for _, h in recorder.readings]
    assert len(hours) >= 5, f"too few readings while it ran: {recorder.readings}"
    assert hours == sorted(set(hours)), "the simulation time read only goes up"
    assert hours[0] < window / 2 and 0 < hours[-2] < window
    assert recorder.readings[-1][0] - recorder.readings[0][0] >= 1.5, "progress spread over the compute time"
    assert recorder.source.read() == window  # the end of the window, at the end
    lines = bco.read_bytes().decode().split("\r\n")
    times = [parse_bco_time(line) for line in lines if parse_bco_time(line) is not None]
    assert len(times) == PROGRESS_STEPS + 1 and 18 <= len(times) <= 22
    assert times[0] == plan.start and times[-1] == plan.end
    steps = {b - a for a, b in zip(times, times[1:])}
    assert steps == {(plan.end - plan.start) / PROGRESS_STEPS}, "evenly in simulated time"
    first_time = next(i for i, line in enumerate(lines) if parse_bco_time(line))
    assert "Starting Unsteady Flow Computations" in lines[:first_time]
    assert [line for line in lines if line.strip()][-1] == "Finished Unsteady Flow Simulation"
    stdout = r.log.read_text().splitlines()
    assert len([line for line in stdout if line.startswith("fake-ras: progress ")]) == PROGRESS_STEPS + 1


def test_an_unstable_fake_ras_gets_as_far_as_it_went_unstable(demo, tmp_path):
    import h5py

    (demo.parent / "fake-ras.json").write_text(json.dumps({"p03": {"seconds": 0.3, "outcome": "unstable"}}))
    set_plan_detailed(demo.with_suffix(".p03"))
    plan = Project(demo).plan("p03")
    r = run_process(fake_ras(demo, "p03"), cwd=demo.parent, log=tmp_path / "p03.log", timeout=120)
    assert r.exit_code == 0, r.log.read_text()
    with h5py.File(demo.with_suffix(".p03.hdf")) as f:
        went = f["Results/Unsteady/Summary"].attrs["Time Stamp Solution Went Unstable"].decode()
    bco = bco_file(demo.parent, plan.project_name, plan.id)
    lines = [line for line in bco.read_text().splitlines() if line.strip()]
    times = [parse_bco_time(line) for line in lines if parse_bco_time(line) is not None]
    assert times[0] == plan.start and times[-1] == datetime.strptime(went.title(), "%d%b%Y %H:%M:%S") < plan.end
    assert times == sorted(times) and len(times) == PROGRESS_STEPS + 2  # and the went-unstable line
    assert lines[-2].startswith("The model went unstable at ") and lines[-1] == "Unsteady Flow Simulation Terminated"
    assert ProgressFile(bco, BCO, plan.start).read() == (times[-1] - plan.start).total_seconds() / 3600


def test_no_bco_without_write_detailed(demo, tmp_path):
    r = run_process([*fake_ras(demo, "p02"), "--seconds", "0.1"], cwd=demo.parent, log=tmp_path / "p02.log",
                    timeout=120)
    assert r.exit_code == 0 and demo.with_suffix(".p02.hdf").is_file()
    assert not list(demo.parent.glob("*.bco*"))


def test_a_stalled_fake_ras_is_stopped_with_its_tree(demo, tmp_path):
    (demo.parent / "fake-ras.json").write_text(json.dumps({"p01": {"seconds": 3, "outcome": "stall"}}))
    set_plan_detailed(demo.with_suffix(".p01"))
    plan = Project(demo).plan("p01")
    window = window_hours(plan)
    source = ProgressFile(bco_file(demo.parent, plan.project_name, plan.id), BCO, plan.start)
    # A fixed 2 s once it moves; a generous start-up (two interpreters start on a busy machine).
    watch = RunWatch(source, window, rule=StallRule(startup=60, floor=2.0, factor=4), interval=0.2)
    tree: set[int] = set()

    def cancel():
        try:
            tree.update(c.pid for c in psutil.Process(watch.pids[0]).children(recursive=True))
        except psutil.Error:
            pass
        return watch()

    r = run_process(fake_ras(demo, "p01"), cwd=demo.parent, log=tmp_path / "stall.log", timeout=120, cancel=cancel,
                    on_start=lambda pid: watch.pids.append(pid))
    assert r.cancelled and not r.timed_out, r.log.read_text()
    assert r.cancel_reason.startswith("no progress for ") and r.cancel_reason.endswith(
        "at 40% of the simulation: a dialog or a hang"), r.cancel_reason
    assert source.hours == pytest.approx(0.4 * window)
    assert "Finished" not in source.path.read_text()
    assert tree, "the helper process was never seen"
    alive = [pid for pid in {*watch.pids, *tree} if running(pid)]
    assert alive == [], "a process of the engine's tree outlived the stall"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="HEC-RAS's Linux engine runs on Linux")
def test_fake_linux_engine_prints_simtime_as_it_computes(tmp_path):
    from dask_hecras.engines.linux import engine_environment, install_at
    from dask_hecras.examples import make_linux_install, make_project, prepare_for_linux

    home = make_linux_install(tmp_path / "engines", "6.6")
    prj = make_project(tmp_path / "project", n_plans=1, behaviour={"p01": {"seconds": 2}})
    prepare_for_linux(prj, "p01")
    plan = Project(prj).plan("p01")
    window = window_hours(plan)
    base = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "FAKE_RAS_CONFIG")}
    log = tmp_path / "engine.log"
    recorder = Recorder(ProgressFile(log, SIMTIME, plan.start))
    r = run_process([str(home / "RasUnsteady"), "Demo.p01.tmp.hdf", "x01"], cwd=prj.parent, log=log, timeout=120,
                    cancel=recorder, env=engine_environment(install_at(home), 1, base=base))
    assert r.exit_code == 0, log.read_text()
    hours = [h for _, h in recorder.readings]
    assert len(hours) >= 3 and hours == sorted(set(hours)) and hours[0] < window, recorder.readings
    assert recorder.source.read() == window
    simtimes = [parse_simtime(line) for line in log.read_text().splitlines() if line.startswith("SIMTIME=")]
    assert len(simtimes) == PROGRESS_STEPS + 1
    assert simtimes == pytest.approx([window * k / PROGRESS_STEPS for k in range(PROGRESS_STEPS + 1)])
    assert not list(prj.parent.glob("*.bco*")), "the Linux engine reports on stdout"
