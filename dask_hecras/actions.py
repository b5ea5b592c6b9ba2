"""What a cluster user can do from the HEC-RAS dashboard page: retry a failed plan, cancel a
queued or running plan, drain a worker, and read a run's engine log and computation messages.

The dashboard's port has no authentication of its own (Dask serves it over plain HTTP or
server-only TLS), and anyone who can act on the queue can stop a night's work. So the page
acts only when opened from a link that a client holding the cluster's certificate asks the
scheduler for (:func:`dashboard_link`, ``dask-hecras dashboard``): the link carries a random
key that names who asked, until ``hecras.dashboard.link-lifetime``. Without it the page only
shows. Each action is recorded in the batch's ledger with who and when.

Reading logs needs no key: it shows, like the page. A running plan's log is read on its worker
(a fixed function reading fixed file names in the run folder the queue knows); a finished
plan's from the results folder, in a thread.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import secrets
import socket
import time
from pathlib import Path

from . import config

log = logging.getLogger("dask_hecras")
LINK_OP = "hecras_dashboard_link"
TAIL_BYTES = 1 << 20  # a log shown is its last megabyte


class Keys:
    """The keys of the links handed out by this scheduler: key → who asked, until when."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, float]] = {}

    def issue(self, who: str, lifetime: float) -> str:
        now = time.time()
        self.keys = {k: v for k, v in self.keys.items() if v[1] > now}
        key = secrets.token_urlsafe(24)
        self.keys[key] = (who, now + lifetime)
        return key

    def who(self, key: str | None) -> str | None:
        """Who the link's key was given to; ``None`` for no key, a wrong one or an expired one."""
        if not key:
            return None
        found = self.keys.get(key)
        if found is None or found[1] < time.time():
            return None
        return found[0]


def keys_of(scheduler) -> Keys:
    keys = getattr(scheduler, "_hecras_keys", None)
    if keys is None:
        keys = scheduler._hecras_keys = Keys()
    return keys


def install(scheduler) -> None:
    """The link handler (a scheduler comm handler: only clients that reach the scheduler, through
    its TLS when it has one, can ask for a link)."""

    def handle_link(comm, user: str = "", host: str = "") -> dict:
        who = f"{user or 'someone'}@{host or '?'}"
        cert = _peer_name(comm)
        if cert:
            who += f" (certificate {cert})"
        lifetime = config.seconds("dashboard.link-lifetime", "7d")
        key = keys_of(scheduler).issue(who, lifetime)
        return {"key": key, "who": who, "expires": time.time() + lifetime}

    scheduler.handlers[LINK_OP] = handle_link


def _peer_name(comm) -> str:
    """The common name of the client's TLS certificate, when it came through TLS."""
    try:
        cert = (comm.extra_info or {}).get("peercert") or {}
        for rdn in cert.get("subject", ()):
            for name, value in rdn:
                if name == "commonName":
                    return str(value)
    except Exception:
        pass
    return ""


def dashboard_link(client) -> str:
    """The HEC-RAS page's address with a key that lets its buttons act (retry, cancel, drain),
    recorded as this user on this PC. Ask with a client that holds the cluster's certificate."""
    from urllib.parse import urlsplit

    reply = client.sync(_ask_link, client)
    base = client.dashboard_link
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/hecras?key={reply['key']}"


async def _ask_link(client) -> dict:
    return await client.scheduler.hecras_dashboard_link(user=getpass.getuser(), host=socket.gethostname())


# --------------------------------------------------------------------------- actions


def retry(queue, batch: str, index: int, who: str) -> str:
    return queue.retry_plan(batch, index, who)


def cancel(queue, batch: str, index: int, who: str) -> str:
    return queue.cancel_plan(batch, index, who)


async def drain(scheduler, queue, address: str, who: str) -> str:
    """No new plans for the worker; it retires once its running plan ends (as ``batch.drain``)."""
    from .batch import _retire_when_idle, _set_slots
    from .queue import ActionRefused

    ws = scheduler.workers.get(address)
    if ws is None:
        raise ActionRefused(f"worker {address} is no longer connected")
    if queue.client is None:
        raise ActionRefused("the queue's client is not connected yet")
    # recorded in the ledgers of the batches running, else of the latest one
    unfinished = [b for b in queue.batches.values() if b.finished is None]
    latest = [max(queue.batches.values(), key=lambda b: b.seq)] if queue.batches else []
    books = unfinished or latest
    root = str(books[0].root) if books else str(config.get("results-dir") or Path.cwd() / "hecras-results")
    await queue.client.run(_set_slots, 0, root, "draining", f"drained from the dashboard by {who}", workers=[address])
    queue._spawn(_retire_when_idle(scheduler, address, 1.0))  # kept by the queue until it ends
    queue.note_action(books, {"action": "drain", "who": who, "worker": str(ws.name), "address": address})
    return f"{ws.name} is draining: it takes no new plan and retires when its run ends"


# --------------------------------------------------------------------------- logs


def run_file_names(project: str, plan_id: str) -> dict[str, list[str]]:
    """The files that hold a run's engine log and its computation messages, best first."""
    name = Path(project).stem
    return {"engine": [f"{name}.{plan_id}.engine.log"],
            "messages": [f"{name}.{plan_id}.computeMsgs.txt", f"{name}.bco{plan_id[1:]}"]}


def read_tail(folder: str, names: list[str]) -> tuple[str, str]:
    """The last :data:`TAIL_BYTES` of the first of ``names`` found in ``folder`` (or, for a run
    folder, in the project copy nested in it), and its path; ``("", "")`` if none is there."""
    base = Path(folder)
    candidates = [base / n for n in names] + [p for n in names for p in sorted(base.glob(f"*/{n}"))]
    for path in candidates:
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                fh.seek(max(0, size - TAIL_BYTES))
                data = fh.read()
        except OSError:
            continue
        text = data.decode("utf-8", errors="replace")
        if size > TAIL_BYTES:
            text = f"[... the first {size - TAIL_BYTES} bytes left out ...]\n" + text.split("\n", 1)[-1]
        return text, str(path)
    return "", ""


async def plan_log(queue, batch: str, index: int, which: str) -> tuple[str, str]:
    """``(text, where)``: a plan's engine log (``which="engine"``) or computation messages
    (``"messages"``), from its worker while it runs, else from where its last attempt landed."""
    from . import records
    from .queue import ActionRefused

    b, p = queue._plan(batch, index)
    names = run_file_names(p.project, p.plan_id).get(which)
    if names is None:
        raise ActionRefused(f"no such log: {which!r} (engine or messages)")
    if p.state == "running" and p.run_folder and p.worker in queue.scheduler.workers and queue.client is not None:
        got = await queue.client.run(read_tail, p.run_folder, names, workers=[p.worker])
        text, where = got.get(p.worker, ("", ""))
        if where:
            return text, f"{p.worker_name}:{where}"
        return "", ""

    def landed() -> tuple[str, str]:
        folder = Path(p.project_dir) / p.plan_id
        for f in (folder.with_name(f"{p.plan_id}.failed"), folder):  # a failure beside an earlier success first
            result = records.load_result(f)
            if result is not None and result.batch == b.id and result.attempt_id == p.attempt_id:
                text, where = read_tail(str(f), names)
                return (text, where) if where else (f"(no file; its record says: {result.reason})", str(f))
        return read_tail(str(folder), names)

    return await asyncio.to_thread(landed)
