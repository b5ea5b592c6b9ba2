"""Time-series maxima of a large plan file: dask_hecras.summarise vs a plain h5py read.

    python benchmarks/bench_timeseries.py [--dir DIR] [--cells 250000] [--steps 500] [--repeat 3]

Writes (once) a results file with the fake engine's size option, then computes the
maximum over time of every real cell's water surface and every face's velocity,
(a) with a hand-written h5py loop over blocks of whole chunks, (b) with
``summarise(hdf)[...].max("time")`` (lazy dask arrays). Each measurement runs in a
fresh process that reports its wall time and peak resident memory. Two files of the
same mesh are measured, one with a fifth of the time steps, to show memory does
not grow with the file. The default (250,000 cells, 500 steps) writes about 1.5 GB.
Goals (issue #3): dask/h5py time at most 1.25x; peak memory under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK_BYTES = 32 * 2**20


def measure_h5py(path: str) -> dict:
    import h5py
    import numpy as np

    started = time.perf_counter()
    total = 0.0
    base = "Results/Unsteady/Output/Output Blocks/Base Output/Unsteady Time Series/2D Flow Areas"
    with h5py.File(path, "r") as f:
        for row in f["Geometry/2D Flow Areas/Attributes"][()]:
            name, count = row["Name"].decode().strip(), int(row["Cell Count"])
            for var, width in (("Water Surface", count), ("Face Velocity", None)):
                d = f[f"{base}/{name}/{var}"]
                width = width or d.shape[1]
                step = max(d.chunks[0], BLOCK_BYTES // (4 * d.shape[1]) // d.chunks[0] * d.chunks[0])
                peak = None
                for lo in range(0, d.shape[0], step):
                    block = d[lo:lo + step, :width].max(axis=0)
                    peak = block if peak is None else np.maximum(peak, block)
                total += float(peak.astype("float64").sum())
    return {"seconds": time.perf_counter() - started, "check": total}


def measure_dask(path: str) -> dict:
    import dask
    import xarray as xr

    from dask_hecras import summarise

    started = time.perf_counter()
    ds = summarise(path)
    maxima = xr.Dataset({"ws": ds["water_surface"].max("time"), "fv": ds["face_velocity"].max("time")})
    with dask.config.set(scheduler="threads"):
        maxima = maxima.compute()
    total = float(maxima["ws"].astype("float64").sum()) + float(maxima["fv"].astype("float64").sum())
    return {"seconds": time.perf_counter() - started, "check": total}


def worker(kind: str, path: str) -> None:
    result = (measure_h5py if kind == "h5py" else measure_dask)(path)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result))


def make_file(folder: Path, cells: int, steps: int) -> Path:
    from dask_hecras.examples import make_project

    hdf = folder / "Demo.p01.hdf"
    marker = folder / "size.json"
    if hdf.exists() and marker.exists() and json.loads(marker.read_text()) == [cells, steps]:
        return hdf
    prj = make_project(folder, n_plans=1)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(prj.with_suffix(".p01")),
                    "--cells", str(cells), "--steps", str(steps), "--seconds", "0"], check=True,
                   stdout=subprocess.DEVNULL)
    marker.write_text(json.dumps([cells, steps]))
    print(f"  wrote {hdf} ({hdf.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    return hdf


def run(kind: str, hdf: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(hdf)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "dask-hecras-bench")
    p.add_argument("--cells", type=int, default=250_000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(*args.worker)

    rows = []
    for cells, steps in ((args.cells, args.steps // 5), (args.cells, args.steps)):
        folder = args.dir / f"cells-{cells}-steps-{steps}"
        hdf = make_file(folder, cells, steps)
        size = hdf.stat().st_size / 1e9
        with open(hdf, "rb") as fh:  # warm the page cache so neither side pays the first read
            while fh.read(64 * 2**20):
                pass
        runs = {"h5py": [], "dask": []}
        for _ in range(args.repeat):
            for kind in ("h5py", "dask"):  # alternate, so drift hits both
                runs[kind].append(run(kind, hdf))
        checks = {r["check"] for rs in runs.values() for r in rs}
        assert len({round(c, 3) for c in checks}) == 1, f"results differ: {checks}"
        h, d = (statistics.median(r["seconds"] for r in runs[k]) for k in ("h5py", "dask"))
        hm, dm = (max(r["peak_mb"] for r in runs[k]) for k in ("h5py", "dask"))
        rows.append((cells, steps, size, h, d, d / h, hm, dm))

    print(f"\n{'cells':>9} {'steps':>5} {'file GB':>7} {'h5py s':>7} {'dask s':>7} {'ratio':>6} "
          f"{'h5py MB':>8} {'dask MB':>8}")
    for cells, steps, size, h, d, ratio, hm, dm in rows:
        print(f"{cells:>9} {steps:>5} {size:>7.2f} {h:>7.2f} {d:>7.2f} {ratio:>5.2f}x {hm:>8.0f} {dm:>8.0f}")
    print("goal: ratio <= 1.25x, dask peak memory < 300 MB at every size")


if __name__ == "__main__":
    main()
