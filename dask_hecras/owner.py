"""Colleagues come first: a worker on an office PC takes plans only while its owner is away.

Like HTCondor on desktops: the owner counts as away when keyboard and mouse have been idle
for ``hecras.owner.idle-minutes`` (Windows ``GetLastInputInfo``) and other programs use less
than ``hecras.owner.cpu-percent`` of the CPU, or inside the night window
``hecras.owner.night`` ("19:00-07:00"). When the owner comes back during a run,
``hecras.owner.on-return`` says what happens to it: ``finish`` (let it run), ``suspend``
(pause Ras.exe's process tree and resume it when the owner leaves) or ``requeue`` (stop it;
the plan runs again elsewhere).

:class:`OwnerPolicy` is the decision, a pure function of its inputs; :class:`OwnerPlugin` is
the worker plugin that applies it every few seconds and logs each change as a ``hecras``
event. The idle-time and CPU sources can be injected (tests, other platforms).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from datetime import datetime, time as dtime
from typing import Callable

import psutil
from distributed.diagnostics.plugin import WorkerPlugin

from . import config
from .slots import update_slots

# Engine processes running on this worker: task key → root pid (registered by the run task).
RUNNING: dict[str, int] = {}
# Runs to stop and put back in the queue (read by the run task's cancel check).
REQUEUE: set[str] = set()
_lock = threading.Lock()


def windows_idle_seconds(windll=None) -> float | None:
    """Seconds since the last keyboard or mouse input in this session (GetLastInputInfo).

    Both tick counts are 32-bit milliseconds since boot (``DWORD``): they wrap after 49.7 days
    (and Fast Startup does not reset them), so the difference is taken modulo 2**32. Read as
    signed ints, as ctypes does by default, the idle time went negative after 24.9 days and the
    owner always looked active.
    """
    import ctypes

    class LASTINPUTINFO(ctypes.Structure):
        _fields_ = [("cbSize", ctypes.c_uint32), ("dwTime", ctypes.c_uint32)]  # UINT, DWORD

    windll = windll or ctypes.windll
    get_last_input, get_tick_count = windll.user32.GetLastInputInfo, windll.kernel32.GetTickCount
    get_last_input.argtypes, get_last_input.restype = [ctypes.POINTER(LASTINPUTINFO)], ctypes.c_int  # BOOL
    get_tick_count.argtypes, get_tick_count.restype = [], ctypes.c_uint32  # DWORD
    info = LASTINPUTINFO()
    info.cbSize = ctypes.sizeof(info)
    if not get_last_input(ctypes.byref(info)):
        return None
    return ((get_tick_count() - info.dwTime) & 0xFFFFFFFF) / 1000.0


def default_idle_seconds() -> float | None:
    """Idle time of the interactive user; ``None`` where it cannot be read (servers: no owner)."""
    return windows_idle_seconds() if sys.platform == "win32" else None


class OtherCpu:
    """CPU used by programs other than our engines since the last call, in percent of the machine.

    psutil measures a process's CPU between two calls on the same ``Process`` object, so
    the engines' processes are kept from one call to the next: a new object reads 0, and
    HEC-RAS's own load would count as the owner's.
    """

    def __init__(self) -> None:
        self._seen: dict[int, psutil.Process] = {}
        self.ours = 0.0  # our engines' share of the last reading

    def __call__(self) -> float:
        total = psutil.cpu_percent(interval=None)
        seen: dict[int, psutil.Process] = {}
        ours = 0.0
        for pid in list(RUNNING.values()):
            for p in _tree(pid):
                p = self._seen.get(p.pid, p)
                try:
                    ours += p.cpu_percent(interval=None)
                except psutil.Error:
                    continue
                seen[p.pid] = p
        self._seen = seen
        self.ours = ours / max(1, psutil.cpu_count() or 1)
        return max(0.0, total - self.ours)


def _in_window(window: str | None, now: datetime) -> bool:
    if not window:
        return False
    start_s, end_s = (part.strip() for part in window.split("-"))
    start, end = dtime.fromisoformat(start_s), dtime.fromisoformat(end_s)
    t = now.time()
    return start <= t < end if start <= end else (t >= start or t < end)


@dataclass(frozen=True)
class Decision:
    may_start: bool  # the worker may start a new plan
    action: str  # for runs in progress: "run", "finish", "suspend", "requeue"
    reason: str


@dataclass(frozen=True)
class OwnerPolicy:
    idle_minutes: float = 15.0
    cpu_percent: float = 30.0
    night: str | None = "19:00-07:00"
    on_return: str = "finish"

    @classmethod
    def from_config(cls) -> "OwnerPolicy":
        c = config.get("owner", {}) or {}
        return cls(float(c.get("idle-minutes", 15)), float(c.get("cpu-percent", 30)), c.get("night") or None,
                   str(c.get("on-return", "finish"))).check()

    def check(self) -> "OwnerPolicy":
        """Refuse settings the policy cannot apply, naming the setting."""
        if self.on_return not in ("finish", "suspend", "requeue"):
            raise ValueError(f"hecras.owner.on-return must be finish, suspend or requeue, not {self.on_return!r}")
        if self.night:
            try:
                _in_window(self.night, datetime.now())
            except ValueError:
                raise ValueError(f"hecras.owner.night must look like 19:00-07:00, not {self.night!r}") from None
        return self

    def describe(self) -> str:
        night = f", or {self.night}" if self.night else ""
        return (f"away {self.idle_minutes:g} min and CPU < {self.cpu_percent:g}%{night}; "
                f"on return: {self.on_return}")

    def decide(self, idle_seconds: float | None, cpu_percent: float, now: datetime) -> Decision:
        if _in_window(self.night, now):
            return Decision(True, "run", f"inside the night window {self.night}")
        if idle_seconds is None:
            return Decision(True, "run", "no interactive owner on this machine")
        if idle_seconds < self.idle_minutes * 60:
            return Decision(False, self.on_return,
                            f"the owner is active (input {idle_seconds / 60:.1f} min ago, "
                            f"away after {self.idle_minutes:g} min)")
        if cpu_percent >= self.cpu_percent:
            return Decision(False, self.on_return,
                            f"other programs use {cpu_percent:.0f}% of the CPU (limit {self.cpu_percent:g}%)")
        return Decision(True, "run", f"the owner is away (no input for {idle_seconds / 60:.0f} min)")


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _signal_runs(action: str) -> int:
    """``suspend`` or ``resume`` every process of every engine tree running here."""
    n = 0
    for pid in list(RUNNING.values()):
        for p in _tree(pid):
            try:
                getattr(p, action)()
                n += 1
            except psutil.Error:
                pass
    return n


def suspend_runs() -> int:
    return _signal_runs("suspend")


def resume_runs() -> int:
    return _signal_runs("resume")


class OwnerPlugin(WorkerPlugin):
    """A worker plugin applying :class:`OwnerPolicy` every ``interval`` seconds.

    Register with ``client.register_plugin(OwnerPlugin())`` or from the worker's preload.
    """

    name = "hecras-owner"

    def __init__(self, policy: OwnerPolicy | None = None, *, interval: float = 5.0,
                 idle_seconds: Callable[[], float | None] | None = None,
                 cpu_percent: Callable[[], float] | None = None, slots: int | None = None):
        self.policy = policy
        self.interval = interval
        self.idle_seconds = idle_seconds or default_idle_seconds
        self.cpu_percent = cpu_percent or OtherCpu()
        self.slots = slots  # when open; default: what the worker was started with (--resources RAS=n)
        self.state = None  # last applied: "open", "closed"
        self.suspended = False

    def setup(self, worker) -> None:
        from tornado.ioloop import PeriodicCallback

        self.worker = worker
        self.policy = self.policy or OwnerPolicy.from_config()
        self._pc = PeriodicCallback(self._tick, self.interval * 1000)
        worker.loop.add_callback(self._tick)
        self._pc.start()

    def teardown(self, worker) -> None:
        self._pc.stop()

    async def _tick(self) -> None:
        d = self.policy.decide(self.idle_seconds(), self.cpu_percent(), datetime.now())
        await self.apply(d)

    async def apply(self, d: Decision) -> None:
        worker = self.worker
        want = "open" if d.may_start else "closed"
        if want != self.state:
            await update_slots(worker, owner_away=d.may_start, full=self.slots)
            self.state = want
            worker.log_event("hecras", {"action": "owner", "worker": worker.address,
                                        "decision": "takes plans" if d.may_start else "no new plans",
                                        "reason": d.reason})
        if d.may_start and self.suspended:
            resume_runs()
            self.suspended = False
            worker.log_event("hecras", {"action": "owner", "worker": worker.address, "decision": "resumed",
                                        "reason": d.reason})
        elif not d.may_start and RUNNING:
            if d.action == "suspend" and not self.suspended:
                suspend_runs()
                self.suspended = True
                worker.log_event("hecras", {"action": "owner", "worker": worker.address, "decision": "suspended",
                                            "reason": d.reason})
            elif d.action == "requeue":
                with _lock:
                    new = set(RUNNING) - REQUEUE
                    REQUEUE.update(RUNNING)
                if new:
                    worker.log_event("hecras", {"action": "owner", "worker": worker.address,
                                                "decision": "requeued", "plans": sorted(new), "reason": d.reason})
