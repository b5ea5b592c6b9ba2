"""``dask-hecras``: run a project's plans on a Dask cluster from the command line.

    dask-hecras run PROJECT.prj [--plans p01,p02] [--scheduler ADDRESS] [--engine fake|ras]
                                [--results DIR] [--retries N] [--timeout S] [--detach] [--force] [--keep-open]
    dask-hecras status [RESULTS_DIR] [--batch ID] [--scheduler ADDRESS [--certs DIR]]
    dask-hecras worker [SCHEDULER] [--certs DIR] [--scratch DIR] [--config FILE]
    dask-hecras worker-config FILE --scheduler ADDRESS --certs DIR [...]
    dask-hecras demo [--plans N] [--keep-open]
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


STATES = ("succeeded", "failed", "skipped", "running", "landing", "lost", "queued", "cancelled")


def _progress_line(snap: dict, started: float, slots: int) -> str:
    """Every state the dashboard knows (a running plan by its step: staging, running,
    validating; a landed one still summarising), plans running where, and the time to go,
    estimated from what this batch's runs took against what was expected of them."""
    from collections import Counter

    plans = snap["plans"]
    running = [p for p in plans if p["state"] == "running"]
    steps = Counter({"released": "starting"}.get(p.get("step"), p.get("step") or "running") for p in running)
    summarising = sum(1 for p in plans if p["state"] == "succeeded" and p.get("summary") in ("wanted", "pending"))
    counts = Counter(p["state"] for p in plans)
    shown = []
    for s in STATES:
        if not counts.get(s):
            continue
        detail = ""
        if s == "running" and set(steps) != {"running"}:
            detail = " (" + ", ".join(f"{n} {step}" for step, n in sorted(steps.items())) + ")"
        elif s == "succeeded" and summarising:
            detail = f" ({summarising} summarising)"
        shown.append(f"{s} {counts[s]}{detail}")
    from .queue import batch_eta

    eta = batch_eta(plans, slots)
    where = ", ".join(f"{p['plan']}@{p.get('worker_name') or '?'}{_how_far(p)}" for p in running[:4]) + \
        (" ..." if len(running) > 4 else "")
    return (f"[{time.monotonic() - started:6.0f} s] {', '.join(shown)}; ETA ~{eta or 0:.0f} s"
            + (f"  ({where})" if where else ""))


def _how_far(p: dict) -> str:
    """`` 43% 12 s left`` from a running plan's last progress report."""
    pr = p.get("progress") or {}
    if pr.get("fraction") is None:
        return ""
    left = f" {p['left']:.0f} s left" if p.get("left") is not None else ""
    return f" {100 * pr['fraction']:.0f}%{left}"


def _page_link(client) -> str:
    """The HEC-RAS page, with the key that lets its buttons act when the scheduler gives one."""
    from .actions import dashboard_link

    try:
        return dashboard_link(client)
    except Exception:  # a scheduler without the dask_hecras.scheduler preload: the page alone
        return f"{client.dashboard_link.rsplit('/', 1)[0]}/hecras"


def dashboard(scheduler: str, certs: Path | None) -> int:
    """``dask-hecras dashboard``: the HEC-RAS page's link whose buttons act as this user."""
    from distributed import Client

    from .actions import dashboard_link

    security = None
    if certs:
        from .certs import security as make_security

        security = make_security(certs, "client")
    with Client(scheduler, security=security, timeout="20s") as client:
        try:
            link = dashboard_link(client)
        except Exception as e:
            print(f"error: the scheduler at {scheduler} gives no dashboard links ({e}); start it with "
                  "--preload dask_hecras.scheduler", file=sys.stderr)
            return 1
    print(link)
    print("Anyone with this link can retry, cancel and drain as you: keep it to yourself.", file=sys.stderr)
    return 0


def _slots(client) -> int:
    info = client.scheduler_info()
    return int(sum((w.get("resources") or {}).get("RAS", 0) for w in info.get("workers", {}).values()))


