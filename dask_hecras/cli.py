"""``dask-hecras``: run a project's plans on a Dask cluster from the command line.

    dask-hecras run PROJECT.prj [--plans p01,p02] [--scheduler ADDRESS] [--engine fake|ras]
                                [--results DIR] [--retries N] [--timeout S] [--detach] [--force]
    dask-hecras status [RESULTS_DIR] [--batch ID] [--scheduler ADDRESS [--certs DIR]]
    dask-hecras worker [SCHEDULER] [--certs DIR] [--scratch DIR] [--config FILE]
    dask-hecras worker-config FILE --scheduler ADDRESS --certs DIR [...]
    dask-hecras demo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _progress_line(batch, client, started: float, expected: dict[str, float]) -> str:
    """Counts per state, plans running where, and a rough time to go."""
    states = {"done": 0, "failed": 0, "running": 0, "queued": 0}
    finished = set()
    for f in batch.futures:
        if f.status == "finished":
            states["done"] += 1
            finished.add(f.key)
        elif f.status in ("error", "cancelled"):
            states["failed"] += 1
            finished.add(f.key)
    from .batch import running_plans

    running = [(k[4:], w) for k, w in running_plans(client).items()]
    states["running"] = len(running)
    states["queued"] = len(batch.futures) - states["done"] - states["failed"] - states["running"]
    left = sum(v for k, v in expected.items() if f"summarise-{k}" not in finished)
    slots = max(1, sum(int(r.get("RAS", 0)) for r in _resources(client).values()))
    where = ", ".join(f"{k}@{w.split('//')[-1]}" for k, w in running[:4]) + (" ..." if len(running) > 4 else "")
    return (f"[{time.monotonic() - started:6.0f} s] done {states['done']}, failed {states['failed']}, "
            f"running {states['running']}, queued {max(0, states['queued'])}; ETA ~{left / slots:.0f} s"
            + (f"  ({where})" if where else ""))


def _resources(client) -> dict:
    info = client.scheduler_info()
    return {addr: w.get("resources", {}) for addr, w in info.get("workers", {}).items()}


def run_plans(prj: Path, plan_ids: list[str] | None, *, engine: str, results: Path, timeout: str | None,
              retries: int, scheduler: str | None, detach: bool, force: bool, n_workers: int | None = None,
              certs: Path | None = None) -> int:
    from distributed import Client

    from .batch import estimates, local_cluster, submit
    from .project import Project, ProjectError

    try:
        project = Project(prj)
        plans = [project.plan(p) for p in plan_ids] if plan_ids else project.plans
        project.check(plans)
    except (ProjectError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    if detach and scheduler is None:
        print("error: --detach needs --scheduler: a local cluster ends with this command", file=sys.stderr)
        return 2
    cluster = None
    if scheduler is None:
        cluster = local_cluster(n_workers)
        client = Client(cluster)
    else:
        from .certs import security

        client = Client(scheduler, security=security(certs, "client") if certs else None)
    try:
        print(f"Dashboard: {client.dashboard_link}")
        print(f"{project.name}: {len(plans)} plan(s) with the {engine} engine; results in {results}")
        batch = submit(client, plans, engine=engine, results_dir=results, retries=retries, timeout=timeout,
                       force=force, detach=detach)
        if batch.skipped:
            print(f"Skipped {len(batch.skipped)} plan(s) that already succeeded: "
                  f"{', '.join(r.plan_id for r in batch.skipped)} (--force runs them again)")
        if detach:
            print(f"Batch {batch.id} submitted and detached; follow it with: dask-hecras status {results}")
            return 0
        expected = estimates([p for p in plans if p.key not in {r.key for r in batch.skipped}], results)
        started = time.monotonic()
        last = ""
        while any(f.status == "pending" for f in batch.futures):
            line = _progress_line(batch, client, started, expected)
            if sys.stdout.isatty():
                print("\r" + line.ljust(len(last)), end="", flush=True)
            elif line.split("]", 1)[1] != last.split("]", 1)[-1]:
                print(line, flush=True)
            last = line
            time.sleep(1)
        if sys.stdout.isatty():
            print()
        return _report(batch.results(), time.monotonic() - started, results / project.name)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _report(results, seconds: float, where: Path) -> int:
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} succeeded, {len(failed)} failed in {seconds:.1f} s. Results: {where}")
    if failed:
        print("\nFailed plans:")
        _table([["plan", "title", "status", "attempts", "reason"]] +
               [[r.plan_id, r.title, r.validation or r.status, str(len(r.attempts) or r.attempt), r.reason]
                for r in failed])
        return 1
    return 0


def status(results_dir: Path, batch_id: str | None) -> int:
    from .batch import open_batch

    try:
        batch = open_batch(results_dir, batch_id)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = batch.results()
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    print(f"Batch {batch.id} in {batch.results_dir}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    rows = [["project", "plan", "title", "status", "attempts", "worker", "run", "reason"]]
    for r in results:
        rows.append([r.project, r.plan_id, r.title, r.validation if r.status == "failed" and r.validation else r.status,
                     str(len(r.attempts)), r.worker or r.host if r.attempts else "", _seconds(r.run_seconds),
                     r.reason if not r.ok else ""])
    _table(rows)
    from .records import read_workers

    standing = [w for w in read_workers(batch.results_dir) if w.get("state") != "in rotation"]
    if standing:
        print("\nWorkers not taking plans:")
        _table([["worker", "state", "since", "reason"]] +
               [[w["worker"], w["state"], w.get("since", ""), w.get("reason", "")] for w in standing])
    return 0


def workers_status(scheduler: str, certs: Path | None) -> int:
    """The cluster's workers as the scheduler knows them: slots and reported capabilities."""
    from distributed import Client

    from .worker import worker_table

    security = None
    if certs:
        from .certs import security as make_security

        security = make_security(certs, "client")
    with Client(scheduler, security=security, timeout="20s") as client:
        rows = worker_table(client)
    from dask.utils import format_bytes

    size = lambda b: "-" if b is None else format_bytes(b)  # noqa: E731
    print(f"{len(rows)} workers at {scheduler}, {sum(r['slots'] or 0 for r in rows):g} RAS slots open")
    if rows:
        _table([["name", "worker", "slots", "cores", "HEC-RAS", "free scratch", "cache", "standing", "owner"]] +
               [[r["name"], r["worker"], f"{r['slots']:g}", str(r["cores"] or "-"), r["versions"] or "-",
                 size(r["free_scratch_bytes"]), size(r["cache_bytes"]), r["standing"], r["owner"] or "-"]
                for r in rows])
        paths = [(r["name"], v, exe) for r in rows for v, exe in r["installs"]]
        if paths:
            print("\nRas.exe per worker:")
            _table([["name", "version", "Ras.exe"]] + [list(p) for p in paths])
    return 0


