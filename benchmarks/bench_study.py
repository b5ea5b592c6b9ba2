"""Opening a whole study: open_results vs a hand-written h5py loop over the same maxima.

    python benchmarks/bench_study.py [--dir DIR] [--plans 50 200 500] [--cells 600] [--repeat 3]

Writes (once) the largest ``--plans`` count of landed plans of one mesh: one fake-engine run summarised, then its
summary rewritten per plan with other values (``write_summary``, as landing writes them), in the
results layout ``<project>/<plan>/summary.nc`` with ``result.json``; smaller counts are studies
of the first plans (hard links). Then, for each count, each in a fresh process (wall time, peak
memory):

- **h5py**: open every ``summary.nc`` once and read ``max_water_surface`` and ``max_depth`` into
  one (plans, cells) array each: what a skilled user would write knowing the files;
- **open_results**: ``open_results(dir)`` and the same two variables computed (``.values``);
- **general**: ``combine(summary_files(dir))``, the per-plan xarray path summaries without a
  layout key still take.

Goal (issue 14): open_results at most 2x the h5py loop, under 300 MB whatever the plan count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARS = ("max_water_surface", "max_depth")


def measure_h5py(root: str) -> dict:
    import h5py
    import numpy as np

    started = time.perf_counter()
    files = sorted(Path(root).glob("*/*/summary.nc"))
    out = {}
    for k, path in enumerate(files):
        with h5py.File(path, "r") as f:
            for v in VARS:
                d = f[v]
                if v not in out:
                    out[v] = np.empty((len(files), d.shape[0]), d.dtype)
                d.read_direct(out[v], dest_sel=np.s_[k])
    check = sum(float(np.nansum(a)) for a in out.values())
    return {"seconds": time.perf_counter() - started, "check": check}


def measure_open(root: str) -> dict:
    import dask.array  # noqa: F401  (what open_results uses, imported before the clock as the
    import distributed  # noqa: F401   loop's h5py is: a session with a cluster has them all;
    import h5netcdf  # noqa: F401   dask's compute imports distributed to look for a client)

    from dask_hecras import open_results

    started = time.perf_counter()
    ds = open_results(root)
    check = sum(float(ds[v].sum()) for v in VARS)
    return {"seconds": time.perf_counter() - started, "check": check}


def measure_general(root: str) -> dict:
    from dask_hecras.results import combine, summary_files

    started = time.perf_counter()
    ds = combine(summary_files(root))
    check = sum(float(ds[v].sum()) for v in VARS)
    return {"seconds": time.perf_counter() - started, "check": check}


def worker(kind: str, root: str) -> None:
    result = {"h5py": measure_h5py, "open_results": measure_open, "general": measure_general}[kind](root)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def subset(folder: Path, root: Path, plans: int) -> Path:
    """A study of the first ``plans`` plans of ``root``, as hard links (no copy)."""
    out = folder / f"results-{plans}"
    if not out.exists():
        for k in range(plans):
            plan = f"p{k + 1:03d}"
            (out / "Demo" / plan).mkdir(parents=True)
            for name in ("summary.nc", "result.json"):
                os.link(root / "Demo" / plan / name, out / "Demo" / plan / name)
    return out


def make_study(folder: Path, plans: int, cells: int) -> Path:
    from dask_hecras import summarise
    from dask_hecras.examples import make_project
    from dask_hecras.summary import write_summary

    root = folder / "results"
    marker = folder / "size.json"
    if marker.exists() and json.loads(marker.read_text()) == [plans, cells]:
        return root
    for old in [root, *folder.glob("results-*")]:
        shutil.rmtree(old, ignore_errors=True)
    prj = make_project(folder / "project", n_plans=1)
    extra = ["--cells", str(cells), "--steps", "5"] if cells != 600 else []
    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(prj.with_suffix(".p01")),
                    *extra, "--seconds", "0"], check=True, capture_output=True)
    ds = summarise(prj.with_suffix(".p01.hdf"), time_series=False).load()
    for k in range(plans):
        plan = f"p{k + 1:03d}"
        out = root / "Demo" / plan
        out.mkdir(parents=True)
        one = ds.copy()
        for v in VARS:
            one[v] = ds[v] * (1 + k / plans)
        one.attrs.update(plan_id=plan, plan_name=f"event {k + 1}")
        write_summary(one, out / "summary.nc")
        (out / "result.json").write_text(json.dumps({
            "plan_id": plan, "project": "Demo", "status": "succeeded", "reason": "", "batch": "bench",
            "finished": "2026-12-02T00:00:00", "attempt_id": f"bench-{plan}"}))
    marker.write_text(json.dumps([plans, cells]))
    return root


def run(kind: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--plans", type=int, nargs="+", default=[200])
    ap.add_argument("--cells", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-general", action="store_true", help="skip the slow general path")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-study-"))
    full = make_study(folder, max(args.plans), args.cells)
    kinds = ["h5py", "open_results"] + ([] if args.no_general else ["general"])
    print(f"{args.cells:,} cells per plan; median of {args.repeat}, fresh process each")
    print(f"{'plans':>6} " + " ".join(f"{k:>13s} {'ratio':>6s} {'peak':>7s}" for k in kinds) + "  check")
    for plans in sorted(args.plans):
        root = full if plans == max(args.plans) else subset(folder, full, plans)
        rows: dict[str, list] = {}
        for _ in range(args.repeat):
            for kind in kinds:
                rows.setdefault(kind, []).append(run(kind, root))
        base = statistics.median(r["seconds"] for r in rows["h5py"])
        line, checks = f"{plans:>6} ", set()
        for kind, results in rows.items():
            seconds = statistics.median(r["seconds"] for r in results)
            checks |= {round(r["check"] / 1e3, 1) for r in results}
            line += f"{seconds:12.3f}s {seconds / base:5.2f}x {max(r['peak_mb'] for r in results):5.0f}MB "
        print(line + f" {sorted(checks)}", flush=True)


if __name__ == "__main__":
    main()
