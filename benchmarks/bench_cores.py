"""A big machine: one plan with every core, or several plans with a few cores each?

    python benchmarks/bench_cores.py [--cores 16] [--plans 8] [--one-core-seconds 6]

One worker standing for a ``--cores``-core server runs ``--plans`` fake plans through the plan
queue (``submit``), three ways: 1 slot x 16 cores, 2 x 8, 4 x 4 (``hecras.cores-per-plan``;
slots = cores // cores-per-plan). The fake engine's run time follows the cores the staged plan
gives it as HEC-RAS 2D's does (``fake_ras.run_seconds``: a fifth of the work serial, so 16 cores
run a plan 4x faster than one, not 16x). It sleeps rather than computes (this machine has 2
cores), so what is measured is what the layout buys under that speed-up curve and what the
queue loses keeping the slots busy.

For each layout: the makespan, against the bound ``ceil(plans / slots) x run time`` (the
queue's overhead), and the throughput in plans per hour against 1 x 16.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path


def run_layout(folder: Path, cores: int, slots: int, plans: int, one_core: float) -> dict:
    import dask.config
    from distributed import Client, LocalCluster

    from dask_hecras import Project, submit
    from dask_hecras.examples import make_project
    from dask_hecras.fake_ras import run_seconds

    per_plan = cores // slots
    prj = make_project(folder / f"{slots}x{per_plan}", n_plans=plans,
                       behaviour={f"p{i:02d}": {"seconds": one_core} for i in range(1, plans + 1)})
    with dask.config.set({"hecras.cores-per-plan": per_plan}), \
            LocalCluster(n_workers=1, threads_per_worker=slots + 1, resources={"RAS": slots}, dashboard_address=":0",
                         scheduler_kwargs={"preload": ["dask_hecras.scheduler"]}) as cluster, \
            Client(cluster) as client:
        started = time.monotonic()
        batch = submit(client, Project(prj).plans, engine="fake", results_dir=folder / f"results-{slots}x{per_plan}")
        results = batch.results()
        makespan = time.monotonic() - started
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    run = run_seconds(one_core, per_plan)
    bound = math.ceil(plans / slots) * run
    return {"layout": f"{slots} x {per_plan}", "run": run, "makespan": makespan, "bound": bound,
            "per_hour": plans / makespan * 3600}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--plans", type=int, default=8)
    ap.add_argument("--one-core-seconds", type=float, default=6.0)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-cores-"))
    rows = [run_layout(folder, args.cores, slots, args.plans, args.one_core_seconds) for slots in (1, 2, 4)]
    base = rows[0]["per_hour"]
    print(f"{args.plans} plans of {args.one_core_seconds:g} s on one core; a {args.cores}-core worker")
    print(f"{'slots x cores':>14} {'run':>7} {'makespan':>9} {'bound':>7} {'x bound':>8} {'plans/h':>8} {'x 1x16':>7}")
    for r in rows:
        print(f"{r['layout']:>14} {r['run']:6.2f}s {r['makespan']:8.2f}s {r['bound']:6.2f}s "
              f"{r['makespan'] / r['bound']:7.3f}x {r['per_hour']:8.0f} {r['per_hour'] / base:6.2f}x")


if __name__ == "__main__":
    main()
