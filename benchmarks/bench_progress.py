"""What following running plans' progress costs the scheduler (issue 17), against fair
baselines measured in the same run.

    python benchmarks/bench_progress.py [--plans 50 200 500] [--rounds 30] [--refreshes 25]

On each worker a running plan's progress is read from the engine's files and sent to the
scheduler as one small ``hecras`` event at most every ``hecras.progress.report-every`` (10 s).
For each batch size N, in one process, a real ``distributed.Scheduler`` (``LocalCluster`` with
no workers, ``processes=False``, ``preload=["dask_hecras.scheduler"]``, dashboard on):

- **Real**: the batch, submitted with :func:`dask_hecras.submit` (demo projects of up to 99
  plans, ``engine="fake"``) through the queue's ``hecras_submit`` handler, as a client does.
- **Simulated**: no worker is connected, so nothing runs. Each plan is marked released as
  ``PlanQueue._run`` marks it (state "running", step "released", attempt id, worker address;
  ``queue.attempts[attempt_id] = (batch, index)``; no task is submitted, so ``inflight`` stays
  empty), on made-up workers of 4 slots each; then each plan's ``attempt`` events (staging,
  then running: the engine started) and its progress events are fed through the entry point a
  worker's batched ``log-event`` message reaches, ``Scheduler.stream_handlers["log-event"]``
  (``Scheduler.log_worker_event`` → ``Broker.publish`` → every plugin's ``log_event``).

Measured on the scheduler's event loop (``run_on_scheduler``: nothing else runs meanwhile):

1. **Events.** ``--rounds`` rounds of N progress events (one interval's worth), against the
   floor any event costs: the same number of events through the same entry point on a topic
   no plugin handles (Dask stores it in its topic log and offers it to every plugin). Rounds
   alternate which goes first. Printed: µs per event, ratio, and the loop's time per 10-s
   interval (N events) as a fraction of the interval. The bytes of one event on the wire and
   Dask's decode of it are printed beside (both sides pay them).
2. **The page.** A Bokeh ``Document`` of ``/hecras`` built by ``dashboard.hecras_doc``; its
   1-second periodic callback (``update``, found in ``doc.session_callbacks``) is timed, plus
   serialising each change as Bokeh's server does for the browser (PATCH-DOC). Three states
   of the same batch, one document each, interleaved, median of ``--refreshes``:
   *queued* (all queued, nothing ran: the page before anything runs), *running* (all
   running, engines started, no progress report yet: the page as it was before progress
   existed, with the same states) and *progress* (all running, each with a progress report).
   Also ``snapshot(scheduler)`` and the JSON view (``snapshot`` + ``json.dumps``), and the
   ``hecras_batch`` handler a ``Batch.wait``/``dask-hecras run`` polls (every 0.5/1 s) with its
   reply serialised. Common bound: the page's 1-s period.
3. **No files.** An audit hook and a wrapped ``os.stat`` count the files opened, listed and
   stat'ed on the loop's thread while the events are fed and the page refreshes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

TOPIC = "hecras"
PROGRESS_TOPIC = "hecras-progress"  # dask_hecras.runs.PROGRESS_TOPIC: progress has a topic of its own
FLOOR_TOPIC = "bench-progress-unhandled"  # no plugin handles it: Dask's own bookkeeping only
SLOTS_PER_WORKER = 4


# --------------------------------------------------------------------------- files on the loop

class FileWatch:
    """Counts files opened, listed and stat'ed on one thread while on."""

    def __init__(self) -> None:
        self.on = False
        self.thread = None
        self.seen: list[tuple[str, str]] = []
        sys.addaudithook(self._hook)
        self._stat = os.stat

        def stat(path, *args, **kwargs):
            if self.on and threading.get_ident() == self.thread:
                self.seen.append(("os.stat", str(path)))
            return self._stat(path, *args, **kwargs)

        os.stat = stat

    def _hook(self, event: str, args) -> None:
        if self.on and threading.get_ident() == self.thread and event in ("open", "os.listdir", "os.scandir"):
            self.seen.append((event, str(args[0]) if args else ""))

    def start(self) -> None:
        self.thread, self.on = threading.get_ident(), True

    def stop(self) -> None:
        self.on = False


WATCH: FileWatch | None = None


# --------------------------------------------------------------------------- the plans

def projects(folder: Path, n: int) -> list:
    import dask_hecras
    from dask_hecras.examples import make_project

    plans, k = [], 0
    while len(plans) < n:
        count = min(99, n - len(plans))
        prj = make_project(folder / f"study{k}", n_plans=count, name=f"Study{k}")
        plans += dask_hecras.Project(prj).plans
        k += 1
    return plans


