from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


BIN = Path(sys.executable).parent


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = BIN / "dask-hecras"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_hecras.cli"]
    env = {**os.environ, "DASK_HECRAS__SCRATCH": str(cwd / "scratch")}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_demo_runs_end_to_end(tmp_path):
    r = cli("demo", "--plans", "3", "--results", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 succeeded, 0 failed" in r.stdout
    for pid in ("p01", "p02", "p03"):
        assert json.loads((tmp_path / "out" / "Demo" / pid / "result.json").read_text())["status"] == "succeeded"


def test_run_reports_failures_and_exits_nonzero(demo, tmp_path):
    (demo.parent / "fake-ras.json").write_text(json.dumps({"p02": {"seconds": 0.2, "outcome": "unstable"}}))
    r = cli("run", str(demo), "--plans", "p01,p02", "--results", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 1
    assert "1 succeeded, 1 failed" in r.stdout
    table = r.stdout.split("Failed plans:")[1]
    assert "p02" in table and "went unstable" in table and "p01" not in table


def test_run_names_missing_files(demo, tmp_path):
    (demo.parent / "Terrain" / "Terrain.hdf").unlink()
    r = cli("run", str(demo), cwd=tmp_path)
    assert r.returncode == 2
    assert "Terrain.hdf" in r.stderr and "Demo.prj" in r.stderr


def test_unknown_plan(demo, tmp_path):
    r = cli("run", str(demo), "--plans", "p77", cwd=tmp_path)
    assert r.returncode == 2 and "p77" in r.stderr


def test_status_reads_the_batch_from_disk(demo, tmp_path):
    (demo.parent / "fake-ras.json").write_text(json.dumps({"p03": {"seconds": 0.2, "outcome": "crash"}}))
    out = tmp_path / "out"
    r = cli("run", str(demo), "--results", str(out), "--retries", "1", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 1
    assert "Dashboard: http" in r.stdout
    table = r.stdout.split("Failed plans:")[1]
    assert "p03" in table and "incomplete" in table
    s = cli("status", str(out), cwd=tmp_path)
    assert s.returncode == 0, s.stderr
    assert "3 succeeded" in s.stdout and "1 failed" in s.stdout
    line = next(l for l in s.stdout.splitlines() if " p03 " in l)
    assert "incomplete" in line and " 2 " in line  # two attempts: retries + 1


def test_detach_needs_a_scheduler(demo, tmp_path):
    r = cli("run", str(demo), "--detach", cwd=tmp_path)
    assert r.returncode == 2 and "--scheduler" in r.stderr


def test_real_hecras_without_a_time_limit_is_refused_before_a_cluster_starts(demo, tmp_path):
    r = cli("run", str(demo), "--engine", "ras", "--results", str(tmp_path / "results"), cwd=tmp_path)
    assert r.returncode == 2 and "--timeout" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "results" / ".batches").exists(), "nothing was submitted"
