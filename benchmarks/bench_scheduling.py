"""What the plan queue costs, against a fair baseline, measured in one run.

    python benchmarks/bench_scheduling.py [--plans 60] [--workers 4] [--seed 1] [--rounds 2]
                                          [--overhead-plans 500] [--submit-plans 2000]

1. **Makespan of mixed plans.** Fake plans with run times drawn log-normally between 0.2 and
   6 s on a LocalCluster of ``--workers`` workers with ``RAS=1``. A first batch gives every
   way the same history (each plan's engine time). Then, in alternating rounds:

   - *baseline*: ``client.map(run_plan, ...)`` with the plans sorted longest first by that
     history: what a skilled Dask user would write given the same information;
   - *queue*: ``dask_hecras.submit(..., force=True)``: the scheduler's queue, which reads the
     same history from the results folder.

   One lower bound for all ways: ``max(longest, sum / slots)`` over each plan's *smallest*
   engine time seen in any batch of this run (engine time: the engine process's start to end,
   from the attempt records). Printed: makespan / bound and (makespan - bound) / plans.

2. **Overhead per plan at scale.** ``--overhead-plans`` plans of 0.2 s (several projects of
   up to 99 plans), the queue and the baseline, the same bound.

3. **submit of many plans on the client.** ``submit`` of ``--submit-plans`` plans (21+
   projects) to a scheduler with no workers, timed on the client (checks, fingerprints,
   work estimates, one call to the queue), then the batch is cancelled.

4. **The scheduler's cost per event.** The queue's and the dashboard's hooks fed the same
   synthetic events with 500 and with 4,000 plans kept, against the dashboard plugin this
   change replaced (``git show 1d2bb94:dask_hecras/dashboard.py``), in this process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def durations(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.clip(rng.lognormal(mean=0.0, sigma=0.9, size=n), 0.2, 6.0).round(2))


def engine_times(results: Path, batch: str = "") -> dict[str, float]:
    """Plan → engine wall time of its succeeded attempt in ``batch`` ("" = runs outside a batch)."""
    out = {}
    prefix = f"{batch or 'direct'}-"
    for project in results.iterdir():
        for rec in (project / ".attempts").glob(f"*/{prefix}*.json"):
            r = json.loads(rec.read_text())
            if r["status"] == "succeeded" and r.get("run_end"):
                out[f"{project.name}/{rec.parent.name}"] = r["run_end"] - r["run_start"]
    return out


def bound(times: dict[str, float], slots: int) -> float:
    return max(max(times.values()), sum(times.values()) / slots)


def projects(folder: Path, n: int, behaviour_of, per_project: int = 99) -> list:
    import dask_hecras
    from dask_hecras.examples import make_project

    plans, k = [], 0
    while len(plans) < n:
        count = min(per_project, n - len(plans))
        behaviour = {f"p{i + 1:02d}": behaviour_of(len(plans) + i) for i in range(count)}
        prj = make_project(folder / f"study{k}", n_plans=count, name=f"Study{k}", behaviour=behaviour)
        plans += dask_hecras.Project(prj).plans
        k += 1
    return plans


def run_baseline(client, plans, results: Path, order: dict[str, float]) -> float:
    import dask_hecras

    ordered = sorted(plans, key=lambda p: order.get(f"{p.project_name}/{p.id}", 0.0), reverse=True)
    t = time.perf_counter()
    futures = client.map(dask_hecras.run_plan, ordered, engine="fake", results_dir=results,
                         resources={"RAS": 1}, retries=2, pure=False)
    client.gather(futures)
    return time.perf_counter() - t


def run_queue(client, plans, results: Path, force: bool = True) -> tuple[float, str]:
    from dask_hecras.batch import submit

    t = time.perf_counter()
    batch = submit(client, plans, engine="fake", results_dir=results, force=force)
    got = batch.results(timeout=3600)
    makespan = time.perf_counter() - t
    assert all(r.ok for r in got), [r.reason for r in got if not r.ok]
    return makespan, batch.id


def makespans(args, folder: Path) -> list[tuple]:
    from distributed import Client

    from dask_hecras.batch import local_cluster

    seconds = durations(args.plans, args.seed)
    plans = projects(folder / "mixed", args.plans, lambda i: {"seconds": seconds[i]})
    print(f"1. {args.plans} plans, {sum(seconds):.0f} s of requested run time, longest {max(seconds)} s; "
          f"{args.workers} workers with RAS=1; files in {folder}")
    seen: dict[str, list[float]] = {}
    rows = []
    with local_cluster(args.workers, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(args.workers)
        client.run(lambda: __import__("dask_hecras.runs"))  # imports paid before anything is timed
        history_dir = folder / "results-queue"
        _, first = run_queue(client, plans, history_dir, force=False)  # the history both ways use
        history = engine_times(history_dir, first)
        for k, v in history.items():
            seen.setdefault(k, []).append(v)
        measured = []
        for r in range(args.rounds):
            ways = [("baseline", "client.map, longest first by history"), ("queue", "submit (queue), with history")]
            for way, label in ways if r % 2 == 0 else ways[::-1]:
                if way == "baseline":
                    out = folder / f"results-map-{r}"
                    makespan = run_baseline(client, plans, out, history)
                    times = engine_times(out)
                else:
                    makespan, batch = run_queue(client, plans, history_dir)
                    times = engine_times(history_dir, batch)
                for k, v in times.items():
                    seen.setdefault(k, []).append(v)
                measured.append((label, makespan))
    common = {k: min(v) for k, v in seen.items()}
    b = bound(common, args.workers)
    for label, makespan in measured:
        rows.append((label, args.plans, makespan, b, makespan / b, (makespan - b) / args.plans))
    return rows


def overhead(args, folder: Path) -> list[tuple]:
    from distributed import Client

    from dask_hecras.batch import local_cluster

    n = args.overhead_plans
    plans = projects(folder / "many", n, lambda i: {"seconds": 0.2}, per_project=84)
    print(f"2. {n} plans of 0.2 s in {len({p.project for p in plans})} projects, {args.workers} workers")
    seen: dict[str, list[float]] = {}
    measured = []
    with local_cluster(args.workers, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(args.workers)
        client.run(lambda: __import__("dask_hecras.runs"))
        makespan, batch = run_queue(client, plans, folder / "many-queue", force=False)
        measured.append(("submit (queue)", makespan))
        for k, v in engine_times(folder / "many-queue", batch).items():
            seen.setdefault(k, []).append(v)
        makespan = run_baseline(client, plans, folder / "many-map", {})
        measured.append(("client.map", makespan))
        for k, v in engine_times(folder / "many-map").items():
            seen.setdefault(k, []).append(v)
    b = bound({k: min(v) for k, v in seen.items()}, args.workers)
    return [(label, n, m, b, m / b, (m - b) / n) for label, m in measured]


def submit_time(args, folder: Path) -> None:
    from distributed import Client, LocalCluster

    from dask_hecras.batch import submit

    n = args.submit_plans
    plans = projects(folder / "submit", n, lambda i: {"seconds": 0.2}, per_project=96)
    with LocalCluster(n_workers=0, dashboard_address=":0", scheduler_kwargs={"preload": ["dask_hecras.scheduler"]}) \
            as cluster, Client(cluster) as client:
        submit(client, plans[:1], results_dir=folder / "submit-warm").cancel()  # connections, imports
        timings = []
        for r in range(3):
            t = time.perf_counter()
            batch = submit(client, plans, results_dir=folder / f"submit-results-{r}")
            timings.append(time.perf_counter() - t)
            batch.cancel()
    print(f"\n3. submit of {n} plans in {len({p.project for p in plans})} projects, on the client: "
          + ", ".join(f"{t:.2f} s" for t in timings) + " (goal: under 1 s)")


def _old_dashboard():
    """The dashboard plugin before the queue, from git, as a module."""
    source = subprocess.run(["git", "show", "1d2bb94:dask_hecras/dashboard.py"], cwd=HERE.parent,
                            capture_output=True, text=True, check=True).stdout
    source = source.replace("_register_pages()  # at import", "pass  # (not registered here)")
    module = types.ModuleType("dask_hecras._old_dashboard")
    module.__package__ = "dask_hecras"
    exec(compile(source, "old dashboard.py", "exec"), module.__dict__)
    return module


def event_cost() -> None:
    """Seconds of hook time per 10,000 events with N plans kept, new hooks against the old plugin."""
    from dask_hecras.dashboard import WorkerPanel
    from dask_hecras.queue import BatchState, PlanQueue, PlanState

    old = _old_dashboard()
    print("\n4. scheduler time per 10,000 events (the hooks, in this process)")
    print(f"   {'plans kept':>10} {'before (old dashboard plugin)':>30} {'now (queue + worker panel)':>28}")
    for n in (500, 4000):
        plugin = old.HecrasPlugin()
        plugin.log_event("hecras", {"action": "batch", "batch": "b", "plans": [
            {"key": f"Demo-p{i:05d}", "title": "t", "expected": 1.0} for i in range(n)]})
        events = [{"action": "step", "plan": f"Demo-p{i % n:05d}", "step": "run", "phase": "started",
                   "worker": "tcp://a:1", "attempt": 1} for i in range(10_000)]
        t = time.perf_counter()
        for e in events:
            plugin.log_event("hecras", e)
        before = time.perf_counter() - t

        queue, panel = PlanQueue(), WorkerPanel()
        plans = [PlanState(i, "/s/Demo.prj", f"p{i:05d}", "t", "/r/Demo", "", 1.0, state="running",
                           attempt_id=f"b-{i:04d}-a1") for i in range(n)]
        queue.batches["b"] = BatchState("b", 1, Path("/r"), "fake", 2, None, None, "", plans)
        queue.attempts = {p.attempt_id: ("b", p.index) for p in plans}
        events = [{"action": "attempt", "attempt_id": f"b-{i % n:04d}-a1", "phase": "running"} for i in range(10_000)]
        t = time.perf_counter()
        for e in events:
            queue.log_event("hecras", e)
            panel.log_event("hecras", e)
        now = time.perf_counter() - t
        print(f"   {n:>10} {before:>28.3f} s {now:>26.3f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plans", type=int, default=60)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--overhead-plans", type=int, default=500)
    p.add_argument("--submit-plans", type=int, default=2000)
    p.add_argument("--only", choices=["makespan", "overhead", "submit", "events"], default=None)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dask-hecras-bench-sched-"))
    rows = []
    if args.only in (None, "makespan"):
        rows += makespans(args, folder)
    if args.only in (None, "overhead"):
        rows += overhead(args, folder)
    if rows:
        print(f"\n{'way in':<40} {'plans':>5} {'makespan':>9} {'bound':>7} {'ratio':>6} {'overhead/plan':>14}")
        for name, n, makespan, b, ratio, over in rows:
            print(f"{name:<40} {n:>5} {makespan:>8.1f}s {b:>6.1f}s {ratio:>5.3f}x {over * 1000:>11.0f} ms")
        print("goal: the queue at most 1.03x the bound on the mixed plans, and below the baseline")
    if args.only in (None, "submit"):
        submit_time(args, folder)
    if args.only in (None, "events"):
        event_cost()


if __name__ == "__main__":
    sys.exit(main())
