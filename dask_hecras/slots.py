"""A worker's RAS slots: how many HEC-RAS runs it takes at once, and where waiting runs go.

Two things close a PC's slots: being out of rotation (no HEC-RAS, failing runs, drained;
see ``batch``) and its owner being at work (``owner``). Each says only its own part, so
neither undoes the other.

The plan queue (``queue``) releases a run only to a worker whose slot is free and open, so
its runs never wait on a closed PC; it is told at once when slots change. Plain Dask tasks
with ``resources={"RAS": 1}`` (``client.map(run_plan, ...)``) are sent to a worker as soon as
they are submitted and wait there for a free slot; work stealing moves a waiting run only off
a worker with much more queued than another. So when a worker's slots close, the runs waiting
on it move to workers with open slots; when slots open, runs waiting on closed workers, and
runs no worker could take ("no-worker"), come to them. That needs scheduler and worker internals (work stealing's
move protocol, the worker's unpause stimulus), kept in this module.
"""

from __future__ import annotations

import time

RESOURCE = "RAS"


async def update_slots(worker, *, in_rotation: bool | None = None, owner_away: bool | None = None,
                       full: int | None = None) -> int:
    """Open the worker's RAS slots only while it is in rotation *and* its owner is away.

    ``full`` is the slot count when open (default: the worker's ``--resources RAS=n``).
    Returns the slots now set.
    """
    state = getattr(worker, "_hecras_slots", None)
    if state is None:
        started = int(worker.state.total_resources.get(RESOURCE, 1))
        state = worker._hecras_slots = {"full": started or 1, "in_rotation": True, "owner_away": True}
    for key, value in (("in_rotation", in_rotation), ("owner_away", owner_away), ("full", full)):
        if value is not None:
            state[key] = value
    slots = state["full"] if state["in_rotation"] and state["owner_away"] else 0
    await _set(worker, slots)
    return slots


def _stimulus() -> str:
    return f"hecras-slots-{time.time()}"


async def _set(worker, slots: int) -> None:
    from distributed.core import Status
    from distributed.protocol.pickle import dumps
    from distributed.worker_state_machine import UnpauseEvent

    await worker.set_resources(**{RESOURCE: slots})
    if slots > 0 and worker.status == Status.running:
        # set_resources does not make the worker look at its waiting tasks again; an unpause
        # stimulus does (only sent while it runs normally, never to undo a memory pause).
        worker.handle_stimulus(UnpauseEvent(stimulus_id=_stimulus()))
    await worker.scheduler.run_function(function=dumps(place_waiting_runs), args=dumps(()), kwargs=dumps({}),
                                        wait=True)


def _is_run(ts) -> bool:
    """A plain Dask task needing a slot (the queue's runs are pinned to a worker and it moves them)."""
    return RESOURCE in (ts.resource_restrictions or {}) and not ts.worker_restrictions


def place_waiting_runs(dask_scheduler=None) -> int:
    """On the scheduler: move runs waiting on workers without slots to workers with open
    slots (fewest runs queued first, most urgent runs first), and place runs no worker could
    take. Returns how many runs were moved or placed."""
    from distributed.core import Status

    s = dask_scheduler
    queue = s.plugins.get("hecras-queue")  # the plan queue releases to open slots itself
    if queue is not None:
        queue.kick()
    open_ = [ws for ws in s.workers.values() if ws.resources.get(RESOURCE, 0) >= 1 and ws.status == Status.running]
    placed = 0
    for ws in open_:  # "no-worker" runs: the scheduler looks at them again only when a worker joins
        recs = s.bulk_schedule_unrunnable_after_adding_worker(ws)
        if recs:
            s.transitions(recs, stimulus_id=_stimulus())
            placed += len(recs)
    stealing = s.extensions.get("stealing")
    if stealing is None or not open_:
        return placed
    waiting = [(ts, ws) for ws in s.workers.values() if ws.resources.get(RESOURCE, 0) < 1
               for ts in ws.processing if _is_run(ts) and ts not in ws.executing]
    queued = {ws: sum(1 for ts in ws.processing if _is_run(ts)) for ws in open_}
    for ts, victim in sorted(waiting, key=lambda pair: pair[0].priority):
        thief = min(open_, key=queued.__getitem__)
        stealing.move_task_request(ts, victim, thief)  # the victim confirms the run has not started
        queued[thief] += 1
        placed += 1
    return placed
