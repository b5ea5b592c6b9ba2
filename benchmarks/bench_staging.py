"""Staging a plan cold (empty cache) and warm (terrain cached), against shutil.copytree.

    python benchmarks/bench_staging.py [--terrain-mb 1000] [--repeat 3]

A demo project with about 1 GB of terrain. For each repeat, with a fresh cache:
``shutil.copytree`` of the plan's input files (the baseline), then ``stage`` of plan p01
(cold: every file read from the project, terrain copied into the cache) and of plan
p02 (warm: terrain linked from the cache, only plan-specific files copied).
Goals (issue #6): the warm stage copies only plan-specific files and takes under 2% of
the cold time; the cold stage's throughput is at least 0.9x copytree's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--terrain-mb", type=float, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()

    import dask_hecras
    from dask_hecras.cache import Cache
    from dask_hecras.examples import make_project
    from dask_hecras.staging import remove, stage

    folder = args.dir or Path(tempfile.mkdtemp(prefix="dask-hecras-bench-stage-"))
    prj = folder / "project" / "Demo.prj"
    if not prj.exists():
        make_project(prj.parent, n_plans=2, terrain_mb=args.terrain_mb)
    project = dask_hecras.Project(prj)
    p01, p02 = project.plans
    files = p01.input_files()
    total = sum(f.stat().st_size for f in files)
    print(f"plan p01: {len(files)} files, {total / 2**20:.0f} MiB; folder {folder}")
    for f in files:  # read once so every way starts from the page cache
        with open(f, "rb") as fh:
            while fh.read(64 << 20):
                pass

    rows = []
    for i in range(args.repeat):
        base = folder / f"copytree-{i}"
        src_tree = folder / "inputs"
        if not src_tree.exists():  # the plan's inputs as one tree, for copytree
            for f in files:
                dst = src_tree / f.relative_to(prj.parent)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
        scratch = folder / f"scratch-{i}"
        cache = Cache(scratch / "cache", cap="100GB")

        def timed_copytree() -> float:
            os.sync()  # start each measurement with no dirty pages pending
            t = time.perf_counter()
            shutil.copytree(src_tree, base)
            return time.perf_counter() - t

        def timed_cold():
            os.sync()
            t = time.perf_counter()
            staged = stage(p01, scratch, cache=cache)
            return staged, time.perf_counter() - t

        if i % 2 == 0:  # alternate the order, so neither always goes first
            copytree_s = timed_copytree()
            cold, cold_s = timed_cold()
        else:
            cold, cold_s = timed_cold()
            copytree_s = timed_copytree()
        shutil.rmtree(base)
        cache.wait()  # the background SHA-256 (it overlaps the engine run in real use)
        t = time.perf_counter()
        warm = stage(p02, scratch, cache=cache)
        warm_s = time.perf_counter() - t
        rows.append((copytree_s, cold_s, cold.bytes_copied, warm_s, warm.bytes_copied, warm.bytes_from_cache))
        remove(cold.run_dir)
        remove(warm.run_dir)
        shutil.rmtree(scratch)

    copytree_s = statistics.median(r[0] for r in rows)
    cold_s = statistics.median(r[1] for r in rows)
    warm_s = statistics.median(r[3] for r in rows)
    _, _, cold_bytes, _, warm_bytes, warm_cached = rows[-1]
    for i, r in enumerate(rows):
        print(f"  repeat {i}: copytree {r[0]:.3f} s, cold {r[1]:.3f} s, warm {r[3]:.4f} s")
    mib = 2**20
    print(f"\n{'':<10} {'seconds':>8} {'copied MiB':>11} {'from cache MiB':>15} {'MiB/s':>8}")
    print(f"{'copytree':<10} {copytree_s:>8.3f} {total / mib:>11.1f} {0:>15.1f} {total / mib / copytree_s:>8.0f}")
    print(f"{'cold':<10} {cold_s:>8.3f} {cold_bytes / mib:>11.1f} {0:>15.1f} {cold_bytes / mib / cold_s:>8.0f}")
    print(f"{'warm':<10} {warm_s:>8.3f} {warm_bytes / mib:>11.1f} {warm_cached / mib:>15.1f}")
    print(f"\nwarm / cold time: {warm_s / cold_s:.2%} (goal < 2%)")
    print(f"cold throughput / copytree: {(cold_bytes / cold_s) / (total / copytree_s):.2f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()