def progress_msg(attempt_id: str, k: int, rounds: int) -> dict:
    """One report as ``runs.run_attempt``'s ``on_progress`` sends it (``progress.Progress``)."""
    fraction = min(1.0, 0.05 + 0.9 * k / max(1, rounds))
    wall = 600.0 + 10.0 * k
    sim = 48.0 * fraction
    pace = wall / sim
    return {"action": "progress", "attempt_id": attempt_id, "fraction": fraction, "sim_hours": sim,
            "window_hours": 48.0, "wall_seconds": wall, "pace": pace, "left_seconds": (48.0 - sim) * pace,
            "still_seconds": 0.0, "source": "bco"}


def fields(p) -> tuple:
    return (p.state, p.step, p.attempt, p.attempt_id, p.worker, p.worker_name, p.started, p.progress, p.run_folder)


def put(p, saved: tuple) -> None:
    (p.state, p.step, p.attempt, p.attempt_id, p.worker, p.worker_name, p.started, p.progress,
     p.run_folder) = saved


# --------------------------------------------------------------------------- on the scheduler

def _page(scheduler):
    """A /hecras document, its update callback, and a collector of its changes."""
    from bokeh.document import Document
    from bokeh.server.callbacks import PeriodicCallback

    from dask_hecras.dashboard import hecras_doc

    doc = Document()
    hecras_doc(scheduler, {}, doc)
    update = [cb.callback for cb in doc.session_callbacks if isinstance(cb, PeriodicCallback)]
    assert len(update) == 1, doc.session_callbacks
    events: list = []
    doc.on_change(events.append)
    return update[0], events


def _refresh(update, events) -> tuple[float, float, int]:
    """(seconds of update, seconds of update + PATCH-DOC serialisation, bytes sent)."""
    from bokeh.protocol import Protocol

    protocol = Protocol()
    events.clear()
    t = time.perf_counter()
    update()
    t_update = time.perf_counter() - t
    sent = 0
    for e in events:  # the server makes one PATCH-DOC message per change (ServerSession._document_patched)
        msg = protocol.create("PATCH-DOC", [e])
        sent += len(msg.header_json) + len(msg.content_json) + sum(len(b.to_bytes()) for b in msg.buffers)
    return t_update, time.perf_counter() - t, sent


def _wire(msg: dict) -> tuple[int, float]:
    """Bytes of one worker's log-event message and Dask's decode of it (µs, median of 200)."""
    from distributed.protocol import dumps, loads

    frames = dumps({"op": "log-event", "topic": TOPIC, "msg": msg})
    times = []
    for _ in range(200):
        t = time.perf_counter()
        loads(frames)
        times.append(time.perf_counter() - t)
    return sum(len(f) for f in frames), statistics.median(times) * 1e6


