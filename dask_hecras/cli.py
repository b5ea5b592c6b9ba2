"""``dask-hecras``: run a project's plans from the command line.

    dask-hecras run PROJECT.prj [--plans p01,p02] [--engine fake|ras] [--results DIR]
    dask-hecras demo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _print_table(rows: list[list[str]], out=sys.stdout) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)


def run_plans(prj: Path, plan_ids: list[str] | None, engine: str, results: Path, timeout: str | None,
              scratch: str | None) -> int:
    from .pipeline import run_plan
    from .project import Project, ProjectError

    try:
        project = Project(prj)
        plans = [project.plan(p) for p in plan_ids] if plan_ids else project.plans
        project.check(plans)
    except (ProjectError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    print(f"{project.name}: {len(plans)} plan(s) with the {engine} engine; results in {results}")
    started = time.monotonic()
    results_list = []
    for i, plan in enumerate(plans, 1):
        print(f"[{i}/{len(plans)}] {plan.id} {plan.title} ...", end=" ", flush=True)
        r = run_plan(plan, engine=engine, results_dir=results, timeout=timeout, scratch=scratch, raise_retryable=False)
        seconds = f"{r.run_seconds:.1f} s" if r.run_seconds is not None else "-"
        print(f"{r.status} ({seconds})", flush=True)
        results_list.append(r)
    failed = [r for r in results_list if not r.ok]
    print(f"\n{len(results_list) - len(failed)} succeeded, {len(failed)} failed "
          f"in {time.monotonic() - started:.1f} s. Results: {results / project.name}")
    if failed:
        print("\nFailed plans:")
        _print_table([["plan", "title", "status", "reason"]] +
                     [[r.plan_id, r.title, r.validation or r.status, r.reason] for r in failed])
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dask-hecras", description="Run HEC-RAS plans (on a Dask cluster).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run plans of a HEC-RAS project")
    run.add_argument("project", type=Path, help="the project file NAME.prj")
    run.add_argument("--plans", help="comma-separated plan ids (default: every plan)")
    run.add_argument("--engine", default="fake", choices=["fake", "ras"])
    run.add_argument("--results", type=Path, default=None, help="results folder (default: hecras.results-dir or ./hecras-results)")
    run.add_argument("--timeout", default=None, help="per-plan time limit, e.g. 6h or 900 (seconds)")
    run.add_argument("--scratch", default=None, help="local folder for run folders")
    demo = sub.add_parser("demo", help="make the demo project in a temporary folder and run it with the fake engine")
    demo.add_argument("--plans", type=int, default=8, help="number of plans (default 8)")
    demo.add_argument("--results", type=Path, default=None, help="results folder (default: beside the demo project)")
    args = parser.parse_args(argv)

    from .pipeline import results_root

    if args.command == "run":
        ids = [p.strip() for p in args.plans.split(",") if p.strip()] if args.plans else None
        return run_plans(args.project, ids, args.engine, results_root(args.results), args.timeout, args.scratch)

    from .examples import make_project

    folder = Path(tempfile.mkdtemp(prefix="dask-hecras-demo-"))
    prj = make_project(folder / "project", n_plans=args.plans)
    print(f"Demo project written to {prj}")
    results = results_root(args.results or folder / "results")
    return run_plans(prj, None, "fake", results, None, None)


if __name__ == "__main__":
    sys.exit(main())
