from __future__ import annotations

import sys
import textwrap
import time

import psutil

from dask_hecras.engines.runner import run_process

# A parent that starts a grandchild which ignores the parent's fate, like Ras.exe's helpers.
TREE = textwrap.dedent("""
    import subprocess, sys, time, pathlib
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pathlib.Path(sys.argv[1]).write_text(str(child.pid))
    print("started helper", child.pid, flush=True)
    {tail}
""")


def _script(tmp_path, tail: str):
    path = tmp_path / "tree.py"
    path.write_text(TREE.format(tail=tail))
    return [sys.executable, str(path), str(tmp_path / "child.pid")]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_output_goes_to_log_and_exit_code_is_returned(tmp_path):
    log = tmp_path / "run.log"
    r = run_process([sys.executable, "-c", "import sys; print('hello out'); print('hello err', file=sys.stderr); sys.exit(3)"],
                    cwd=tmp_path, log=log)
    assert r.exit_code == 3 and not r.killed and r.log == log
    text = log.read_text()
    assert "hello out" in text and "hello err" in text and "exit code 3" in text
    assert r.seconds > 0


def test_lots_of_output_does_not_block(tmp_path):
    # 20 MB through an undrained pipe would deadlock; a log file does not.
    r = run_process([sys.executable, "-c", "import sys; sys.stdout.write('x' * 20_000_000)"],
                    cwd=tmp_path, log=tmp_path / "big.log", timeout=60)
    assert r.exit_code == 0
    assert (tmp_path / "big.log").stat().st_size > 20_000_000


def test_timeout_kills_the_whole_tree(tmp_path):
    started = time.monotonic()
    r = run_process(_script(tmp_path, "time.sleep(600)"), cwd=tmp_path, log=tmp_path / "t.log", timeout=1.5)
    assert r.timed_out and r.exit_code is None
    assert time.monotonic() - started < 30
    helper = int((tmp_path / "child.pid").read_text())
    assert _gone(helper), "the helper process outlived the timeout"
    assert "timed out after 1.5 s" in (tmp_path / "t.log").read_text()


def test_cancel_kills_the_whole_tree(tmp_path):
    flag = tmp_path / "stop"
    pids = []
    r = run_process(_script(tmp_path, "time.sleep(600)"), cwd=tmp_path, log=tmp_path / "c.log",
                    cancel=lambda: (tmp_path / "child.pid").exists(), on_start=pids.append)
    assert r.cancelled and not r.timed_out
    assert _gone(int((tmp_path / "child.pid").read_text())) and _gone(pids[0])
    assert not flag.exists()


def test_helpers_left_behind_after_a_normal_exit_are_killed(tmp_path):
    r = run_process(_script(tmp_path, "time.sleep(0.5)"), cwd=tmp_path, log=tmp_path / "n.log", timeout=60)
    assert r.exit_code == 0
    assert _gone(int((tmp_path / "child.pid").read_text()))


def test_a_suspended_run_does_not_use_up_its_timeout(tmp_path):
    """The owner policy may pause Ras.exe for hours: the timeout counts running time only."""
    import threading

    started = {}

    def pause_then_resume():
        deadline = time.monotonic() + 10
        while "pid" not in started and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        p = psutil.Process(started["pid"])
        p.suspend()  # what the owner policy does to the whole tree
        time.sleep(3.0)
        p.resume()

    pauser = threading.Thread(target=pause_then_resume)
    pauser.start()
    # One second of computing (a sleep would go on while suspended), 3 s paused, a 2.5 s timeout.
    work = "import time\nwhile time.process_time() < 1.0: pass"
    r = run_process([sys.executable, "-c", work], cwd=tmp_path, log=tmp_path / "run.log",
                    timeout=2.5, on_start=lambda pid: started.update(pid=pid))
    pauser.join()
    assert not r.timed_out and r.exit_code == 0, (tmp_path / "run.log").read_text()
    assert r.seconds > 4.0 and 2.0 <= r.paused_seconds <= 4.0, r  # read once a second
    assert f"(paused {r.paused_seconds:.1f} s of it)" in (tmp_path / "run.log").read_text()

    # ... while a run that really goes on too long is still stopped at its timeout.
    r = run_process([sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path, log=tmp_path / "long.log",
                    timeout=1.0)
    assert r.timed_out and r.seconds < 5 and r.paused_seconds == 0


def _tree_started(tmp_path):
    import subprocess

    proc = subprocess.Popen(_script(tmp_path, "time.sleep(600)"), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("started helper")
    return proc, int((tmp_path / "child.pid").read_text())


def test_a_windows_job_kills_ras_and_its_helpers_when_closed(tmp_path):
    """The Job Object branch, against kernel32's calls as 64-bit Windows lays them out: the job is
    set to kill on close (flag at its real offset, 144-byte structure), the process goes in,
    and closing the handle, as the runner does or the worker's death does, ends the tree."""
    from dask_hecras.engines.runner import _windows_job

    from .fake_windows import FakeJobs

    proc, helper = _tree_started(tmp_path)
    try:
        fake = FakeJobs({0x2C4: proc.pid})
        proc._handle = 0x2C4  # Popen's process handle, on Windows
        job = _windows_job(proc, fake.kernel32)
        assert job is not None and fake.jobs[job.handle]["flags"] == FakeJobs.KILL_ON_JOB_CLOSE
        assert fake.jobs[job.handle]["pids"] == [proc.pid]
        job.close()
        proc.wait(timeout=10)
        assert _gone(helper) and not fake.jobs
        job.close()  # twice is harmless
    finally:
        proc.kill()
        proc.wait()


def test_a_job_windows_refuses_is_closed_and_the_run_goes_on(tmp_path):
    """Already in a job that forbids nesting (some remote-desktop and CI hosts): no job, no
    handle left open, the engine keeps running (psutil kills the tree at the end)."""
    from dask_hecras.engines.runner import _windows_job

    from .fake_windows import FakeJobs

    proc, helper = _tree_started(tmp_path)
    try:
        fake = FakeJobs({0x2C4: proc.pid}, nesting_refused=True)
        proc._handle = 0x2C4
        assert _windows_job(proc, fake.kernel32) is None
        assert not fake.jobs, "the refused job's handle was closed"
        assert proc.poll() is None and not _gone(helper)
    finally:
        psutil.Process(helper).kill()
        proc.kill()
        proc.wait()
