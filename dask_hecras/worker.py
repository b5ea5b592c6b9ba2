"""The worker side of a dask-hecras cluster: what each PC can do, and its owner policy.

Start office workers with ``dask worker ... --preload dask_hecras.worker``. The preload adds

- :class:`~dask_hecras.runs.RunFolders`, which clears what earlier worker processes of this PC
  left in the scratch folder (ending leftover engine trees, landing finished runs) and reports it
  to the queue;
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
    linux_installs: tuple[tuple[str, str], ...] = ()  # (version, folder) of HEC-RAS's Linux engine

    @property
    def engines(self) -> dict[str, list[str]]:
        """The HEC-RAS engines here and their versions, as the plan queue places plans by them."""
        return {"ras": [v for v, _ in self.installs], "linux": [v for v, _ in self.linux_installs]}

    @property
    def versions(self) -> str:
        return ", ".join([v for v, _ in self.installs] + [f"{v} (Linux)" for v, _ in self.linux_installs])

    def as_event(self) -> dict:
        """Plain types only: events travel to the scheduler as msgpack."""
        d = asdict(self)
        d["installs"] = [list(i) for i in self.installs]
        d["linux_installs"] = [list(i) for i in self.linux_installs]
        d["versions"] = self.versions
        d["engines"] = self.engines
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
                        free_scratch_bytes=free, cache_bytes=cache, owner_policy=owner,
                        linux_installs=tuple(linux_installs()))


def linux_installs() -> list[tuple[str, str]]:
    """(version, folder) of each HEC-RAS Linux engine this machine's configuration finds."""
    from .engines.linux import find_linux_installs

    return [(i.label, str(i.folder)) for i in find_linux_installs()]


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

    async def _tick(self) -> None:
        from distributed.core import Status

        if self.worker.status != Status.running or time.monotonic() - self._sent < self.interval:
            return
        self._sent = time.monotonic()
        from .staging import scratch_root

        self.last = await asyncio.to_thread(capabilities, scratch_root(worker=self.worker))
        self.worker.log_event(TOPIC, {"action": "worker", "worker": self.worker.address,
                                      "name": str(self.worker.name), **self.last.as_event()})


def report_now(dask_worker=None) -> None:
    """Have this worker report its capabilities again within a second (``client.run(report_now)``
    after its HEC-RAS settings changed): the plan queue places plans by the last report."""
    plugin = dask_worker.plugins.get(CapabilityPlugin.name) if dask_worker is not None else None
    if plugin is not None:
        plugin._sent = 0.0


async def dask_setup(worker) -> None:
    """``dask worker --preload dask_hecras.worker``: capabilities, the start-up sweep of run
    folders, and the owner policy if enabled."""
    from .runs import RunFolders

    await worker.plugin_add(CapabilityPlugin())
    await worker.plugin_add(RunFolders())
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


# --- starting an office worker ---------------------------------------------------------

class WorkerSetupError(ValueError):
    """The worker's settings cannot start a worker (no scheduler, missing certificates)."""


def worker_command(scheduler: str | None = None, *, certs: str | os.PathLike | None = None,
                   scratch: str | os.PathLike | None = None, name: str | None = None) -> list[str]:
    """The ``dask worker`` arguments of a dask-hecras worker, from arguments or ``hecras.*`` settings.

    TLS unless the address says ``tcp://``; RAS slots from ``config.ras_slots`` (one unless
    cores-per-plan says otherwise); the PC's name; the scratch folder as
    Dask's local directory; fixed ports (one firewall rule for every worker PC); no worker
    dashboard (one port less); the worker preload.
    """
    w = config.get("worker", {}) or {}
    scheduler = scheduler or w.get("scheduler")
    if not scheduler:
        raise WorkerSetupError("no scheduler address: give one, or set hecras.worker.scheduler")
    if "://" not in scheduler:
        scheduler = f"tls://{scheduler}"
    if ":" not in scheduler.split("://", 1)[1]:
        scheduler += ":8786"
    local = os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"  # per user, local disk
    scratch = Path(scratch or config.get("scratch") or Path(local) / "dask-hecras" / "scratch")
    args = [scheduler, "--name", name or w.get("name") or socket.gethostname(),
            "--nworkers", "1", "--nthreads", str(int(w.get("nthreads", 2))),
            "--resources", f"RAS={config.ras_slots()}",
            "--local-directory", str(scratch), "--preload", "dask_hecras.worker", "--no-dashboard"]
    port = int(w.get("port") or 0)
    if port > 0:
        args += ["--worker-port", str(port), "--nanny-port", str(port + 1)]
    if scheduler.startswith("tls://"):
        folder = certs or w.get("certs")
        if not folder:
            raise WorkerSetupError(f"{scheduler} needs TLS certificates: give the folder made by "
                                   "`dask-hecras certs` (--certs), or set hecras.worker.certs")
        files = {opt: Path(folder) / f for opt, f in
                 (("--tls-ca-file", "ca.pem"), ("--tls-cert", "worker.pem"), ("--tls-key", "worker-key.pem"))}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise WorkerSetupError(f"certificate files missing: {', '.join(missing)}")
        for opt, path in files.items():
            args += [opt, str(path)]
    return args


