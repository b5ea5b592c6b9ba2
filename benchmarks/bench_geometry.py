"""Mesh geometry of a large plan file: dask_hecras's readers vs a hand-written h5py read.

    python benchmarks/bench_geometry.py [--dir DIR] [--cells 250000] [--repeat 3]

Writes (once) a results file of one 2D mesh with the fake engine's size option (its geometry
laid out as HEC-RAS writes it), then, each in a fresh process (wall time and peak memory):

- **h5py read**: the arrays the readers use, read whole with h5py (cell centres, bed
  elevation, face points, faces' end points, each cell's faces and orientation, curved faces'
  inner points): the floor for any reader;
- **h5py + shapely**: that read, plus polygons as a skilled user would build them from
  ``Cells FacePoint Indexes`` with ``shapely.polygons`` (straight faces only);
- **ours rings**: ``geometry.read_meshes`` (centres, bed, face end points) plus
  ``geometry.cell_rings`` (every cell's outline as plain arrays, curved faces included);
- **ours+shapely**: the same with ``geometry.cell_polygons`` (shapely polygons);
- **summarise**: ``summarise(hdf)`` with its geometry, and the maxima computed, for memory.

Goals (issue 13): ours within 1.5x of the h5py read of the same arrays (ratios printed against
it: rings against the read, shapely polygons against the read plus shapely); summarise under 300 MB.
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

AREAS = "Geometry/2D Flow Areas"


def measure_read(path: str, polygons: bool) -> dict:
    import h5py
    import numpy as np

    started = time.perf_counter()
    total = 0
    with h5py.File(path, "r") as f:
        for i, row in enumerate(f[f"{AREAS}/Attributes"][()]):
            name, count = row["Name"].decode().strip(), int(row["Cell Count"])
            g = f[f"{AREAS}/{name}"]
            start, n = f[f"{AREAS}/Cell Info"][i]
            centres = f[f"{AREAS}/Cell Points"][start:start + n]
            bed = g["Cells Minimum Elevation"][:count]
            points = g["FacePoints Coordinate"][()]
            ab = g["Faces FacePoint Indexes"][()]
            ends = np.concatenate([points[ab[:, 0]], points[ab[:, 1]]], axis=1)
            info = g["Cells Face and Orientation Info"][:count]
            values = g["Cells Face and Orientation Values"][()]
            perimeter = (g["Faces Perimeter Info"][()], g["Faces Perimeter Values"][()])
            total += len(centres) + len(bed) + len(ends) + len(info) + len(values) + len(perimeter[0])
            if polygons:
                import shapely

                ring = g["Cells FacePoint Indexes"][:count]
                sizes = (ring >= 0).sum(axis=1)
                flat = ring[ring >= 0]
                cell = np.repeat(np.arange(count), sizes)
                polys = shapely.polygons(shapely.linearrings(points[flat], indices=cell))
                total += len(polys)
    return {"seconds": time.perf_counter() - started, "check": total}


def measure_ours(path: str, polygons: bool) -> dict:
    import h5py

    from dask_hecras import geometry, project  # noqa: F401  (project imports dask.config: not reading)

    started = time.perf_counter()
    with h5py.File(path, "r") as f:
        meshes = geometry.read_meshes(f)
    total = sum(len(m.x) + len(m.bed) + len(m.face_ends) for m in meshes)
    total += len(geometry.cell_polygons(path)) if polygons else len(geometry.cell_rings(path)[1])
    return {"seconds": time.perf_counter() - started, "check": total}


def measure_summarise(path: str) -> dict:
    from dask_hecras import summarise

    started = time.perf_counter()
    ds = summarise(path)
    check = float(ds["max_depth"].sum()) + float(ds["x"].sum()) + ds.sizes["face"]
    return {"seconds": time.perf_counter() - started, "check": check}


def worker(kind: str, path: str) -> None:
    fn = {"read": lambda p: measure_read(p, False), "read+shapely": lambda p: measure_read(p, True),
          "ours rings": lambda p: measure_ours(p, False), "ours+shapely": lambda p: measure_ours(p, True),
          "summarise": measure_summarise}[kind]
    result = fn(path)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def make_file(folder: Path, cells: int) -> Path:
    from dask_hecras.examples import make_project

    hdf = folder / "Demo.p01.hdf"
    marker = folder / "size.json"
    if hdf.exists() and marker.exists() and json.loads(marker.read_text()) == cells:
        return hdf
    prj = make_project(folder, n_plans=1)
    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(prj.with_suffix(".p01")),
                    "--cells", str(cells), "--steps", "5", "--seconds", "0"], check=True)
    marker.write_text(json.dumps(cells))
    return hdf


def run(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--cells", type=int, default=250_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-geometry-"))
    path = make_file(folder, args.cells)
    print(f"{args.cells:,} cells, file {path.stat().st_size / 1e6:.0f} MB: median of {args.repeat}, fresh process each")
    rows = {}
    for _ in range(args.repeat):  # interleaved, so a busy moment hurts every kind alike
        for kind in ("read", "ours rings", "read+shapely", "ours+shapely", "summarise"):
            rows.setdefault(kind, []).append(run(kind, path))
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in rows.items()}
    print(f"{'':14s} {'seconds':>8s} {'x h5py read':>12s} {'x read+shapely':>15s} {'peak MB':>8s}")
    for kind, results in rows.items():
        peak = max(r["peak_mb"] for r in results)
        print(f"{kind:14s} {median[kind]:8.3f} {median[kind] / median['read']:11.2f}x "
              f"{median[kind] / median['read+shapely']:14.2f}x {peak:8.0f}")


if __name__ == "__main__":
    main()
