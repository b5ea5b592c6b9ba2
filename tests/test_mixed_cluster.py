"""A mixed cluster: a Windows PC with Ras.exe 6.5 and a Linux node with HEC-RAS's Linux engine
6.6, as separate worker processes. With ``engine="auto"`` every plan goes to a worker that has its
engine and a version that opens it, and a plan none can run fails at once, saying why."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dask_hecras import Project
from dask_hecras.batch import submit
from dask_hecras.examples import make_linux_install, make_project, prepare_for_linux

from .test_chaos import office, wait_for  # noqa: F401  (the fixture)
from .test_ras_exe import fake_install


def set_version(prj: Path, plan_id: str, version: str) -> None:
    plan = prj.with_suffix(f".{plan_id}")
    plan.write_bytes(plan.read_bytes().replace(b"Program Version=6.60", f"Program Version={version}".encode()))


def test_every_plan_goes_where_its_engine_is_and_one_no_worker_can_run_fails_at_once(office, tmp_path):  # noqa: F811
    prj = make_project(tmp_path / "project", n_plans=5,
                       behaviour={f"p0{i}": {"seconds": 3} for i in range(1, 6)})
    set_version(prj, "p01", "6.50")  # not prepared: only Ras.exe runs them, and 6.5 opens them
    set_version(prj, "p02", "6.50")
    for plan_id in ("p03", "p04"):  # 6.6, prepared on Windows: too new for Ras.exe 6.5, the Linux node's
        prepare_for_linux(prj, plan_id)
    set_version(prj, "p05", "7.0")  # newer than every HEC-RAS of the cluster
    ras_root, linux_root = tmp_path / "HEC-RAS", tmp_path / "linux"
    fake_install(ras_root, "6.5", script=f'#!/bin/sh\nexec "{sys.executable}" -m dask_hecras.fake_ras "$@"\n')
    make_linux_install(linux_root, "6.6")
    results = tmp_path / "results"
    o = office(timeout="10m")
    o.scheduler()
    o.worker("pc", env={"DASK_HECRAS__RAS_ROOTS": json.dumps([str(ras_root)])})
    o.worker("node", env={"DASK_HECRAS__LINUX_ROOTS": json.dumps([str(linux_root)])})
    with o.client() as client:
        client.wait_for_workers(2, timeout=120)
        started = time.monotonic()
        batch = submit(client, Project(prj).plans, engine="auto", results_dir=results, retries=0)
        state = lambda: {p["plan"]: p for p in batch.snapshot()["plans"]}  # noqa: E731
        wait_for(lambda: state()["p05"]["state"] == "failed", 60, "p05 to fail")
        failed_after = time.monotonic() - started
        done_then = sum(p["state"] == "succeeded" for p in state().values())
        results_ = {r.plan_id: r for r in batch.results(timeout=300)}
    assert done_then < 4, "p05 failed only after the other plans had run"
    reason = results_["p05"].reason
    assert reason.startswith("no worker has HEC-RAS (Ras.exe) 7.0 or newer"), reason
    assert "pc: ras 6.5" in reason and "node: linux 6.6" in reason, reason
    where = {p: (r.worker, r.engine) for p, r in results_.items() if p != "p05"}
    assert where == {"p01": ("pc", "ras"), "p02": ("pc", "ras"), "p03": ("node", "linux"), "p04": ("node", "linux")}, where
    assert all(results_[p].ok for p in where), {p: results_[p].reason for p in where}
    for p in ("p01", "p02"):
        assert f"{ras_root / '6.5' / 'Ras.exe'} -c" in results_[p].log.read_text()
    for p in ("p03", "p04"):
        assert f"RasUnsteady Demo.{p}.tmp.hdf x01" in results_[p].log.read_text()
    print(f"p05 failed {failed_after:.1f} s after submit: {reason}")
