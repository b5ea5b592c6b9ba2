"""A per-machine cache of big read-only inputs (terrain, DSS), so each is copied once.

Layout under ``hecras.cache`` (default ``<scratch>/cache``)::

    index/<fingerprint>.json   fingerprint of a source file (path, size, mtime) → its blob
    blobs/<sha256>             the content, named by its SHA-256 once that is known
    blobs/fp-<fingerprint>     the content before its SHA-256 is known
    locks/<fingerprint>.lock   one copier per file, across the worker processes of a machine

A file is found by a cheap fingerprint; its full SHA-256 is computed once, in the
background after the copy (so a cold copy costs no more than a plain copy), and names
the blob from then on: identical files share one blob. Every hit checks the blob's size
and a hash of its first and last MiB; a mismatch drops the entry and copies again.
Blobs are hard-linked into run folders (copied where links are impossible) and are
read-only: only files HEC-RAS never writes come from here. A blob linked into a run
folder has more than one link and is never evicted; the others go least recently used
first (by the last use recorded in the index; blob times stay the source's, which
HEC-RAS compares) when the cache is over ``hecras.cache-size``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import config

SAMPLE = 1 << 20


def parse_bytes(value) -> int:
    from dask.utils import parse_bytes as _parse

    return int(value) if isinstance(value, (int, float)) else int(_parse(str(value)))


def fingerprint(path: Path) -> str:
    st = path.stat()
    key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def sample_hash(path: Path, size: int | None = None) -> str:
    """SHA-256 of the first and last MiB: catches a truncated or damaged blob cheaply."""
    size = path.stat().st_size if size is None else size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE))
        if size > SAMPLE:
            f.seek(max(SAMPLE, size - SAMPLE))
            h.update(f.read(SAMPLE))
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)  # releases the GIL for big blocks
    return h.hexdigest()


@dataclass(frozen=True)
class Fetched:
    blob: Path
    hit: bool
    size: int


class Cache:
    def __init__(self, root: str | os.PathLike, cap: int | str | None = None):
        self.root = Path(root)
        self.cap = parse_bytes(cap if cap is not None else config.get("cache-size", "20GB"))
        for sub in ("index", "blobs", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._hashers: list[threading.Thread] = []

    # --- locking ----------------------------------------------------------------------

    class _Lock:
        """An exclusive lock on one fingerprint, across threads and processes: an OS file lock
        (``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows), which the OS lets go
        when its holder dies, so there is nothing stale to guess at. The lock file stays; a
        lock file another program holds open (Windows: antivirus) only delays the next taker."""

        def __init__(self, cache: "Cache", fp: str):
            from filelock import FileLock

            self.lock = FileLock(cache.root / "locks" / f"{fp}.lock", thread_local=False)

        def __enter__(self):
            self.lock.acquire(poll_interval=0.02)
            return self

        def __exit__(self, *exc):
            self.lock.release()

    # --- entries ----------------------------------------------------------------------

    def _index(self, fp: str) -> Path:
        return self.root / "index" / f"{fp}.json"

    def _read(self, fp: str) -> dict | None:
        try:
            return json.loads(self._index(fp).read_text())
        except (OSError, ValueError):
            return None

    def _write(self, fp: str, entry: dict) -> None:
        tmp = self.root / "index" / f".{fp}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self._index(fp))

    def fetch(self, source: Path, target: Path | None = None) -> Fetched:
        """The cache's blob for ``source`` (copied in on a miss), linked to ``target`` if given.

        The link is made under the entry's lock: the background hashing renames blobs.
        A blob that vanishes anyway (another process evicting, a crashed hasher) is copied again.
        """
        try:
            return self._fetch(source, target)
        except FileNotFoundError:
            if not source.exists():
                raise
            return self._fetch(source, target)

    def _fetch(self, source: Path, target: Path | None) -> Fetched:
        fp = fingerprint(source)
        with self._Lock(self, fp):
            entry = self._read(fp)
            if entry is not None:
                blob = self.root / "blobs" / entry["blob"]
                try:
                    if blob.stat().st_size == entry["size"] and sample_hash(blob, entry["size"]) == entry["sample"]:
                        if time.time() - entry.get("used", 0.0) > 60:  # least recently used goes first;
                            entry["used"] = time.time()  # a minute's precision spares a write per hit
                            self._write(fp, entry)
                        if target is not None:
                            try:
                                link_or_copy(blob, target)
                            except FileNotFoundError:
                                self._index(fp).unlink(missing_ok=True)
                                raise
                        return Fetched(blob, True, entry["size"])
                except OSError:
                    pass
                self._drop(fp, entry)  # damaged or gone: copy again
            tmp = self.root / "blobs" / f".tmp-{uuid.uuid4().hex}"
            try:
                shutil.copyfile(source, tmp)  # the kernel's fastest copy; hashing follows in the background
                shutil.copystat(source, tmp)  # file times too: HEC-RAS compares terrain dates
                size = tmp.stat().st_size
                entry = {"blob": f"fp-{fp}", "size": size, "sample": sample_hash(tmp, size), "sha256": None,
                         "source": str(source), "used": time.time()}
                os.chmod(tmp, stat.S_IREAD | stat.S_IRGRP | stat.S_IROTH)
                os.replace(tmp, self.root / "blobs" / entry["blob"])
            finally:
                tmp.unlink(missing_ok=True)
            self._write(fp, entry)
            if target is not None:
                link_or_copy(self.root / "blobs" / entry["blob"], target)
        t = threading.Thread(target=self._name_by_content, args=(fp,), daemon=True)
        t.start()
        self._hashers.append(t)
        return Fetched(self.root / "blobs" / entry["blob"], False, size)

    def _name_by_content(self, fp: str) -> None:
        """Compute the blob's SHA-256 once and rename it to it (sharing a blob with equal content)."""
        entry = self._read(fp)
        if entry is None or entry.get("sha256"):
            return
        blob = self.root / "blobs" / entry["blob"]
        try:
            digest = file_sha256(blob)
        except OSError:
            return
        with self._Lock(self, fp):
            current = self._read(fp)
            if current is None or current["blob"] != entry["blob"]:
                return
            target = self.root / "blobs" / digest
            try:
                if target.exists():
                    if not _remove(blob):  # same content already cached: share it
                        return
                else:
                    os.replace(blob, target)
            except OSError:
                return
            current.update(blob=digest, sha256=digest)
            self._write(fp, current)

    def wait(self) -> None:
        """Until background hashing is done (tests, benchmarks)."""
        for t in self._hashers:
            t.join()
        self._hashers.clear()

    def _drop(self, fp: str, entry: dict) -> None:
        self._index(fp).unlink(missing_ok=True)
        blob = self.root / "blobs" / entry["blob"]
        if blob.exists() and not self._in_use(blob) and not self._shared(entry["blob"], fp):
            _remove(blob)

    def _shared(self, blob_name: str, fp: str) -> bool:
        for p in (self.root / "index").glob("*.json"):
            if p.stem != fp:
                try:
                    if json.loads(p.read_text()).get("blob") == blob_name:
                        return True
                except (OSError, ValueError):
                    pass
        return False

    @staticmethod
    def _in_use(blob: Path) -> bool:
        try:
            return blob.stat().st_nlink > 1  # hard-linked into a run folder
        except OSError:
            return False

    # --- size -------------------------------------------------------------------------

    def _blobs(self) -> dict[Path, int]:
        """Blob → size. Blobs are renamed by the background hashing: one may vanish while listed."""
        out = {}
        for p in (self.root / "blobs").iterdir():
            if not p.name.startswith("."):
                try:
                    out[p] = p.stat().st_size
                except FileNotFoundError:
                    pass
        return out

    def size(self) -> int:
        return sum(self._blobs().values())

    def evict(self) -> int:
        """Remove least recently used blobs not in use until the cache is under its cap."""
        sizes = self._blobs()
        blobs = list(sizes)
        total = sum(sizes.values())
        freed = 0
        if total <= self.cap:
            return 0
        by_blob: dict[str, list[Path]] = {}
        used: dict[str, float] = {}
        for p in (self.root / "index").glob("*.json"):
            try:
                entry = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            by_blob.setdefault(entry["blob"], []).append(p)
            used[entry["blob"]] = max(used.get(entry["blob"], 0.0), float(entry.get("used", 0.0)))
        for blob in sorted(blobs, key=lambda p: used.get(p.name, 0.0)):
            if total <= self.cap:
                break
            if self._in_use(blob) or not blob.exists():
                continue
            size = sizes[blob]
            for index in by_blob.get(blob.name, []):
                index.unlink(missing_ok=True)
            if _remove(blob):
                total -= size
                freed += size
        return freed


def _remove(path: Path) -> bool:
    try:
        os.chmod(path, stat.S_IWRITE | stat.S_IREAD)
        path.unlink()
        return True
    except OSError:  # e.g. open by HEC-RAS on Windows: in use after all
        return False


def link_or_copy(blob: Path, target: Path) -> bool:
    """Hard-link ``blob`` to ``target``; copy where links are impossible. True if linked.

    The blob is made read-only first: on Windows, removing a run folder clears the attribute of
    the links it held, which is the blob's own."""
    try:
        os.chmod(blob, stat.S_IREAD | stat.S_IRGRP | stat.S_IROTH)
        os.link(blob, target)
        return True
    except OSError:
        shutil.copyfile(blob, target)
        return False