def run_plans(prj: Path, plan_ids: list[str] | None, *, engine: str, results: Path, timeout: str | None,
              retries: int, scheduler: str | None, detach: bool, force: bool, n_workers: int | None = None,
              certs: Path | None = None, keep_open: bool = False) -> int:
    """``dask-hecras run``: every check that can be made here is made before a cluster starts."""
    from .batch import check_inputs, check_options, check_results_dir
    from .engines import EngineNotFound, RasExe, default_engine, get_engine
    from .project import Project, ProjectError

    engine = (engine or default_engine()).lower()
    try:
        check_options(engine, retries, timeout)
        here = get_engine(engine) if engine != "fake" and scheduler is None else None  # this PC runs the plans
        if here is not None:
            try:
                engine_words = here.available()
            except EngineNotFound as e:
                raise ValueError(f"{e}. To try dask-hecras without HEC-RAS: --engine fake (synthetic results in "
                                 "HEC-RAS's layout), or dask-hecras demo") from None
        elif engine != "fake":
            engine_words = {"ras": "HEC-RAS (each worker's own installation)",
                            "linux": "HEC-RAS's Linux engine (each worker's own installation)",
                            "auto": "whichever HEC-RAS each worker has (Ras.exe; the Linux engine for prepared plans)",
                            }[engine]
        else:
            engine_words = "the FAKE engine (synthetic results in HEC-RAS's layout, not HEC-RAS)"
        project = Project(prj)
        plans = [project.plan(p) for p in plan_ids] if plan_ids else project.plans
        check_results_dir(results, plans)
        check_inputs(plans)
        if here is not None:  # a version this PC lacks, or a plan not prepared, is known now
            unmet = []
            for plan in plans:
                try:
                    here.executable_for(plan) if isinstance(here, RasExe) else here.extra_inputs(plan)
                except (EngineNotFound, ProjectError) as e:
                    unmet.append(f"{plan.id}: {e}")
            if unmet:
                raise ValueError("no HEC-RAS on this PC can run " + "; ".join(unmet))
    except (ProjectError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    if detach and scheduler is None:
        print("error: --detach needs --scheduler: a local cluster ends with this command", file=sys.stderr)
        return 2
    if keep_open and scheduler is not None:
        print("error: --keep-open is for a local cluster: a scheduler's dashboard stays open with it", file=sys.stderr)
        return 2
    from . import config

    if scheduler is None and engine.lower() == "ras" and timeout is None and config.get("timeout") is None:
        print("error: HEC-RAS never runs without a time limit (a dialog would hold the run for ever): "
              "give --timeout, such as --timeout 8h, or set hecras.timeout", file=sys.stderr)
        return 2
    from distributed import Client

    from .batch import local_cluster, submit

    cluster = None
    if scheduler is None:
        cluster = local_cluster(n_workers)
        client = Client(cluster)
    else:
        from .certs import security

        client = Client(scheduler, security=security(certs, "client") if certs else None)
    batch = None
    try:
        print(f"Dashboard: {client.dashboard_link}   HEC-RAS page: {_page_link(client)}")
        print(f"{project.name}: {len(plans)} plan(s) with {engine_words}; results in {results}")
        batch = submit(client, plans, engine=engine, results_dir=results, retries=retries, timeout=timeout,
                       force=force)
        print(f"Batch {batch.id}")
        if batch.skipped:
            print(f"Skipped {len(batch.skipped)} plan(s) already landed from the same input files: "
                  f"{', '.join(r.plan_id for r in batch.skipped)} (--force runs them again)")
        if detach:
            print(f"Batch {batch.id} detached: the scheduler's queue runs it; follow it with: "
                  f"dask-hecras status {results}")
            return 0
        started = time.monotonic()
        last, checked = "", started
        while True:
            snap = batch.snapshot()
            if snap["finished"]:
                break
            if cluster is not None and time.monotonic() - checked > 3:
                checked = time.monotonic()
                stuck = _nothing_left_to_run_on(client, snap, results)
                if stuck:
                    print(("\n" if sys.stdout.isatty() else "") + f"error: {stuck}; the plans left are cancelled",
                          file=sys.stderr, flush=True)
                    batch.cancel()
                    while not batch.snapshot()["finished"]:
                        time.sleep(0.2)
                    _report(batch.results(), time.monotonic() - started, results)
                    return 1
            line = _progress_line(snap, started, _slots(client))
            if sys.stdout.isatty():
                print("\r" + line.ljust(len(last)), end="", flush=True)
            elif line.split("]", 1)[1] != last.split("]", 1)[-1]:
                print(line, flush=True)
            last = line
            time.sleep(1)
        if sys.stdout.isatty():
            print()
        code = _report(batch.results(), time.monotonic() - started, results)
        if cluster is not None:
            _after_local_batch(client, keep_open)
        return code
    except KeyboardInterrupt:
        if batch is not None and cluster is None:
            batch.cancel()
            print(f"\nBatch {batch.id} cancelled (run with --detach to leave a batch running).", file=sys.stderr)
        return 130
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _nothing_left_to_run_on(client, snap: dict, results: Path) -> str | None:
    """A local cluster's workers never come back once all are out of rotation (failing runs,
    no HEC-RAS): the plans still waiting would wait for ever. Say why instead."""
    from .batch import workers_in_rotation
    from .pipeline import results_root
    from .records import read_workers

    waiting = [p["plan"] for p in snap["plans"] if p["state"] in ("queued", "lost")]
    if not waiting or any(p["state"] in ("running", "landing") for p in snap["plans"]):
        return None
    standing = workers_in_rotation(client)
    if not standing or any(standing.values()):
        return None
    reasons = {w.get("address"): w.get("reason", "") for w in read_workers(results_root(results))}
    why = "; ".join(sorted({reasons.get(a) or "out of rotation" for a in standing}))
    return (f"every worker of this local cluster was taken out of rotation ({why}), so {len(waiting)} plan(s) "
            f"cannot run: {', '.join(waiting[:10])}{' ...' if len(waiting) > 10 else ''}")


def _after_local_batch(client, keep_open: bool) -> None:
    """The dashboard lives as long as this command's local cluster: keep it on request."""
    page = client.dashboard_link.rsplit("/", 1)[0] + "/hecras"
    if not keep_open:
        print("\n(The dashboard closes with this command's local cluster; --keep-open keeps it open.)")
        return
    print(f"\nThe HEC-RAS page stays open at {page} until Ctrl+C.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("Closed.")


def _peak(summary) -> str:
    """The highest water surface of a plan's summary, with its units ("-" when it has none)."""
    import xarray as xr

    if not summary or not Path(summary).is_file():
        return "-"
    try:
        with xr.open_dataset(summary, engine="h5netcdf") as ds:
            if "max_water_surface" not in ds or not ds["max_water_surface"].size:
                return "-"
            v = ds["max_water_surface"]
            return f"{float(v.max()):.2f} {v.attrs.get('units', '')}".strip()
    except (OSError, ValueError):
        return "-"


def _report(results, seconds: float, where: Path, shown: int = 30) -> int:
    failed = [r for r in results if not r.ok]
    done = [r for r in results if r.ok]
    print(f"\n{len(done)} succeeded, {len(failed)} failed in {seconds:.1f} s. Results: {where}")
    if done:
        print()
        _table([["plan", "title", "run time", "peak water surface"]] +
               [[r.plan_id, r.title, _seconds(r.run_seconds), _peak(r.summary)] for r in done[:shown]])
        if len(done) > shown:
            print(f"... and {len(done) - shown} more")
    print(f"\nNext: dask-hecras status {where}   |   Python: dask_hecras.open_results(r\"{where}\")   |   "
          "notebooks/02-results.ipynb (maps, hydrographs)")
    if failed:
        print("\nFailed plans:")
        _table([["plan", "title", "status", "attempts", "reason"]] +
               [[r.plan_id, r.title, r.validation or r.status, str(len(r.attempts) or r.attempt), r.reason]
                for r in failed])
        return 1
    return 0


def _results_root(folder: Path) -> Path | None:
    """The results root holding ``folder``: itself, or a parent with batches (so a project's
    or a plan's results folder will do)."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".batches").is_dir():
            return candidate
    return None


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def status(results_dir: Path, batch_id: str | None) -> int:
    from .ledger import scheduler_reachable
    from .ledger import status as batch_status
    from .records import read_workers

    if not results_dir.exists():
        print(f"error: {results_dir} does not exist", file=sys.stderr)
        return 2
    root = _results_root(results_dir)
    if root is None:
        print(f"error: no batch has been submitted into {results_dir} (no .batches folder in it or above it)",
              file=sys.stderr)
        return 2
    try:
        st = batch_status(root, batch_id)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = st.counts()
    print(f"Batch {st.batch} in {root}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if st.heartbeat is None:
        print("(submitted by an earlier version of dask-hecras: states from the results folder only)")
    elif st.finished:
        print("Finished.")
    elif st.alive:
        print(f"Running: the scheduler's queue ({st.scheduler}) recorded it {_ago(time.time() - st.heartbeat)} ago.")
    else:
        listening = st.scheduler and scheduler_reachable(st.scheduler)
        print(f"NOT RUNNING: nothing has been recorded for {_ago(time.time() - st.heartbeat)}; its scheduler "
              f"({st.scheduler}) is {'unresponsive' if listening else 'gone'}. A scheduler started again with "
              "--preload dask_hecras.scheduler and hecras.queue.state resumes it; or submit the plans again "
              "(what landed is skipped).")
    rows = [["project", "plan", "title", "status", "attempts", "worker", "run", "reason"]]
    for p in st.plans:
        r = p.result
        shown = r.validation if p.state == "failed" and r is not None and r.validation else p.state
        rows.append([Path(p.project).stem, p.plan, p.title, shown, str(p.attempts),
                     (r.worker or r.host) if r is not None and p.state != "skipped" else p.worker,
                     _seconds(r.run_seconds if r is not None else None),
                     (p.note or p.reason) if p.state != "succeeded" else
                     (p.note or ("FAKE ENGINE: synthetic results" if r is not None and r.engine == "fake" else ""))])
    _table(rows)
    standing = [w for w in read_workers(root) if w.get("state") != "in rotation"]
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
                                 idle_minutes=args.idle_minutes, on_return=args.on_return, timeout=args.timeout)
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
    run.add_argument("--engine", default=None, choices=["ras", "linux", "auto", "fake"],
                     help="ras: HEC-RAS (the default: this PC's, or each worker's with --scheduler); linux: HEC-RAS's "
                          "Linux engine, for plans prepared on Windows; auto: whichever of the two each worker has; "
                          "fake: the fake engine, synthetic results in HEC-RAS's layout, to try dask-hecras without HEC-RAS")
    run.add_argument("--results", type=Path, default=None, help="results folder (default: hecras.results-dir or ./hecras-results)")
    run.add_argument("--retries", type=int, default=2, help="extra attempts for failures a retry can fix (default 2)")
    run.add_argument("--timeout", default=None, help="per-plan time limit, e.g. 6h or 900 (seconds)")
    run.add_argument("--detach", action="store_true", help="submit and return; the batch goes on without this command")
    run.add_argument("--force", action="store_true", help="run plans again even if they already succeeded")
    run.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: from cores and memory)")
    run.add_argument("--certs", type=Path, default=None, help="folder of TLS certificates (dask-hecras certs) for a tls:// scheduler")
    run.add_argument("--keep-open", action="store_true", help="keep the local cluster and its dashboard open after the batch, until Ctrl+C")
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
    wc.add_argument("--timeout", default="12h", help="longest a HEC-RAS run may take on this PC (default 12h)")
    dash = sub.add_parser("dashboard", help="print the HEC-RAS dashboard page's link whose buttons act as you")
    dash.add_argument("scheduler", help="the scheduler's address, e.g. tls://ras-scheduler:8786")
    dash.add_argument("--certs", type=Path, default=None, help="folder of TLS certificates (dask-hecras certs)")
    demo = sub.add_parser("demo", help="make the demo project in a temporary folder and run it on a local cluster")
    demo.add_argument("--plans", type=int, default=8, help="number of plans (default 8)")
    demo.add_argument("--results", type=Path, default=None, help="results folder (default: beside the demo project)")
    demo.add_argument("--workers", type=int, default=None)
    demo.add_argument("--keep-open", action="store_true", help="keep the cluster and its dashboard open after the batch, until Ctrl+C")
    return parser


def output_without_console() -> Path | None:
    """Under ``pythonw`` (the Scheduled Task's worker) there is no stdout or stderr: this
    process's own messages, its errors and tracebacks would vanish. They go to
    ``%LOCALAPPDATA%\\dask-hecras\\dask-hecras.log`` instead (rotated at 5 MB); returns its path."""
    import os

    from .config import state_folder

    if sys.stdout is not None and sys.stderr is not None:
        return None
    path = state_folder() / "dask-hecras.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size > 5 * 2**20:
            os.replace(path, path.with_name(path.name + ".1"))
        stream = open(path, "a", encoding="utf-8", errors="replace", buffering=1)
    except OSError:
        return None  # nowhere to write: as before
    sys.stdout = sys.stdout or stream
    sys.stderr = sys.stderr or stream
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} dask-hecras {' '.join(sys.argv[1:])} (pid {os.getpid()})", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    output_without_console()
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
    if args.command == "dashboard":
        return dashboard(args.scheduler, args.certs)
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
                         detach=args.detach, force=args.force, n_workers=args.workers, certs=args.certs,
                         keep_open=args.keep_open)

    from .examples import make_project

    folder = Path(tempfile.mkdtemp(prefix="dask-hecras-demo-"))
    prj = make_project(folder / "project", n_plans=args.plans)
    print(f"Demo project written to {prj}")
    return run_plans(prj, None, engine="fake", results=results_root(args.results or folder / "results"),
                     timeout=None, retries=2, scheduler=None, detach=False, force=False, n_workers=args.workers,
                     keep_open=args.keep_open)


if __name__ == "__main__":
    sys.exit(main())
