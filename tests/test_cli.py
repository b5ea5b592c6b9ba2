from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


BIN = Path(sys.executable).parent


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = BIN / "dask-hecras"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_hecras.cli"]
    env = {**os.environ, "DASK_HECRAS__SCRATCH": str(cwd / "scratch"), **(env or {})}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_demo_runs_end_to_end(tmp_path):
    r = cli("demo", "--plans", "3", "--results", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 succeeded, 0 failed" in r.stdout
    # a table of what ran, one hydraulic figure each, and where to go next
    table = r.stdout.split("3 succeeded, 0 failed")[1]
    rows = [re.match(r"(p0\d)\s+(.+?)\s+([\d.]+) s\s+([\d.]+) (m|ft)$", line) for line in table.splitlines()
            if line.startswith("p0")]
    assert all(rows) and [m.group(1) for m in rows] == ["p01", "p02", "p03"], table
    assert rows[0].group(2) == "10-year storm" and all(float(m.group(4)) > 0 for m in rows), table
    assert f"dask-hecras status {tmp_path / 'out'}" in table and "open_results(" in table
    for pid in ("p01", "p02", "p03"):
        assert json.loads((tmp_path / "out" / "Demo" / pid / "result.json").read_text())["status"] == "succeeded"


def test_run_reports_failures_and_exits_nonzero(demo, tmp_path):
    (demo.parent / "fake-ras.json").write_text(json.dumps({"p02": {"seconds": 0.2, "outcome": "unstable"}}))
    r = cli("run", str(demo), "--engine", "fake", "--plans", "p01,p02", "--results", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 1
    assert "1 succeeded, 1 failed" in r.stdout
    table = r.stdout.split("Failed plans:")[1]
    assert "p02" in table and "went unstable" in table and "p01" not in table


def test_run_names_missing_files(demo, tmp_path):
    (demo.parent / "Terrain" / "Terrain.hdf").unlink()
    r = cli("run", str(demo), "--engine", "fake", cwd=tmp_path)
    assert r.returncode == 2
    assert "Terrain.hdf" in r.stderr and "Demo.prj" in r.stderr


def test_unknown_plan(demo, tmp_path):
    r = cli("run", str(demo), "--engine", "fake", "--plans", "p77", cwd=tmp_path)
    assert r.returncode == 2 and "p77" in r.stderr


def test_status_reads_the_batch_from_disk(demo, tmp_path):
    (demo.parent / "fake-ras.json").write_text(json.dumps({"p03": {"seconds": 0.2, "outcome": "crash"}}))
    out = tmp_path / "out"
    r = cli("run", str(demo), "--engine", "fake", "--results", str(out), "--retries", "1", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 1
    assert "Dashboard: http" in r.stdout and re.search(r"HEC-RAS page: http://\S+/hecras\b", r.stdout)
    table = r.stdout.split("Failed plans:")[1]
    assert "p03" in table and "incomplete" in table
    s = cli("status", str(out), cwd=tmp_path)
    assert s.returncode == 0, s.stderr
    assert "3 succeeded" in s.stdout and "1 failed" in s.stdout
    line = next(l for l in s.stdout.splitlines() if " p03 " in l)
    assert "incomplete" in line and " 2 " in line  # two attempts: retries + 1


def test_detach_needs_a_scheduler(demo, tmp_path):
    r = cli("run", str(demo), "--engine", "fake", "--detach", cwd=tmp_path)
    assert r.returncode == 2 and "--scheduler" in r.stderr


def _hecras_installed(tmp_path: Path, version: str = "6.6") -> dict:
    """HEC-RAS "installed" where Windows puts it, its Ras.exe standing in as the fake engine."""
    exe = tmp_path / "Program Files (x86)" / "HEC" / "HEC-RAS" / version / "Ras.exe"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m dask_hecras.fake_ras \"$@\"\n")
    exe.chmod(0o755)
    return {"ProgramFiles(x86)": str(tmp_path / "Program Files (x86)"), "ProgramFiles": str(tmp_path / "none")}


def test_real_hecras_without_a_time_limit_is_refused_before_a_cluster_starts(demo, tmp_path):
    r = cli("run", str(demo), "--engine", "ras", "--results", str(tmp_path / "results"), cwd=tmp_path,
            env=_hecras_installed(tmp_path))
    assert r.returncode == 2 and "--timeout" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "results" / ".batches").exists(), "nothing was submitted"


def test_the_fake_engine_is_never_a_silent_default(demo, tmp_path):
    """No engine named: HEC-RAS. Where none is installed the run is refused, saying where it
    looked and how to ask for the fake engine; nothing starts."""
    r = cli("run", str(demo), "--timeout", "1h", "--results", str(tmp_path / "results"), cwd=tmp_path,
            env={"ProgramFiles(x86)": str(tmp_path / "none"), "ProgramFiles": str(tmp_path / "none")})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "HEC-RAS is not installed" in r.stderr and "--engine fake" in r.stderr and str(tmp_path / "none") in r.stderr
    assert not (tmp_path / "results" / ".batches").exists(), "nothing was submitted"
    help_text = cli("run", "--help", cwd=tmp_path).stdout
    assert "ras: HEC-RAS (the default" in " ".join(help_text.split()) and "synthetic results" in " ".join(help_text.split())


def test_installed_hec_ras_is_the_default_and_named(demo, tmp_path):
    r = cli("run", str(demo), "--plans", "p01", "--timeout", "1h", "--results", str(tmp_path / "out"), cwd=tmp_path,
            env=_hecras_installed(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 plan(s) with HEC-RAS (installed here: 6.6;" in r.stdout
    saved = json.loads((tmp_path / "out" / "Demo" / "p01" / "result.json").read_text())
    assert saved["engine"] == "ras" and not saved["reason"].startswith("FAKE")


def test_a_plan_no_installed_hec_ras_can_run_is_refused_before_a_cluster_starts(demo, tmp_path):
    """The demo's plans were written by HEC-RAS 6.6; with only 6.5 here the PC would take itself
    out of rotation and the batch wait for ever."""
    r = cli("run", str(demo), "--timeout", "1h", "--results", str(tmp_path / "out"), cwd=tmp_path,
            env=_hecras_installed(tmp_path, "6.5"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "p01:" in r.stderr and "6.60" in r.stderr and "6.5" in r.stderr
    assert not (tmp_path / "out" / ".batches").exists()


def test_every_result_of_the_fake_engine_says_so(demo, tmp_path):
    """Its reason (in result.json, status, the dashboard), its summary's attributes, the run's
    own first line: synthetic results never pass for HEC-RAS's."""
    import xarray as xr

    r = cli("run", str(demo), "--engine", "fake", "--plans", "p01", "--results", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 plan(s) with the FAKE engine (synthetic results" in r.stdout
    folder = tmp_path / "out" / "Demo" / "p01"
    saved = json.loads((folder / "result.json").read_text())
    assert saved["engine"] == "fake" and saved["reason"].startswith("FAKE ENGINE (synthetic results, not HEC-RAS):")
    with xr.open_dataset(folder / "summary.nc", engine="h5netcdf") as ds:
        assert ds.attrs["engine"] == "fake"
    s = cli("status", str(tmp_path / "out"), cwd=tmp_path)
    assert "FAKE ENGINE" in s.stdout


def test_progress_counts_every_state_and_estimates_from_the_batch_so_far():
    """A landed plan still summarising is not "queued"; a running one is named by its step; the
    time to go scales what was expected by what finished runs actually took (here twice as long)."""
    import time

    from dask_hecras.cli import _progress_line

    def plan(pid, state, **kw):
        return {"plan": pid, "state": state, "worker_name": "pc1", **kw}

    snap = {"plans": [plan("p01", "succeeded", expected=10, run_seconds=20, summary="pending"),
                      plan("p02", "succeeded", expected=10, run_seconds=20, summary="done"),
                      plan("p03", "running", step="staging", expected=10),
                      plan("p04", "running", step="running", expected=10, elapsed=5),
                      plan("p05", "queued", expected=10),
                      plan("p06", "failed")]}
    line = _progress_line(snap, time.monotonic(), slots=2)
    assert "succeeded 2 (1 summarising)" in line and "failed 1" in line and "queued 1" in line
    assert "running 2 (1 running, 1 staging)" in line
    assert "ETA ~28 s" in line, line  # (20 + 15 + 20) s of work left on 2 slots


def test_a_local_batch_whose_every_worker_left_rotation_ends_instead_of_waiting(demo, tmp_path):
    """Three crashes in a row take the only worker out of rotation; a local cluster never gets it
    back, so the plan left would wait for ever. The command says why and ends."""
    crash = {"seconds": 0.2, "outcome": "crash"}
    (demo.parent / "fake-ras.json").write_text(json.dumps({p: crash for p in ("p01", "p02", "p03", "p04")}))
    out = tmp_path / "out"
    r = cli("run", str(demo), "--engine", "fake", "--results", str(out), "--retries", "0", "--workers", "1",
            cwd=tmp_path, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "every worker of this local cluster was taken out of rotation (3 runs failed in a row" in r.stderr, r.stderr
    left = re.search(r"1 plan\(s\) cannot run: (p0\d); the plans left are cancelled", r.stderr)
    assert left and "Traceback" not in r.stderr, r.stderr
    failed = r.stdout.split("Failed plans:")[1]
    assert re.search(rf"^{left.group(1)} .* cancelled ", failed, re.M), failed
    assert len(re.findall(r" incomplete ", failed)) == 3, failed  # the three that ran


def test_keep_open_keeps_the_dashboard_until_ctrl_c(tmp_path):
    import signal
    import urllib.request

    exe = BIN / "dask-hecras"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_hecras.cli"]
    env = {**os.environ, "DASK_HECRAS__SCRATCH": str(tmp_path / "scratch")}
    proc = subprocess.Popen(cmd + ["demo", "--plans", "1", "--keep-open", "--results", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "stays open at" in line:
                break
        page = re.search(r"stays open at (http://\S+/hecras) until Ctrl\+C", "".join(lines))
        assert page, "".join(lines) + proc.stderr.read()
        assert "1 succeeded, 0 failed" in "".join(lines)
        with urllib.request.urlopen(page.group(1).replace("/hecras", "/hecras/api/plans.json"), timeout=30) as resp:
            assert json.load(resp)["counts"] == {"succeeded": 1}  # the finished batch, still on show
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    without = cli("demo", "--plans", "1", "--results", str(tmp_path / "out2"), cwd=tmp_path)
    assert "--keep-open keeps it open" in without.stdout, without.stdout