def worker_commands(args) -> int:
    from .worker import WorkerSetupError, load_config_file, run_worker, worker_command, worker_config

    try:
        if args.command == "worker-config":
            text = worker_config(args.scheduler, args.certs, scratch=args.scratch, ras_exe=args.ras_exe,
                                 port=args.port or None, owner=not args.no_owner,
                                 night=None if args.night.strip().lower() in ("", "none") else args.night,
                                 idle_minutes=args.idle_minutes, on_return=args.on_return)
            args.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.file.with_name(args.file.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(args.file)
            print(f"Worker settings written to {args.file}")
            return 0
        if args.config:
            load_config_file(args.config)
        command = worker_command(args.scheduler, certs=args.certs, scratch=args.scratch, name=args.name)
    except (WorkerSetupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print:
        import shlex

        print("dask worker " + shlex.join(command))
        return 0
    if command[0].startswith("tcp://"):
        print(f"warning: {command[0]} is not encrypted; use tls:// with certificates outside a trial",
              file=sys.stderr)
    scratch = Path(command[command.index("--local-directory") + 1])
    scratch.mkdir(parents=True, exist_ok=True)
    log = args.log or scratch.parent / "worker.log"
    print(f"Starting the dask-hecras worker for {command[0]}; log: {log}", flush=True)
    try:
        return run_worker(command, log=log, restart=not args.once)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dask-hecras", description="Run HEC-RAS plans on a Dask cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run plans of a HEC-RAS project")
    run.add_argument("project", type=Path, help="the project file NAME.prj")
    run.add_argument("--plans", help="comma-separated plan ids (default: every plan)")
    run.add_argument("--scheduler", help="address of a running Dask scheduler (default: start a local cluster)")
    run.add_argument("--engine", default="fake", choices=["fake", "ras"])
    run.add_argument("--results", type=Path, default=None, help="results folder (default: hecras.results-dir or ./hecras-results)")
    run.add_argument("--retries", type=int, default=2, help="extra attempts for failures a retry can fix (default 2)")
    run.add_argument("--timeout", default=None, help="per-plan time limit, e.g. 6h or 900 (seconds)")
    run.add_argument("--detach", action="store_true", help="submit and return; the batch goes on without this command")
    run.add_argument("--force", action="store_true", help="run plans again even if they already succeeded")
    run.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: from cores and memory)")
    run.add_argument("--certs", type=Path, default=None, help="folder of TLS certificates (dask-hecras certs) for a tls:// scheduler")
    st = sub.add_parser("status", help="a batch's table from what is on disk")
    st.add_argument("results", type=Path, nargs="?", help="the results folder of the batch")
    st.add_argument("--batch", default=None, help="batch id (default: the latest)")
    st.add_argument("--scheduler", help="also list the workers of this scheduler and what each can run")
    st.add_argument("--certs", type=Path, default=None, help="folder of TLS certificates for a tls:// scheduler")
    certs = sub.add_parser("certs", help="make a CA and scheduler, worker and client certificates for mutual TLS")
    certs.add_argument("folder", type=Path)
    certs.add_argument("--host", action="append", default=[], help="a name or address of the scheduler (repeat)")
    wk = sub.add_parser("worker", help="start this PC's dask-hecras worker (settings: hecras.worker.*)")
    wk.add_argument("scheduler", nargs="?", help="scheduler address (default: hecras.worker.scheduler); tls:// unless tcp:// is given")
    wk.add_argument("--certs", type=Path, default=None, help="folder with ca.pem, worker.pem, worker-key.pem")
    wk.add_argument("--scratch", type=Path, default=None, help="local folder for run folders and the cache")
    wk.add_argument("--name", default=None, help="worker name (default: the computer name)")
    wk.add_argument("--config", type=Path, default=None, help="a settings file written by worker-config")
    wk.add_argument("--log", type=Path, default=None, help="the worker's log file (default: worker.log beside the scratch folder)")
    wk.add_argument("--once", action="store_true", help="do not start the worker again when it ends")
    wk.add_argument("--print", action="store_true", help="print the dask worker command line instead of starting it")
    wc = sub.add_parser("worker-config", help="write a worker's settings file (used by the Windows install script)")
    wc.add_argument("file", type=Path)
    wc.add_argument("--scheduler", required=True, help="e.g. tls://ras-scheduler:8786")
    wc.add_argument("--certs", type=Path, default=None, help="the worker's certificate folder")
    wc.add_argument("--scratch", type=Path, default=None, help="local folder for run folders and the cache")
    wc.add_argument("--ras-exe", default=None, help="Ras.exe to run (default: discover installed versions)")
    wc.add_argument("--port", type=int, default=8788, help="worker port, nanny on port+1 (default 8788; 0 = any)")
    wc.add_argument("--no-owner", action="store_true", help="no owner policy: take plans at any time (servers)")
    wc.add_argument("--night", default="19:00-07:00", help="always take plans inside this window ('none': no window)")
    wc.add_argument("--idle-minutes", type=float, default=15, help="the owner counts as away after this long")
    wc.add_argument("--on-return", default="finish", choices=["finish", "suspend", "requeue"])
    demo = sub.add_parser("demo", help="make the demo project in a temporary folder and run it on a local cluster")
    demo.add_argument("--plans", type=int, default=8, help="number of plans (default 8)")
    demo.add_argument("--results", type=Path, default=None, help="results folder (default: beside the demo project)")
    demo.add_argument("--workers", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from .pipeline import results_root

    if args.command == "certs":
        from .certs import make_certs

        made = make_certs(args.folder, args.host)
        print("\n".join(f"{role:>9}: {path}" for role, path in made.items()))
        print(f"Keep {args.folder / 'ca-key.pem'} safe and off the workers: it admits new members.")
        return 0
    if args.command in ("worker", "worker-config"):
        return worker_commands(args)
    if args.command == "status":
        code = 0
        if args.results is not None or not args.scheduler:
            code = status(results_root(args.results), args.batch)
        if args.scheduler:
            if args.results is not None:
                print()
            code = max(code, workers_status(args.scheduler, args.certs))
        return code
    if args.command == "run":
        ids = [p.strip() for p in args.plans.split(",") if p.strip()] if args.plans else None
        return run_plans(args.project, ids, engine=args.engine, results=results_root(args.results),
                         timeout=args.timeout, retries=args.retries, scheduler=args.scheduler,
                         detach=args.detach, force=args.force, n_workers=args.workers, certs=args.certs)

    from .examples import make_project

    folder = Path(tempfile.mkdtemp(prefix="dask-hecras-demo-"))
    prj = make_project(folder / "project", n_plans=args.plans)
    print(f"Demo project written to {prj}")
    return run_plans(prj, None, engine="fake", results=results_root(args.results or folder / "results"),
                     timeout=None, retries=2, scheduler=None, detach=False, force=False, n_workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
