"""Writing one plan's summary: write_summary vs the same arrays written with raw h5py.

    python benchmarks/bench_summary_write.py [--cells 600 250000] [--repeat 15]

For each mesh size, one fake-engine run is summarised (``summarise(..., time_series=False)``,
loaded), then in a fresh process the same in-memory dataset is written, interleaved, ``--repeat``
times each way (median):

- **h5py**: what a skilled user writes knowing the arrays: every variable and coordinate as an
  HDF5 dataset (times as int64, text as fixed-width bytes), their attributes and the plan's;
- **write_summary**: ours, a netCDF-4 file xarray opens (dimension scales, CF time and text
  encoding, coordinates attributes) plus the study's layout fingerprint;
- **to_netcdf**: ``Dataset.to_netcdf(engine="h5netcdf")``, what write_summary did before.

Goal (issue 14): write_summary at most 1.25x the h5py write.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_h5py(ds, path: Path) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        for name, v in ds.variables.items():
            a = np.asarray(v.values)
            if a.dtype.kind in "OU":
                a = a.astype("S")
            elif a.dtype.kind == "M":
                a = a.view("int64")
            d = f.create_dataset(name, data=a)
            for k, value in v.attrs.items():
                d.attrs[k] = value
        for k, value in ds.attrs.items():
            f.attrs[k] = value


def write_ours(ds, path: Path) -> None:
    from dask_hecras.summary import write_summary

    write_summary(ds, path)


def write_xarray(ds, path: Path) -> None:
    ds.to_netcdf(path, engine="h5netcdf")


def worker(pickled: str, repeat: int) -> None:
    import dask_hecras.summary  # noqa: F401  (imports outside the clock, as in a worker)

    ds = pickle.loads(Path(pickled).read_bytes())
    ways = {"h5py": write_h5py, "write_summary": write_ours, "to_netcdf": write_xarray}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for k, write in ways.items():  # once each to warm caches and imports
            write(ds, Path(tmp) / f"{k}.nc")
        for _ in range(repeat):
            for k, write in ways.items():
                target = Path(tmp) / f"{k}.nc"
                target.unlink()
                started = time.perf_counter()
                write(ds, target)
                times[k].append(time.perf_counter() - started)
        sizes = {k: (Path(tmp) / f"{k}.nc").stat().st_size for k in ways}
    print(json.dumps({k: {"seconds": statistics.median(v), "bytes": sizes[k]} for k, v in times.items()}))


def make_summary(folder: Path, cells: int) -> Path:
    from dask_hecras import summarise
    from dask_hecras.examples import make_project

    out = folder / f"summary-{cells}.pkl"
    if out.exists():
        return out
    prj = make_project(folder / f"project-{cells}", n_plans=1)
    extra = ["--cells", str(cells), "--steps", "5"] if cells != 600 else []
    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(prj.with_suffix(".p01")),
                    *extra, "--seconds", "0"], check=True, capture_output=True)
    ds = summarise(prj.with_suffix(".p01.hdf"), time_series=False).load()
    out.write_bytes(pickle.dumps(ds))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--cells", type=int, nargs="+", default=[600, 250000])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-write-"))
    print(f"median of {args.repeat} writes each, interleaved, in a fresh process per mesh")
    print(f"{'cells':>9} {'variables':>9} {'h5py':>9} {'write_summary':>14} {'ratio':>6} {'to_netcdf':>10} {'ratio':>7}")
    for cells in args.cells:
        pickled = make_summary(folder, cells)
        out = subprocess.run([sys.executable, __file__, "--worker", str(pickled), str(args.repeat)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        n = len(pickle.loads(pickled.read_bytes()).variables)
        base = r["h5py"]["seconds"]
        print(f"{cells:>9,} {n:>9} {base:>8.4f}s {r['write_summary']['seconds']:>13.4f}s "
              f"{r['write_summary']['seconds'] / base:>5.2f}x {r['to_netcdf']['seconds']:>9.4f}s "
              f"{r['to_netcdf']['seconds'] / base:>6.2f}x"
              f"   files {r['h5py']['bytes'] / 1e6:.1f} / {r['write_summary']['bytes'] / 1e6:.1f}"
              f" / {r['to_netcdf']['bytes'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
