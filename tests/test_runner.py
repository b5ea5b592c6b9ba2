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
