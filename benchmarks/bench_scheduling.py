"""How well a batch of plans of mixed length packs onto RAS slots.

    python benchmarks/bench_scheduling.py [--plans 60] [--workers 4] [--seed 1]

Fake plans whose run times are drawn log-normally between 0.2 and 6 s run on a
LocalCluster of 4 workers with ``RAS=1``, four ways in one run:

- ``client.map(run_plan, ...)`` in submission order (plain Dask);
- ``dask_hecras.submit`` on a first batch (no history: estimates from the plans);
- the same plans again with ``force=True`` (history in ``results_dir``), with both.

For each it prints the makespan divided by the lower bound
``max(longest run, sum of runs / slots)``, where a run is the engine's wall time as
recorded in that same batch, and the orchestration overhead per plan
``(makespan - lower bound) / plans``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def durations(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(mean=0.0, sigma=0.9, size=n)
    return list(np.clip(x, 0.2, 6.0).round(2))


def engine_spans(results: Path, project: str, batch: str = "") -> list[dict]:
    out = []
    for folder in sorted((results / project / ".attempts").iterdir()):
        recs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{batch or 'direct'}-*.json"))]
        if recs:
            out.append(recs[-1])
    return out


def diagnose(spans: list[dict], t0: float, t1: float) -> str:
    """Where the time beyond the bound went: before the first run, after the last, gaps between runs."""
    by_worker: dict[str, list] = {}
    for r in spans:
        by_worker.setdefault(r["worker"], []).append((r["run_start"], r["run_end"]))
    gaps, ends = 0.0, []
    for runs in by_worker.values():
        runs.sort()
        gaps += sum(max(0.0, b[0] - a[1]) for a, b in zip(runs, runs[1:]))
        ends.append(runs[-1][1])
    head = min(r["run_start"] for r in spans) - t0
    return (f"head {head:.2f} s, tail {t1 - max(ends):.2f} s, gaps between runs {gaps:.1f} s in all, "
            f"last slot ends {max(ends) - min(ends):.1f} s after the first")


def engine_runs(results: Path, project: str, batch: str = "") -> list[float]:
    """Engine wall time of the last attempt of each plan, from the attempt records."""
    runs = []
    for folder in sorted((results / project / ".attempts").iterdir()):
        prefix = f"{batch or 'direct'}-"
        recs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{prefix}*.json"))]
        if recs:
            r = recs[-1]
            runs.append(r["run_end"] - r["run_start"])
    return runs


def report(name: str, makespan: float, runs: list[float], slots: int) -> tuple:
    bound = max(max(runs), sum(runs) / slots)
    return (name, len(runs), makespan, bound, makespan / bound, (makespan - bound) / len(runs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plans", type=int, default=60)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()

    from distributed import Client, LocalCluster

    import dask_hecras
    from dask_hecras.batch import submit
    from dask_hecras.examples import make_project

    folder = args.dir or Path(tempfile.mkdtemp(prefix="dask-hecras-bench-sched-"))
    seconds = durations(args.plans, args.seed)
    # Submission order for plain client.map: the plan order, as a user would write it.
    behaviour = {f"p{i + 1:02d}": {"seconds": s} for i, s in enumerate(seconds)}
    prj = make_project(folder / "project", n_plans=args.plans, behaviour=behaviour)
    plans = dask_hecras.Project(prj).plans
    print(f"{args.plans} plans, {sum(seconds):.0f} s of requested run time, longest {max(seconds)} s; "
          f"{args.workers} workers with RAS=1; files in {folder}")

    rows = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=2, processes=True, resources={"RAS": 1},
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(args.workers)
        # warm up every worker (imports) so no way in pays for it
        client.run(lambda: __import__("dask_hecras.pipeline"))

        results = folder / "results-map"
        t, t0 = time.perf_counter(), time.time()
        futures = client.map(dask_hecras.run_plan, plans, engine="fake", results_dir=results,
                             resources={"RAS": 1}, retries=2)
        client.gather(futures)
        rows.append(report("client.map, submission order", time.perf_counter() - t,
                           engine_runs(results, "Demo"), args.workers))
        print("  client.map:", diagnose(engine_spans(results, "Demo"), t0, time.time()))

        results = folder / "results-submit"
        for label, force in (("submit, no history", False), ("submit, with history", True)):
            t, t0 = time.perf_counter(), time.time()
            batch = submit(client, plans, engine="fake", results_dir=results, force=force).wait()
            makespan = time.perf_counter() - t
            assert all(r.ok for r in batch.results())
            print(f"  {label}:", diagnose(engine_spans(results, "Demo", batch.id), t0, time.time()))
            rows.append(report(label, makespan, engine_runs(results, "Demo", batch.id), args.workers))

    print(f"\n{'way in':<30} {'plans':>5} {'makespan':>9} {'bound':>7} {'ratio':>6} {'overhead/plan':>14}")
    for name, n, makespan, bound, ratio, overhead in rows:
        print(f"{name:<30} {n:>5} {makespan:>8.1f}s {bound:>6.1f}s {ratio:>5.3f}x {overhead * 1000:>11.0f} ms")
    print("goal: submit with history at most 1.03x")


if __name__ == "__main__":
    main()