def measure(batch_id: str, rounds: int, refreshes: int, dask_scheduler=None) -> dict:
    """Everything, on the scheduler's event loop."""
    from distributed.protocol import dumps

    from dask_hecras.dashboard import snapshot
    from dask_hecras.queue import queue_of
    from dask_hecras.runs import AttemptSpec

    s = dask_scheduler
    queue = queue_of(s)
    b = queue.batches[batch_id]
    n = len(b.plans)
    handler = s.stream_handlers["log-event"]  # what a worker's batched "log-event" message calls
    assert handler.__func__ is type(s).log_worker_event, handler
    watch = WATCH

    def worker_of(i: int) -> tuple[str, str]:
        k = i // SLOTS_PER_WORKER
        return f"tcp://10.1.{k // 200}.{k % 200 + 10}:40000", f"PC-{k:03d}"

    # queued: as the batch came in
    saved_runs = list(queue.runs)
    queued = [fields(p) for p in b.plans]
    pages = {"queued": _page(s)}

    # released as PlanQueue._run does, then the worker's attempt events
    for p in b.plans:
        p.attempt += 1
        spec = AttemptSpec(b.id, p.index, p.attempt, p.project, p.plan_id, p.project_dir, b.engine, b.timeout,
                           b.scratch)
        queue.attempts[spec.attempt_id] = (b.id, p.index)
        addr, name = worker_of(p.index)
        p.state, p.step, p.attempt_id, p.worker, p.worker_name = "running", "released", spec.attempt_id, addr, name
        p.started, p.deadline, p.progress, p.run_folder = None, None, None, ""
        queue._touch(b, p)
    queue.heap = [e for e in queue.heap if e[2] != b.id]
    watch.start()
    for phase in ("staging", "running"):
        for p in b.plans:
            msg = {"worker": p.worker, "action": "attempt", "attempt_id": p.attempt_id, "phase": phase}
            if phase == "running":
                msg["run_dir"] = f"C:/hecras-scratch/{b.id}/{p.label}"
            handler(worker=p.worker, topic=TOPIC, msg=msg)
    assert all(p.state == "running" and p.step == "running" and p.started for p in b.plans)
    watch.stop()
    running = [fields(p) for p in b.plans]
    running_runs = list(queue.runs)
    pages["running"] = _page(s)

    # events: rounds of one interval's worth (N), ours against the floor, alternating
    # a worker's capabilities and standing, reported before the progress starts (``worker_table`` reads them
    # back from Dask's topic log)
    handler(worker=worker_of(0)[0], topic=TOPIC, msg={"action": "worker", "name": worker_of(0)[1], "cores": 8})
    handler(worker=worker_of(0)[0], topic=TOPIC, msg={"action": "out of rotation", "reason": "bench"})
    ours, floor = [], []
    watch.start()
    for r in range(rounds):
        mine = [(p.worker, {"worker": p.worker, **progress_msg(p.attempt_id, r, rounds)}) for p in b.plans]
        other = [(w, dict(m)) for w, m in mine]
        for way in (("ours", "floor") if r % 2 == 0 else ("floor", "ours")):
            batch, topic, out = (mine, PROGRESS_TOPIC, ours) if way == "ours" else (other, FLOOR_TOPIC, floor)
            t = time.perf_counter()
            for w, m in batch:
                handler(worker=w, topic=topic, msg=m)
            out.append((time.perf_counter() - t) / n)
    watch.stop()
    assert all(p.progress and p.progress["at"] for p in b.plans)
    progress = [fields(p) for p in b.plans]
    pages["progress"] = _page(s)
    kept = s.get_events(TOPIC)
    maxlen = s._broker._topics[TOPIC].events.maxlen  # distributed.admin.low-level-log-length
    log_span = maxlen / (n / 10.0)  # seconds of hecras events the topic log holds at N reports per 10 s
    early = [m.get("action") for _, m in kept if m.get("action") in ("worker", "out of rotation")]

    # the page, the JSON view and the batch poll, per state, interleaved
    states = {"queued": (queued, saved_runs), "running": (running, running_runs),
              "progress": (progress, running_runs)}
    got: dict[str, dict[str, list]] = {k: {"update": [], "refresh": [], "bytes": [], "snapshot": [], "json": [],
                                           "poll": [], "poll_bytes": []} for k in states}
    watch.start()
    for r in range(refreshes):
        for name in (list(states) if r % 2 == 0 else list(states)[::-1]):
            plans_fields, runs = states[name]
            for p, f in zip(b.plans, plans_fields):
                put(p, f)
            queue.runs.clear()
            queue.runs.extend(runs)
            g = got[name]
            t_update, t_refresh, sent = _refresh(*pages[name])
            g["update"].append(t_update)
            g["refresh"].append(t_refresh)
            g["bytes"].append(sent)
            t = time.perf_counter()
            snapshot(s)
            g["snapshot"].append(time.perf_counter() - t)
            t = time.perf_counter()
            json.dumps(snapshot(s), default=str)
            g["json"].append(time.perf_counter() - t)
            t = time.perf_counter()
            reply = queue.handle_batch(b.id)
            frames = dumps({"status": "OK", "result": reply})  # the handler's reply, as Dask sends it
            g["poll"].append(time.perf_counter() - t)
            g["poll_bytes"].append(sum(len(f) for f in frames))
    watch.stop()
    files = list(watch.seen)
    watch.seen.clear()
    wire_bytes, decode_us = _wire({"worker": b.plans[0].worker, **progress_msg(b.plans[0].attempt_id, 1, rounds)})
    med = statistics.median
    return {"n": n, "ours": med(ours), "floor": med(floor), "wire_bytes": wire_bytes, "decode_us": decode_us,
            "log_max": maxlen, "log_span": log_span, "early_kept": early, "fed": rounds * n, "files": files,
            "page": {k: {m: med(v) for m, v in g.items()} for k, g in got.items()}}


# --------------------------------------------------------------------------- main

def run(n: int, plans: list, folder: Path, args) -> dict:
    from distributed import Client, LocalCluster

    from dask_hecras.batch import submit

    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"preload": ["dask_hecras.scheduler"]}) as cluster, Client(cluster) as client:
        assert cluster.scheduler.http_server is not None  # the dashboard is on
        batch = submit(client, plans[:n], engine="fake", results_dir=folder / f"results-{n}")
        out = client.run_on_scheduler(measure, batch.id, args.rounds, args.refreshes)
        batch.cancel()
    return out


