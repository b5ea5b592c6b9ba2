"""Batches of plans on a Dask cluster, from the client's side.

:func:`submit` checks the plans and options (every missing file, an unreadable timeout, a
results folder that cannot be written or lies inside a project: all before anything is
sent), computes each plan's fingerprint and expected work, and hands the batch to the plan
queue on the scheduler (``queue``) in one call. From then on the batch belongs to the queue,
not to this client: closing the notebook changes nothing. :class:`Batch` follows it, from the
queue while connected and from its ledger under ``results_dir`` always (:func:`open_batch`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import config, ledger, records
from .pipeline import RetryableFailure, results_root
from .project import Plan, ProjectError
from .records import SUCCEEDED, PlanResult
from .slots import RESOURCE, update_slots

FINAL = ledger.FINAL


class BatchError(RuntimeError):
    """The queue refused a batch (e.g. the scheduler cannot write its ledger)."""


# --------------------------------------------------------------------------- estimates


def plan_work(plan: Plan, cells: dict | None = None) -> float:
    """Work a plan implies: computation steps × (2D cells + 1000), from its files alone.
    ``cells`` (kept across calls) reads each geometry file once."""
    from .staging import mesh_cells

    if plan.start and plan.end and plan.computation_interval and plan.computation_interval.total_seconds() > 0:
        steps = (plan.end - plan.start) / plan.computation_interval
    else:
        steps = 1000.0
    cells = {} if cells is None else cells
    if plan.geometry_file not in cells:
        cells[plan.geometry_file] = mesh_cells(plan)
    return steps * (cells[plan.geometry_file] + 1000)


# --------------------------------------------------------------------------- checks


def check_inputs(plans: list[Plan]) -> list:
    """Every plan's input files (:meth:`Plan.inputs`); one :class:`ProjectError` naming every
    missing file of every plan, per project."""
    problems: dict[Path, tuple[list[str], list[Path]]] = {}
    memo: dict = {}
    found = []
    for plan in plans:
        try:
            found.append(plan.inputs(memo))
        except ProjectError as e:
            text, missing = problems.setdefault(plan.project, ([], []))
            missing.extend(e.missing)
            if not e.missing:
                text.append(e.problem)
    if problems:
        (prj, (text, missing)), *more = problems.items()
        extra = "".join(f"\n(and {p}: {'; '.join(t) or 'files missing'})" for p, (t, _) in more)
        raise ProjectError(prj, ("; ".join(text) or "files its plans need are missing:") + extra, missing)
    return found


def check_results_dir(root: Path, plans: list[Plan]) -> None:
    """The results folder can be written, and keeps out of every project folder (dask-hecras
    never writes into a user's project)."""
    for folder in sorted({p.folder for p in plans}):
        folder = Path(os.path.abspath(folder))
        if root == folder or folder in root.parents:
            raise ValueError(f"results folder {root} is inside the project folder {folder}: choose a folder "
                             "outside it (dask-hecras never writes into a project)")
        if root in folder.parents:
            raise ValueError(f"results folder {root} holds the project folder {folder}: choose a folder of "
                             "its own for results (dask-hecras never writes into a project)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}-{time.monotonic_ns()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"results folder {root} cannot be written: {e.strerror or e}") from None


def check_options(engine, retries, timeout) -> float | None:
    """The options of a batch, checked here rather than on every worker; the timeout in seconds."""
    from .engines import ENGINES

    if not isinstance(engine, str) or engine.lower() not in (*ENGINES, "auto"):
        raise ValueError(f"engine must be one of {sorted([*ENGINES, 'auto'])} (each worker's configuration says "
                         f"what runs; auto: whichever HEC-RAS each worker has), not {engine!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number, 0 or more, not {retries!r}")
    return config.timeout_seconds(timeout, "timeout")


# --------------------------------------------------------------------------- submitting


def prepared_for_linux(plan: Plan) -> bool:
    """Whether the plan has what HEC-RAS's Linux engine needs (prepared by HEC-RAS on Windows),
    so the queue may send it to a Linux worker."""
    from .engines.linux import missing_inputs

    return not missing_inputs(plan)


def submit(
    client,
    plans: Iterable[Plan],
    *,
    engine: str | None = None,
    results_dir: str | os.PathLike | None = None,
    retries: int = 2,
    timeout: float | str | None = None,
    force: bool = False,
    detach: bool = False,
    scratch: str | os.PathLike | None = None,
) -> "Batch":
    """Run ``plans`` on the cluster of ``client``, longest expected first; returns at once.

    Plans whose results already landed in ``results_dir`` from the same input files are
    skipped unless ``force``. ``retries`` is how many failed runs of a plan are run again
    (a run lost with its worker, or stopped by its PC's owner, is not a failed run).
    ``engine`` is ``"ras"`` (each worker's HEC-RAS; the default, ``hecras.engine``), ``"linux"``
    (HEC-RAS's Linux engine, for plans prepared on Windows), ``"auto"`` (whichever of the two a
    worker has: each plan goes only to a worker with its engine and a version that opens it; a
    plan no worker can run fails at once, saying why) or ``"fake"``.
    ``timeout`` (``"8h"``, ``"90min"``, seconds) limits each run; ``None`` leaves it to each
    worker's ``hecras.timeout``. The batch belongs to the scheduler's queue: it goes on
    whether or not this client stays (``detach`` is kept for earlier code; it changes nothing).
    """
    from .identity import fingerprint
    from .runs import RunFolders

    from .engines import default_engine

    engine = engine or default_engine()
    timeout_s = check_options(engine, retries, timeout)
    plans = list(plans)
    if not plans:
        raise ValueError("no plans to submit")
    root = results_root(results_dir)
    check_results_dir(root, plans)
    sent = paths_for_cluster(client, [root, *{p.project for p in plans}])
    inputs = check_inputs(plans)
    memo: dict = {}
    cells: dict = {}
    entries = [{"project": sent[p.project], "plan": p.id, "title": p.title,
                "fingerprint": fingerprint(p, files, memo), "work": plan_work(p, cells),
                "version": p.program_version or "", "prepared": prepared_for_linux(p)}
               for p, files in zip(plans, inputs)]
    payload = {"results_dir": sent[root], "engine": engine.lower(), "retries": retries, "timeout": timeout_s,
               "force": bool(force), "scratch": str(scratch) if scratch else None, "plans": entries,
               "client": f"{os.environ.get('USERNAME') or os.environ.get('USER') or ''}@{_host()}"}
    client.register_plugin(RunFolders())  # workers started without our preload clear up too
    reply = _call(client, "hecras_submit", batch=payload)
    if reply.get("status") != "OK":
        raise BatchError(reply.get("message", str(reply)))
    batch = Batch(reply["batch"], root, plans, client)
    skipped = set(reply.get("skipped", []))
    batch.skipped = [records.load_result(_plan_folder(root, p)) for i, p in enumerate(plans) if i in skipped]
    return batch


def paths_for_cluster(client, paths: list[Path]) -> dict[Path, str]:
    """Each path as the cluster's workers and scheduler must be given it (a mapped drive as its
    share); one ``ValueError`` naming every path on this PC's own drives when the cluster runs
    on other PCs (see ``shares.py``)."""
    from .shares import UnreachablePath, for_cluster

    other_pcs = cluster_on_other_pcs(client)
    sent, refused = {}, []
    for path in paths:
        try:
            sent[path] = for_cluster(path, other_pcs=other_pcs)
        except UnreachablePath as e:
            refused.append(str(e))
    if refused:
        raise ValueError("the cluster's PCs cannot reach " + ("; ".join(refused) if len(refused) > 1 else refused[0]))
    return sent


def cluster_on_other_pcs(client) -> bool:
    """Whether the scheduler or any worker of ``client``'s cluster runs on another machine."""
    import psutil
    from distributed.comm import get_address_host, parse_address

    mine = {"localhost", "127.0.0.1", "::1", _host().lower()}
    mine |= {a.address.split("%")[0].lower() for addrs in psutil.net_if_addrs().values() for a in addrs}
    for address in [client.scheduler.address, *client.scheduler_info().get("workers", {})]:
        if parse_address(address)[0] != "inproc" and get_address_host(address).lower() not in mine:
            return True
    return False


def _host() -> str:
    import socket

    return socket.gethostname()


def _has_queue(dask_scheduler=None) -> bool:
    from .queue import NAME

    return NAME in dask_scheduler.plugins


def _call(client, op: str, **kwargs):
    """A dask-hecras handler on the scheduler; installs the queue first where no preload did."""
    if not getattr(client, "_hecras_queue", False):
        if not client.run_on_scheduler(_has_queue):
            from .queue import PlanQueue

            client.register_plugin(PlanQueue())  # a scheduler started without --preload dask_hecras.scheduler
        client._hecras_queue = True
    return client.sync(getattr(client.scheduler, op), **kwargs)


def _plan_folder(root: Path, plan: Plan) -> Path:
    return (records.find_project_folder(root, plan.project) or root / plan.project_name) / plan.id


# --------------------------------------------------------------------------- following a batch


@dataclass
class Batch:
    """A submitted batch. ``results()`` and ``dataset()`` wait for it; ``snapshot()`` and
    ``counts()`` look without waiting."""

    id: str
    results_dir: Path
    plans: list[Plan]
    client: object = None
    skipped: list[PlanResult] = field(default_factory=list)  # landed earlier from the same inputs

    def snapshot(self) -> dict:
        """The batch now: from the queue while this client is connected, else from its ledger.

        ``{"batch", "finished", "counts", "plans": [{"plan", "project", "state", "reason", ...}],
        "source": "queue" | "ledger"}``; a ledger whose scheduler stopped recording says
        ``"alive": False`` and shows unfinished plans as ``interrupted``.
        """
        if self.client is not None and getattr(self.client, "status", "") == "running":
            try:
                snap = _call(self.client, "hecras_batch", batch=self.id)
                if not snap.get("unknown"):
                    return {**snap, "source": "queue", "alive": True}
            except (OSError, TimeoutError):
                pass
        st = ledger.status(self.results_dir, self.id)
        plans = [{"project": Path(p.project).stem, "project_path": p.project, "plan": p.plan, "title": p.title,
                  "state": p.state, "reason": p.reason or p.note, "attempt": p.attempts, "worker_name": p.worker,
                  "folder": str(p.folder)} for p in st.plans]
        return {"batch": self.id, "finished": st.finished, "counts": st.counts(), "plans": plans,
                "source": "ledger", "alive": st.alive, "heartbeat": st.heartbeat}

    def counts(self) -> dict[str, int]:
        """Plans per state, now."""
        return dict(self.snapshot()["counts"])

    def done(self) -> bool:
        return bool(self.snapshot()["finished"])

    def wait(self, timeout: float | str | None = None, poll: float = 0.5) -> "Batch":
        """Until every plan has ended (succeeded, failed, skipped or cancelled) and every
        success is summarised; ``TimeoutError`` after ``timeout``."""
        limit = config.timeout_seconds(timeout, "timeout")
        deadline = None if limit is None else time.monotonic() + limit
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                counts = self.counts()
                raise TimeoutError(f"batch {self.id} not finished after {limit:g} s: "
                                   + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
            time.sleep(poll)
        return self

    def results(self, timeout: float | str | None = None) -> list[PlanResult]:
        """One result per plan, in plan order, once the batch has ended."""
        self.wait(timeout)
        return self._results(self.snapshot())

    def dataset(self, timeout: float | str | None = None):
        """The succeeded plans' summaries stacked along ``plan`` (see :func:`combine`)."""
        from .results import combine

        return combine([r for r in self.results(timeout) if r.ok])

    def cancel(self) -> None:
        """Stop the batch: queued plans never start, running engines are stopped."""
        reply = _call(self.client, "hecras_cancel", batch=self.id)
        if reply.get("status") != "OK":
            raise BatchError(reply.get("message", str(reply)))

    def _results(self, snap: dict) -> list[PlanResult]:
        out = []
        for entry in snap["plans"]:
            folder, state = Path(entry["folder"]), entry["state"]
            r = records.load_result(folder)  # a skipped plan's is the earlier batch's
            if state != "skipped" and (r is None or r.batch != self.id):
                r = records.load_result(folder.with_name(f"{folder.name}.failed"))  # beside an earlier success
                r = r if r is not None and r.batch == self.id else None
            if r is None:  # nothing landed for it (never ran, lost, cancelled)
                r = PlanResult(entry["plan"], entry["project"], records.FAILED, entry.get("reason", ""),
                               title=entry.get("title", ""), batch=self.id, folder=folder,
                               project_path=entry.get("project_path", ""))
            if r.batch == self.id:
                r.attempts = records.attempts(folder.parent, entry["plan"], self.id)
                if not r.ok and state not in ("succeeded", "failed"):
                    r.status = state  # cancelled, or not ended yet
            out.append(r)
        return out

    def __repr__(self) -> str:
        return f"<Batch {self.id}: {len(self.plans)} plans, {len(self.skipped)} skipped, results in {self.results_dir}>"


def open_batch(results_dir: str | os.PathLike, batch: str | None = None, client=None) -> Batch:
    """A batch as ``results_dir`` records it (the latest one unless ``batch`` is given), for a
    later session; with ``client``, followed live from the queue."""
    root = results_root(results_dir)
    data, _ = ledger.read_batch(root, batch)
    plans = [Plan(p["plan"], Path(p["project"]), title=p.get("title", "")) for p in data["plans"]]
    return Batch(data["batch"], root, plans, client)


# --------------------------------------------------------------------------- workers


async def _set_slots(slots: int, root: str, state: str, reason: str, dask_worker=None) -> None:
    if state == "in rotation":
        dask_worker._hecras_failures_in_a_row = 0
    name = str(dask_worker.name) if dask_worker.name is not None else dask_worker.address
    records.write_worker(Path(root), name, {"worker": name, "address": dask_worker.address, "host": dask_worker.ip,
                                            "state": state, "reason": reason,
                                            "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
    dask_worker.log_event("hecras", {"action": state, "worker": dask_worker.address, "reason": reason})
    await update_slots(dask_worker, in_rotation=state == "in rotation", full=slots or None)


def _in_rotation(dask_worker=None) -> bool:
    return (getattr(dask_worker, "_hecras_slots", None) or {}).get("in_rotation", True)


def workers_in_rotation(client) -> dict[str, bool]:
    """Whether each worker takes plans: ``False`` once taken out of rotation (failing runs, no
    HEC-RAS, drained) until :func:`restore`; a colleague at the PC does not count."""
    return client.run(_in_rotation)


def restore(client, workers: list[str] | None = None, *, results_dir=None, slots: int = 1) -> None:
    """Put workers (all by default) back into rotation with ``slots`` RAS slots (opened when
    their owner policy allows: not while a colleague works at the PC)."""
    client.run(_set_slots, slots, str(results_root(results_dir)), "in rotation", "restored", workers=workers)


def _runs_executing(ws) -> bool:
    return any(RESOURCE in (ts.resource_restrictions or {}) for ts in ws.executing)


async def _retire_when_idle(dask_scheduler, address: str, poll: float) -> None:
    import asyncio

    while address in dask_scheduler.workers:
        if not _runs_executing(dask_scheduler.workers[address]):
            await dask_scheduler.retire_workers(workers=[address], close_workers=True)
            return
        await asyncio.sleep(poll)


def _start_drain(address: str, poll: float, dask_scheduler=None) -> str:
    import asyncio

    asyncio.ensure_future(_retire_when_idle(dask_scheduler, address, poll))  # lives on the scheduler
    return "draining"


def drain(client, worker: str, *, results_dir=None, poll: float = 1.0) -> None:
    """No new plans go to ``worker``; it retires when its running plan ends.

    The waiting is done on the scheduler, so it goes on if this client closes.
    """
    client.run(_set_slots, 0, str(results_root(results_dir)), "draining", "drained by request", workers=[worker])
    client.run_on_scheduler(_start_drain, worker, poll)


def _running(dask_scheduler=None) -> dict[str, str]:
    from .queue import queue_of

    queue = queue_of(dask_scheduler)
    return queue.running() if queue is not None else {}


def running_plans(client) -> dict[str, str]:
    """``<project>-<plan>`` of every plan whose engine runs now → its worker's address."""
    return client.run_on_scheduler(_running)


def local_cluster(n_workers: int | None = None, *, threads_per_worker: int = 2, **kwargs):
    """A LocalCluster for running plans on this machine: each worker has ``RAS=1`` and a
    spare thread for summarising beside the run; the plan queue and the dashboard's HEC-RAS
    page (``/hecras``) are on.

    Workers default to one per 2 cores and per 4 GiB of memory (2D HEC-RAS uses
    several cores and a few GB per plan), at least one; with ``hecras.cores-per-plan`` set, one
    per plan the cores allow (``config.ras_slots``).
    """
    import psutil
    from distributed import LocalCluster

    if n_workers is None:
        cores = os.cpu_count() or 1
        memory_gib = psutil.virtual_memory().total / 2**30
        per_plan = config.cores_per_plan()  # said: as many plans as the cores allow
        n_workers = config.ras_slots(cores) if per_plan else max(1, min(cores // 2, int(memory_gib // 4)))
    kwargs.setdefault("processes", True)
    kwargs.setdefault("dashboard_address", ":8787")
    kwargs.setdefault("resources", {RESOURCE: 1})
    kwargs.setdefault("preload", ["dask_hecras.worker"])  # capabilities for the /hecras page, the start-up sweep
    scheduler_kwargs = dict(kwargs.pop("scheduler_kwargs", None) or {})
    scheduler_kwargs.setdefault("preload", ["dask_hecras.scheduler"])  # the plan queue and the /hecras page
    kwargs["scheduler_kwargs"] = scheduler_kwargs
    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, **kwargs)


__all__ = ["submit", "Batch", "BatchError", "open_batch", "local_cluster", "plan_work", "drain", "restore",
           "running_plans", "RESOURCE", "SUCCEEDED", "RetryableFailure"]
