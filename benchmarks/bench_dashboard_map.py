"""What the HEC-RAS page's map costs the scheduler's event loop.

    python benchmarks/bench_dashboard_map.py [--cells 600 50000 250000] [--plans 500]

The map reads landed results in a thread; on the event loop it only hands the read data to
Bokeh, which turns the change into a message for the browser. For each mesh size (fake-engine
plans landed with ``run_plan``), measured in this process, median of 5:

- **read (thread)**: ``read_depth`` of one plan, and an ``Envelope`` folding one more plan in;
- **on the loop**: giving a plan's map to the page (``_put``) plus serialising the change as
  Bokeh's server does for the browser (PATCH-DOC); then the same for an envelope update, which
  sends only the new values;
- **per refresh**: ``PlanMap.landed`` with ``--plans`` landed plans and nothing new: what every
  1-second refresh of the page costs once the map is drawn.

Nothing here runs per scheduler event: the map changes when a plan is picked or one lands.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def median_time(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def landed_plans(folder: Path, cells: int) -> list[tuple[str, str]]:
    import subprocess

    from dask_hecras import Project, run_plan
    from dask_hecras.examples import make_project

    prj = make_project(folder / f"project-{cells}", n_plans=2)
    if cells != 600:  # the fake engine's size option, for both plans
        for k in (1, 2):
            subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj),
                            str(prj.with_suffix(f".p0{k}")), "--cells", str(cells), "--steps", "3",
                            "--seconds", "0"], check=True, capture_output=True)
    out = []
    for plan in Project(prj).plans:
        r = run_plan(plan, engine="fake", results_dir=folder / f"results-{cells}") if cells == 600 else None
        if r is None:  # land the sized results by hand, as landing lays them out
            from dask_hecras import summarise
            from dask_hecras.summary import write_summary

            target = folder / f"results-{cells}" / "Demo" / plan.id
            target.mkdir(parents=True)
            hdf = prj.with_suffix(f".{plan.id}.hdf")
            hdf.rename(target / hdf.name)
            write_summary(summarise(target / hdf.name, time_series=False), target / "summary.nc")
            out.append((str(target), plan.id))
        else:
            out.append((str(r.summary.parent), plan.id))
    return out


def patch_cost(doc, change) -> float:
    """Seconds to make the change and serialise it as the server's PATCH-DOC message."""
    from bokeh.protocol import Protocol

    events = []
    doc.on_change(lambda e: events.append(e))
    started = time.perf_counter()
    change()
    msg = Protocol().create("PATCH-DOC", events)
    bytes_out = len(msg.header_json) + len(msg.content_json) + sum(len(b.to_bytes()) for b in msg.buffers)
    seconds = time.perf_counter() - started
    doc.callbacks._change_callbacks.clear()
    return seconds, bytes_out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, nargs="+", default=[600, 50000, 250000])
    ap.add_argument("--plans", type=int, default=500)
    args = ap.parse_args()
    from bokeh.document import Document

    from dask_hecras.dashboard_map import Envelope, PlanMap, read_depth

    folder = Path(tempfile.mkdtemp(prefix="bench-map-"))
    print(f"{'cells':>8} {'read':>8} {'fold':>8} {'map on loop':>12} {'sent':>8} {'envelope on loop':>17} {'sent':>8}")
    for cells in args.cells:
        plans = landed_plans(folder, cells)
        read = median_time(lambda: read_depth(plans[0][0]))
        folds = []
        for _ in range(3):
            e = Envelope(*plans[0])
            started = time.perf_counter()
            e.fold(plans)  # the second plan read and folded in
            folds.append(time.perf_counter() - started)
        fold = statistics.median(folds)
        doc = Document()
        m = PlanMap(doc)
        doc.add_root(m.figure)
        data = read_depth(plans[0][0])
        put = []
        for _ in range(5):
            put.append(patch_cost(doc, lambda: m._put(data, data["value"], np.zeros(len(data["value"]), "int32"), ["p01"])))
        m.mode.active = 1
        envelope = Envelope(*plans[0])
        m._draw_envelope(envelope)  # the first drawing sends the mesh; later ones only values
        envelope.fold(plans)
        m.reading = True  # (no new read from the refresh below)
        again = [patch_cost(doc, lambda: m._draw_envelope(envelope)) for _ in range(5)]
        print(f"{cells:>8,} {read:>7.3f}s {fold:>7.3f}s {statistics.median(p[0] for p in put):>11.3f}s "
              f"{put[0][1] / 1e6:>6.1f}MB {statistics.median(p[0] for p in again):>16.3f}s {again[0][1] / 1e6:>6.1f}MB",
              flush=True)
    many = [(f"/nowhere/{k}", f"p{k}") for k in range(args.plans)]
    m = PlanMap(Document())
    m.mode.active = 1
    m.envelope = Envelope.__new__(Envelope)
    m.envelope.folded = {f for f, _ in many}
    m.reading = False
    per_tick = median_time(lambda: m.landed(many), 20)
    print(f"per refresh with {args.plans} landed plans and none new: {per_tick * 1e6:.0f} us on the loop")


if __name__ == "__main__":
    main()