def worker_config(scheduler: str, certs: str | os.PathLike | None, *, scratch: str | os.PathLike | None = None,
                  ras_exe: str | None = None, port: int | None = 8788, owner: bool = True,
                  night: str | None = "19:00-07:00", idle_minutes: float = 15, on_return: str = "finish",
                  timeout: str = "12h") -> str:
    """The YAML settings file of one office worker (written by the Windows install script).

    It holds the run time limit too: the installed worker reads no other settings file, and
    HEC-RAS is never run without one."""
    from .config import timeout_seconds
    import yaml

    from .owner import OwnerPolicy

    OwnerPolicy(idle_minutes, 30.0, night, on_return).check()
    if not timeout_seconds(timeout):
        raise ValueError(f"a worker needs a time limit for HEC-RAS runs, such as 12h (got {timeout!r})")
    hecras: dict = {"timeout": str(timeout),
                    "worker": {"scheduler": scheduler, "certs": str(certs) if certs else None, "port": port},
                    "owner": {"enabled": owner, "night": night, "idle-minutes": idle_minutes,
                              "on-return": on_return}}
    if scratch:
        hecras["scratch"] = str(scratch)
    if ras_exe:
        hecras["ras-exe"] = str(ras_exe)
    # TLS is the gate: plain tcp only where the address says so (a trial).
    encrypted = not scheduler.startswith("tcp://")
    header = "# dask-hecras worker settings, written by `dask-hecras worker-config`.\n"
    return header + yaml.safe_dump({"hecras": hecras, "distributed": {"comm": {"require-encryption": encrypted}}},
                                   sort_keys=False, default_flow_style=False)


def load_config_file(path: str | os.PathLike) -> None:
    """Merge a settings file into ``dask.config`` (:func:`run_worker` passes it on to the worker)."""
    import dask.config
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise WorkerSetupError(f"cannot read the settings file {path}: {e}") from None
    if not isinstance(data, dict):
        raise WorkerSetupError(f"{path} is not a settings file (a YAML mapping)")
    dask.config.update(dask.config.config, data, priority="new")


def run_worker(args: list[str], *, log: str | os.PathLike, restart: bool = True,
               first_delay: float | None = None, max_delay: float = 600.0) -> int:
    """Run ``dask worker ARGS`` as a child process tree, and start it again when it ends.

    A worker ends when it loses the scheduler (a restart, a network cut) or crashes; on an
    office PC nobody is there to start it again. The first restart waits
    ``hecras.worker.restart-delay``, each further one twice as long, up to ``max_delay``.
    Stopping this process (Ctrl-C, SIGTERM, the Scheduled Task's stop) kills the whole
    tree, Ras.exe included (a Job Object on Windows). Output goes to ``log``, rotated at 20 MB.
    """
    import signal

    from dask.utils import parse_timedelta

    from .engines.runner import run_process

    if first_delay is None:
        first_delay = float(parse_timedelta(config.get("worker.restart-delay", "15s"), default="s"))
    log = Path(log)
    if threading_main() and hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the tree is killed
    import dask.config

    command = [sys.executable, "-m", "distributed.cli.dask_worker", *args]
    # The worker gets this process's settings (config files, --config, DASK_* variables).
    env = {**os.environ, "DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(dask.config.global_config)}
    delay = first_delay
    while True:
        if log.is_file() and log.stat().st_size > 20 * 2**20:
            os.replace(log, log.with_name(log.name + ".1"))
        result = run_process(command, cwd=log.parent, log=log, env=env)
        if not restart:
            return result.exit_code or 0
        if result.seconds > 10 * 60:
            delay = first_delay  # it ran a good while: start again soon
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} the Dask worker ended (exit code {result.exit_code}); "
              f"starting it again in {delay:g} s. Log: {log}", file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(max_delay, delay * 2)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
