"""The worker side of a dask-hecras cluster: what each PC can do, and its owner policy.

Start office workers with ``dask worker ... --preload dask_hecras.worker``. The preload adds

- :class:`CapabilityPlugin`, which tells the scheduler (the ``/hecras`` page and
  ``dask-hecras status --scheduler``) which HEC-RAS versions this PC has and where their
  Ras.exe is, its cores and memory, the free scratch disk and the cache size, at start and
  every ``hecras.worker.report-every``;
- :class:`~dask_hecras.owner.OwnerPlugin` when ``hecras.owner.enabled`` is true, so the
  PC takes plans only while its owner is away.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from distributed.diagnostics.plugin import WorkerPlugin

from . import __version__, config

TOPIC = "hecras"


@dataclass(frozen=True)
class Capabilities:
    """What one worker machine offers for HEC-RAS runs."""

    host: str
    platform: str
    cores: int
    memory_bytes: int
    installs: tuple[tuple[str, str], ...]  # (HEC-RAS version, Ras.exe path), oldest first
    scratch: str
    free_scratch_bytes: int | None
    cache_bytes: int | None
    owner_policy: str  # "off", or the rule applied
    dask_hecras: str = __version__

    @property
    def versions(self) -> str:
        return ", ".join(v for v, _ in self.installs)

    def as_event(self) -> dict:
        """Plain types only: events travel to the scheduler as msgpack."""
        d = asdict(self)
        d["installs"] = [list(i) for i in self.installs]
        d["versions"] = self.versions
        return d


def capabilities(scratch: str | os.PathLike | None = None) -> Capabilities:
    """Read this machine's capabilities; ``scratch`` is the run-folder root (see ``staging``)."""
    from .engines.ras import find_installs
    from .staging import machine_cache, scratch_root

    root = scratch_root(scratch)
    installs = [(i.label, str(i.exe)) for i in find_installs()]
    configured = config.get("ras-exe")
    if configured:  # hecras.ras-exe overrides discovery: it is what runs
        exe = Path(configured)
        installs = [(exe.parent.name if exe.is_file() else "missing", str(exe))]
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        free = None
    try:
        cache = machine_cache(root).size()
    except OSError:
        cache = None
    owner = "off"
    if config.get("owner.enabled"):
        from .owner import OwnerPolicy

        owner = OwnerPolicy.from_config().describe()
    return Capabilities(host=socket.gethostname(), platform=sys.platform, cores=psutil.cpu_count() or 1,
                        memory_bytes=psutil.virtual_memory().total, installs=tuple(installs), scratch=str(root),
                        free_scratch_bytes=free, cache_bytes=cache, owner_policy=owner)


class CapabilityPlugin(WorkerPlugin):
    """Report :func:`capabilities` to the scheduler as a ``hecras`` event, again every
    ``interval`` seconds (free disk and cache size change as plans run)."""

    name = "hecras-capabilities"

    def __init__(self, interval: float | None = None):
        from dask.utils import parse_timedelta

        every = interval if interval is not None else config.get("worker.report-every", "60s")
        self.interval = float(parse_timedelta(every, default="s"))
        self.last: Capabilities | None = None
        self._sent = 0.0

    def setup(self, worker) -> None:
        from tornado.ioloop import PeriodicCallback

        self.worker = worker
        self._pc = PeriodicCallback(self._tick, 1000)  # the first report waits for the scheduler link
        self._pc.start()

    def teardown(self, worker) -> None:
        self._pc.stop()

    def _scratch(self) -> Path:
        return Path(config.get("scratch") or Path(self.worker.local_directory) / "hecras")

    async def _tick(self) -> None:
        from distributed.core import Status

        if self.worker.status != Status.running or time.monotonic() - self._sent < self.interval:
            return
        self._sent = time.monotonic()
        self.last = await asyncio.to_thread(capabilities, self._scratch())
        self.worker.log_event(TOPIC, {"action": "worker", "worker": self.worker.address,
                                      "name": str(self.worker.name), **self.last.as_event()})


async def dask_setup(worker) -> None:
    """``dask worker --preload dask_hecras.worker``: capabilities, and the owner policy if enabled."""
    await worker.plugin_add(CapabilityPlugin())
    if config.get("owner.enabled"):
        from .owner import OwnerPlugin

        await worker.plugin_add(OwnerPlugin())


def worker_table(client) -> list[dict]:
    """One row per worker of ``client``'s cluster: slots and the last capabilities it reported."""
    reported: dict[str, dict] = {}  # worker address → its last message of each kind
    owner: dict[str, dict] = {}
    standing: dict[str, str] = {}
    for _, msg in client.get_events(TOPIC):
        if not isinstance(msg, dict):
            continue
        addr, action = msg.get("worker", ""), msg.get("action")
        if action == "worker":
            reported[addr] = msg
        elif action == "owner":
            owner[addr] = msg
        elif action in ("out of rotation", "draining", "in rotation"):
            standing[addr] = action
    rows = []
    for addr, info in sorted(client.scheduler_info(n_workers=-1)["workers"].items()):
        cap = reported.get(addr, {})
        last = owner.get(addr, {})
        rows.append({"worker": addr, "name": str(info.get("name", "")),
                     "slots": (info.get("resources") or {}).get("RAS", 0),
                     "cores": cap.get("cores"), "versions": cap.get("versions", ""),
                     "installs": cap.get("installs", []), "free_scratch_bytes": cap.get("free_scratch_bytes"),
                     "cache_bytes": cap.get("cache_bytes"), "owner_policy": cap.get("owner_policy", ""),
                     "owner": f"{last['decision']}: {last.get('reason', '')}" if last.get("decision") else "",
                     "standing": standing.get(addr, "in rotation")})
    return rows
