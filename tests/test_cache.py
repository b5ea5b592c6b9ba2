"""The per-machine cache of big inputs, disk checks, and safe copy-back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import dask.config
import pytest

from dask_hecras import Project, RetryableFailure, run_plan
from dask_hecras.cache import Cache, file_sha256
from dask_hecras.staging import remove, stage


def big_file(path: Path, mib: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes((i * 7 + seed) % 251 for i in range(256)) * (4096 * mib))
    return path


def test_cache_miss_then_hit_links_read_only_inputs_and_copies_the_rest(demo, tmp_path):
    project = Project(demo)
    first, second = stage(project.plan("p01")), stage(project.plan("p02"))
    terrain = [p for p in (demo.parent / "Terrain").iterdir() if p.name.startswith("Terrain.")]
    terrain_bytes = sum(p.stat().st_size for p in terrain)
    total = sum(p.stat().st_size for p in project.plan("p01").input_files())
    assert first.bytes_copied == total and first.bytes_from_cache == 0
    assert second.bytes_from_cache == terrain_bytes  # the warm stage reads only plan files
    assert second.bytes_copied == sum(p.stat().st_size for p in project.plan("p02").input_files()) - terrain_bytes
    for staged in (first, second):
        run_terrain = staged.prj.parent / "Terrain" / "Terrain.demo.tif"
        assert run_terrain.stat().st_nlink >= 2, "terrain is a hard link to the cache blob"
        assert not os.access(run_terrain, os.W_OK) or os.geteuid() == 0  # read-only blob (root may write anyway)
        assert run_terrain.read_bytes() == (demo.parent / "Terrain" / "Terrain.demo.tif").read_bytes()
        for name in ("Demo.prj", "Demo.g01.hdf", "Demo.rasmap", staged.plan_file.name):
            assert (staged.prj.parent / name).stat().st_nlink == 1, f"{name} HEC-RAS may write: a real copy"
    assert first.prj.parent.joinpath("Terrain/Terrain.demo.tif").stat().st_ino == \
        second.prj.parent.joinpath("Terrain/Terrain.demo.tif").stat().st_ino
    # file times survive the cache (HEC-RAS compares terrain dates)
    src = demo.parent / "Terrain" / "Terrain.hdf"
    assert (second.prj.parent / "Terrain" / "Terrain.hdf").stat().st_mtime_ns == src.stat().st_mtime_ns


def test_eviction_least_recently_used_under_the_cap(tmp_path):
    cache = Cache(tmp_path / "cache", cap=10 * 2**20)
    files = [big_file(tmp_path / "src" / f"t{i}.tif", 4, seed=i) for i in range(3)]
    import json as _json

    def age(path, seconds):  # pretend the entry was last used `seconds` ago
        from dask_hecras.cache import fingerprint

        index = tmp_path / "cache" / "index" / f"{fingerprint(path)}.json"
        entry = _json.loads(index.read_text())
        entry["used"] -= seconds
        index.write_text(_json.dumps(entry))

    cache.fetch(files[0])
    cache.fetch(files[1])
    age(files[0], 300)
    age(files[1], 200)
    cache.fetch(files[0])  # t0 used again: t1 is now the least recently used
    cache.fetch(files[2])
    cache.wait()
    assert cache.size() == 12 * 2**20
    assert cache.evict() == 4 * 2**20 and cache.size() <= cache.cap
    assert cache.fetch(files[1]).hit is False  # t1 went
    assert cache.fetch(files[0]).hit is True


def test_a_blob_in_use_survives_eviction(tmp_path):
    cache = Cache(tmp_path / "cache", cap=0)
    src = big_file(tmp_path / "src" / "terrain.tif", 2)
    run_copy = tmp_path / "run" / "terrain.tif"
    run_copy.parent.mkdir()
    cache.fetch(src, run_copy)
    cache.wait()
    assert cache.evict() == 0 and cache.size() == 2 * 2**20, "linked into a run folder: kept"
    run_copy.unlink()  # the run folder goes
    assert cache.evict() == 2 * 2**20 and cache.size() == 0


def test_concurrent_staging_of_one_file_copies_it_once(tmp_path):
    src = big_file(tmp_path / "src" / "terrain.tif", 8)
    root = tmp_path / "cache"
    results, errors = [], []

    def fetch(i):
        try:
            target = tmp_path / f"run{i}" / "terrain.tif"
            target.parent.mkdir()
            results.append(Cache(root).fetch(src, target).hit)
        except Exception as e:  # pragma: no cover - shown by the assert
            errors.append(e)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
    code = ("import sys; from pathlib import Path; from dask_hecras.cache import Cache;"
            "t = Path(sys.argv[2]); t.parent.mkdir(); print(Cache(sys.argv[1]).fetch(Path(sys.argv[3]), t).hit)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(tmp_path / f"proc{i}" / "t.tif"), str(src)],
                              stdout=subprocess.PIPE, text=True) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results += [p.communicate(timeout=60)[0].strip() == "True" for p in procs]
    assert not errors and sorted(results) == [False, True, True, True, True, True], "one copy, five hits"
    Cache(root).wait()
    inodes = {p.stat().st_ino for p in tmp_path.glob("*/t*.tif") if p.parent.name != "src"}
    assert len(inodes) == 1, "every run folder links the one blob"


def test_a_cache_lock_is_never_left_held(tmp_path):
    """A copier that dies holding a file's lock (SIGKILL: nothing of ours runs) or fails inside it
    (a file in use, Windows' PermissionError) leaves the lock free for the next one at once."""
    import signal
    import time

    root = tmp_path / "cache"
    cache = Cache(root)
    code = ("import sys, time; from dask_hecras.cache import Cache; c = Cache(sys.argv[1]);"
            "l = c._Lock(c, 'fp1'); l.__enter__(); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        taken = threading.Event()
        waiter = threading.Thread(target=lambda: (cache._Lock(cache, "fp1").__enter__(), taken.set()), daemon=True)
        waiter.start()
        assert not taken.wait(1.0), "the lock excluded nobody"
        os.kill(holder.pid, signal.SIGKILL)
        assert taken.wait(10.0), "the lock of a killed holder was not let go"
    finally:
        holder.kill()
        holder.wait(timeout=30)

    with pytest.raises(PermissionError):
        with cache._Lock(cache, "fp2"):
            raise PermissionError("[WinError 32] The process cannot access the file because it is being used")
    t = time.monotonic()
    with cache._Lock(cache, "fp2"):
        assert time.monotonic() - t < 1.0


def test_run_folders_holding_read_only_cache_links_are_removed_as_on_windows(demo, tmp_path, monkeypatch):
    """Windows will not delete a read-only file, and a hard link shares the blob's read-only
    attribute: the run folder still goes, whole, the blob stays and is read-only again when it is
    next linked, and with no run folder left eviction frees it."""
    import stat as stat_

    from .fake_windows import delete_like_windows

    delete_like_windows(monkeypatch)
    project = Project(demo)
    staged = stage(project.plan("p01"))
    terrain = staged.prj.parent / "Terrain" / "Terrain.demo.tif"
    assert terrain.stat().st_nlink == 2 and not terrain.stat().st_mode & stat_.S_IWRITE
    with pytest.raises(PermissionError):
        os.unlink(terrain)  # what a plain delete meets on Windows
    assert remove(staged.run_dir) == [] and not staged.run_dir.exists()
    cache = Cache(tmp_path / "scratch" / "cache")
    blobs = [b for b in (cache.root / "blobs").iterdir() if b.stat().st_size == (demo.parent / "Terrain" /
                                                                                 "Terrain.demo.tif").stat().st_size]
    assert len(blobs) == 1 and blobs[0].stat().st_nlink == 1
    again = stage(project.plan("p02"))
    assert not (again.prj.parent / "Terrain" / "Terrain.demo.tif").stat().st_mode & stat_.S_IWRITE
    assert remove(again.run_dir) == []
    Cache(cache.root, cap=0).evict()
    assert not blobs[0].exists(), "with no run folder left, eviction frees the blob"


def test_damaged_blob_is_detected_and_copied_again(tmp_path):
    cache = Cache(tmp_path / "cache")
    src = big_file(tmp_path / "src" / "terrain.tif", 3)
    blob = cache.fetch(src).blob
    cache.wait()
    blob = next(p for p in (tmp_path / "cache" / "blobs").iterdir())
    assert blob.name == file_sha256(src), "named by its content once hashed"
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.write(b"\x00" * 16)
    again = cache.fetch(src)
    assert again.hit is False and again.blob.read_bytes() == src.read_bytes()


def test_too_little_disk_is_a_retryable_failure_naming_machine_folder_and_space(demo, results, tmp_path):
    import socket

    with dask.config.set({"hecras.disk-reserve": "1PB"}), pytest.raises(RetryableFailure) as e:
        run_plan(Project(demo).plan("p01"), results_dir=results)
    reason = e.value.result.reason
    assert socket.gethostname() in reason and str(tmp_path / "scratch") in reason and "GiB" in reason
    assert e.value.result.problem == "staging"


def test_run_records_staging_figures(demo, results):
    project = Project(demo)
    a = run_plan(project.plan("p01"), results_dir=results)
    b = run_plan(project.plan("p02"), results_dir=results)
    assert a.bytes_copied > 0 and a.bytes_from_cache == 0 and a.staging_seconds > 0
    assert b.bytes_from_cache > 0 and b.bytes_copied < a.bytes_copied
    saved = json.loads((b.folder / "result.json").read_text())
    assert saved["bytes_from_cache"] == b.bytes_from_cache


def test_a_damaged_copy_back_never_lands(demo, results, monkeypatch):
    import dask_hecras.landing as landing
    from dask_hecras import RetryableFailure

    monkeypatch.setattr(landing, "file_sha256", lambda p: os.urandom(8).hex())  # every check fails
    with dask.config.set({"hecras.landing-patience": 0}), pytest.raises(RetryableFailure, match="does not match"):
        run_plan(Project(demo).plan("p01"), results_dir=results)
    assert [p.name for p in (results / "Demo").iterdir() if not p.name.startswith(".")] == [], "no partial result"


def test_failed_run_folders_are_kept_within_a_cap(demo, results, tmp_path):
    (demo.parent / "fake-ras.json").write_text(json.dumps({p: {"seconds": 0.1, "outcome": "crash"}
                                                         for p in ("p01", "p02", "p03")}))
    kept = []
    with dask.config.set({"hecras.keep-failed-runs": 2}):
        for pid in ("p01", "p02", "p03"):
            kept.append(run_plan(Project(demo).plan(pid), results_dir=results, raise_retryable=False).scratch)
    left = sorted(p for p in (tmp_path / "scratch").iterdir() if (p / ".failed").exists())
    assert left == sorted(kept[1:]), "the oldest failed run folder went"
    assert kept[-1].is_dir() and not kept[0].exists()
    remove(kept[1])


def test_sweep_removes_run_folders_of_worker_processes_that_are_gone(demo, tmp_path):
    """A worker that died (or was restarted) leaves the folders it had staged: the next
    worker on the PC removes them; folders of a live process and failed runs kept for
    inspection stay."""
    from dask_hecras.staging import keep_failed, scratch_root, sweep

    project = Project(demo)
    live, dead, failed = (stage(project.plan(p)) for p in ("p01", "p02", "p03"))
    gone = subprocess.run([sys.executable, "-c", "import os, psutil; print(os.getpid(), psutil.Process().create_time())"],
                          capture_output=True, text=True, check=True).stdout  # a process that has ended
    for staged in (dead, failed):
        (staged.run_dir / ".staged-by").write_text(gone)
    keep_failed(failed.run_dir)
    (scratch_root() / "not-a-run-folder").mkdir()  # anything else in the scratch root is left alone
    assert sweep(scratch_root()) == 1
    assert live.run_dir.is_dir() and not dead.run_dir.exists() and failed.run_dir.is_dir()
    assert (scratch_root() / "not-a-run-folder").is_dir() and (scratch_root() / "cache").is_dir()


def test_read_only_project_files_are_staged_writable(demo):
    """HEC-RAS writes the plan, geometry HDF, flow and project files: a read-only source (a
    project from version control or a CD) must not stay read-only in the run folder."""
    import stat as stat_

    plan_file = Project(demo).plan("p01").file
    plan_file.chmod(0o444)
    staged = stage(Project(demo).plan("p01"))
    assert staged.plan_file.stat().st_mode & stat_.S_IWRITE
    assert staged.plan_file.stat().st_mtime_ns == plan_file.stat().st_mtime_ns, "file times kept"
    assert not plan_file.stat().st_mode & stat_.S_IWRITE, "the source is left as it was"