def main() -> int:
    global WATCH
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plans", type=int, nargs="+", default=[50, 200, 500])
    p.add_argument("--rounds", type=int, default=30, help="rounds of N progress events (one 10-s interval each)")
    p.add_argument("--refreshes", type=int, default=25, help="page refreshes timed per state")
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dask-hecras-bench-progress-"))
    WATCH = FileWatch()
    plans = projects(folder, max(args.plans))
    print(f"Real: a distributed.Scheduler (LocalCluster, no workers, in-process, preload dask_hecras.scheduler, "
          f"dashboard on), each batch submitted with dask_hecras.submit (demo projects, engine fake). "
          f"Simulated: no worker runs anything; every plan marked released as PlanQueue._run does, on made-up "
          f"workers of {SLOTS_PER_WORKER} slots; its attempt events (staging, running) and progress events fed "
          f"through Scheduler.stream_handlers['log-event'] (a worker's log-event message). Files in {folder}\n",
          flush=True)
    rows = [run(n, plans, folder, args) for n in args.plans]

    interval = 10.0
    print(f"1. Progress events on the scheduler's loop (median of {args.rounds} rounds of N events), "
          f"against the same events on a topic no plugin handles")
    print(f"{'plans':>6} {'ours/event':>11} {'floor/event':>12} {'ratio':>6} {'loop per 10 s':>14} "
          f"{'of interval':>12} {'bytes/event':>12} {'decode':>8}")
    for r in rows:
        per = r["ours"] * r["n"]
        print(f"{r['n']:>6} {r['ours'] * 1e6:>9.1f}us {r['floor'] * 1e6:>10.1f}us {r['ours'] / r['floor']:>5.2f}x "
              f"{per * 1e3:>11.2f} ms {per / interval:>11.4%} {r['wire_bytes']:>12} {r['decode_us']:>6.1f}us")
    print("   (decode: Dask unpacking one event from the wire, paid by any event; bytes: that message alone)")

    print(f"\n2. The /hecras page's 1-s refresh on the loop (update + PATCH-DOC serialisation, median of "
          f"{args.refreshes}), the JSON view and the hecras_batch poll")
    print(f"{'plans':>6} {'state':>9} {'update':>9} {'refresh':>9} {'sent':>9} {'x queued':>9} {'x running':>10} "
          f"{'of 1 s':>7} {'snapshot':>9} {'JSON view':>10} {'batch poll':>11} {'poll sent':>10}")
    for r in rows:
        pg = r["page"]
        for name in ("queued", "running", "progress"):
            m = pg[name]
            print(f"{r['n']:>6} {name:>9} {m['update'] * 1e3:>7.1f}ms {m['refresh'] * 1e3:>7.1f}ms "
                  f"{m['bytes'] / 1e3:>7.0f}kB {m['refresh'] / pg['queued']['refresh']:>8.2f}x "
                  f"{m['refresh'] / pg['running']['refresh']:>9.2f}x {m['refresh']:>7.1%} "
                  f"{m['snapshot'] * 1e3:>7.1f}ms {m['json'] * 1e3:>8.1f}ms {m['poll'] * 1e3:>9.1f}ms "
                  f"{m['poll_bytes'] / 1e3:>8.0f}kB")
    print("   (queued: all queued, nothing ran; running: all running, no progress report yet, the page as "
          "before progress; progress: all running with a report. No worker is connected: the workers' table "
          "is empty in all three)")

    print("\n3. Files opened, listed or stat'ed on the scheduler's loop while events were fed and the page "
          "refreshed:")
    for r in rows:
        kinds: dict[str, int] = {}
        for kind, _ in r["files"]:
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"   {r['n']:>4} plans: {len(r['files'])}" + (f" ({kinds}; first: {r['files'][:3]})" if r["files"] else ""))
    print(f"\n   Dask keeps the last {rows[0]['log_max']} events of a topic (distributed.admin.low-level-log-length); "
          f"worker_table (dask-hecras workers) reads each worker's capabilities and standing back from the "
          f"'{TOPIC}' topic, so progress goes on '{PROGRESS_TOPIC}'. A capability and an "
          "'out of rotation' event sent before the rounds, still there after them: "
          + ", ".join(f"{r['early_kept'] or 'neither'} ({r['n']} plans, {r['fed']} events later)" for r in rows))

    r = rows[-1]
    pg = r["page"]
    per = r["ours"] * r["n"]
    print(f"\nSummary: {r['n']} plans reporting every 10 s cost the scheduler {per * 1e3:.2f} ms of loop per 10 s "
          f"({per / interval:.3%}; {r['ours'] * 1e6:.1f} us/event, {r['ours'] / r['floor']:.2f}x the "
          f"{r['floor'] * 1e6:.1f} us any event costs); the page's refresh {pg['progress']['refresh'] * 1e3:.1f} ms "
          f"({pg['progress']['refresh']:.1%} of its 1 s period; {pg['progress']['refresh'] / pg['running']['refresh']:.2f}x "
          f"the same plans running without progress, {pg['progress']['refresh'] / pg['queued']['refresh']:.2f}x all "
          f"queued); no file touched on the scheduler: {sum(len(x['files']) for x in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
