"""A batch's ledger: the one record of a batch that outlives every process but the results folder.

::

    results_dir/.batches/<batch>/batch.json    what was submitted: options, and per plan its project
                                               file, plan id, title, fingerprint, results folder
    results_dir/.batches/<batch>/ledger.json   the scheduler queue's view: per plan its state, attempt,
                                               worker, why; rewritten after changes and at least every
                                               hecras.queue.heartbeat while the batch runs

The queue on the scheduler is the only writer of both. Workers write what they know first
hand beside it (attempt records, the landed results with their ``result.json``), and the
ledger is read together with those: a plan counts as landed by a batch only when its
``result.json`` says so, whatever the ledger last said, and a ledger whose heartbeat stopped
belongs to a scheduler that is gone.

The scheduler also keeps, in its own local state file (``hecras.queue.state``), which results
folders hold batches it has not finished, so that a restarted scheduler resumes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import records

FINAL = ("succeeded", "failed", "skipped", "cancelled")


def batch_dir(root: Path, batch: str) -> Path:
    return Path(root) / ".batches" / batch


def write_batch(root: Path, data: dict) -> None:
    records.write_json(batch_dir(root, data["batch"]) / "batch.json", data)


def write_ledger(root: Path, batch: str, data: dict) -> None:
    records.write_json(batch_dir(root, batch) / "ledger.json", data)


def batches(root: Path) -> list[str]:
    """Batch ids under ``root``, oldest first (ids start with a sortable time stamp); earlier
    versions' one-file batches included."""
    folder = Path(root) / ".batches"
    if not folder.is_dir():
        return []
    ids = {p.name for p in folder.iterdir() if p.is_dir() and (p / "batch.json").is_file()}
    ids |= {p.stem for p in folder.glob("*.json")}
    return sorted(ids)


def read_batch(root: Path, batch: str | None = None) -> tuple[dict, dict | None]:
    """A batch's ``batch.json`` and ``ledger.json`` (the latest batch when ``batch`` is None)."""
    root = Path(root)
    if batch is None:
        found = batches(root)
        if not found:
            raise FileNotFoundError(f"no batch has been submitted into {root}")
        batch = found[-1]
    data = records.read_json(batch_dir(root, batch) / "batch.json")
    if data is None:  # an earlier version's batch: one file, no ledger
        data = records.read_json(root / ".batches" / f"{batch}.json")
        if data is None:
            raise FileNotFoundError(f"no batch {batch!r} under {root}")
        return _from_legacy(root, data), None
    return data, records.read_json(batch_dir(root, batch) / "ledger.json")


def _from_legacy(root: Path, data: dict) -> dict:
    plans = []
    for i, p in enumerate(data.get("plans", [])):
        folder = records.find_project_folder(root, p["project"]) or Path(root) / Path(p["project"]).stem
        plans.append({"index": i, "project": p["project"], "plan": p["plan"], "title": p.get("title", ""),
                      "folder": str(folder), "fingerprint": "", "expected": p.get("expected_seconds")})
    return {**data, "plans": plans, "legacy": True}


# --------------------------------------------------------------------------- the scheduler's list


def remembered(state_file: Path | None) -> list[dict]:
    """``[{"results_dir": ..., "batch": ...}]``: unfinished batches this scheduler runs."""
    if not state_file:
        return []
    data = records.read_json(Path(state_file))
    return list(data.get("batches", [])) if isinstance(data, dict) else []


def remember(state_file: Path | None, entries: list[dict]) -> None:
    if state_file:
        records.write_json(Path(state_file), {"batches": entries, "updated": time.time()})


# --------------------------------------------------------------------------- reading a batch


@dataclass
class PlanStatus:
    project: str  # the .prj, full path
    plan: str
    title: str
    folder: Path  # results_dir/<project folder>/<plan>
    state: str  # queued, running, lost, landing, succeeded, failed, skipped, cancelled, interrupted
    attempts: int = 0
    worker: str = ""
    reason: str = ""
    result: records.PlanResult | None = None  # what landed for this batch (or the earlier success skipped)
    note: str = ""


@dataclass
class BatchStatus:
    batch: str
    root: Path
    submitted: str
    plans: list[PlanStatus] = field(default_factory=list)
    finished: bool = False
    alive: bool | None = None  # a queue has written the ledger lately; None: no ledger (an earlier version)
    heartbeat: float | None = None  # when the queue last wrote the ledger (seconds since the epoch)
    scheduler: str = ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.plans:
            out[p.state] = out.get(p.state, 0) + 1
        return out


def status(root: Path, batch: str | None = None, *, stale_after: float | None = None) -> BatchStatus:
    """A batch as its ledger and the results folder tell it, without any scheduler.

    A plan is ``succeeded`` only when its landed ``result.json`` is this batch's; a plan the
    ledger saw running while its queue stopped writing (scheduler gone) is ``interrupted``.
    ``stale_after`` (default: three heartbeats) is how old the ledger may be before the batch
    counts as abandoned by its scheduler.
    """
    from . import config

    data, book = read_batch(root, batch)
    batch = data["batch"]
    heartbeat = float(book["updated"]) if book else None
    if stale_after is None:
        stale_after = 3 * config.seconds("queue.heartbeat", "30s") + 5
    finished = bool(book and book.get("finished"))
    alive = None if book is None else finished or (time.time() - heartbeat) < stale_after
    out = BatchStatus(batch, Path(root), data.get("submitted", ""), finished=finished, alive=alive,
                      heartbeat=heartbeat, scheduler=(book or {}).get("scheduler", ""))
    entries = {int(e["index"]): e for e in (book or {}).get("plans", [])}
    for p in data["plans"]:
        e = entries.get(int(p["index"]), {})
        folder = Path(p["folder"]) / p["plan"] if "folder" in p else Path(root) / p["plan"]
        plan = PlanStatus(p["project"], p["plan"], p.get("title", ""), folder,
                          e.get("state", "queued" if book is not None else "unknown"),
                          int(e.get("attempt", 0)), e.get("worker_name", ""), e.get("reason", ""))
        landed = records.load_result(folder)
        if landed is not None and landed.batch == batch:
            plan.result = landed
            if landed.ok:
                plan.state = "succeeded"  # landed is done, whatever the ledger last said
            elif plan.state not in FINAL and book is None:
                plan.state = "failed"
        elif plan.state == "skipped":
            plan.result = landed
        elif plan.state == "succeeded":  # the ledger says so, but another batch's results replaced them
            plan.note = f"its results were replaced later by batch {landed.batch}" if landed else "its results are gone"
        if book is None and plan.result is None:
            plan.state = "unknown"
        if not alive and plan.state not in FINAL:
            plan.note = plan.note or f"was {plan.state} when the scheduler stopped recording"
            plan.state = "interrupted"
        out.plans.append(plan)
    return out


def scheduler_reachable(address: str, timeout: float = 2.0) -> bool:
    """Something listens at the scheduler's address (``tls://host:port``)."""
    import socket

    try:
        host_port = address.split("://", 1)[-1]
        host, port = host_port.rsplit(":", 1)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def default_state_file() -> Path:
    """Where a scheduler keeps its list when ``hecras.queue.state`` says ``default``."""
    from . import config

    return config.state_folder() / "scheduler-batches.json"
