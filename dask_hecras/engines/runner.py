"""One subprocess runner for every engine.

HEC-RAS is a GUI program that starts helper processes, can block forever on a
dialog and can deadlock on an undrained pipe. So: output goes to a log file, every
run has a deadline and can be cancelled, and a stop kills the whole process tree
(psutil on every OS, plus a Job Object with kill-on-close on Windows, because
killing a process there does not kill its children).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import psutil

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ProcessResult:
    """How an engine process ended."""

    exit_code: int | None  # None if we killed it
    seconds: float
    log: Path
    timed_out: bool = False
    cancelled: bool = False
    cancel_reason: str = ""  # why, when ``cancel()`` said so
    paused_seconds: float = 0.0  # time the process spent suspended (the owner policy), part of ``seconds``

    @property
    def killed(self) -> bool:
        return self.timed_out or self.cancelled


def run_process(
    command: Sequence[str],
    *,
    cwd: Path,
    log: Path,
    timeout: float | None = None,
    cancel: Callable[[], bool | str] | None = None,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    limits: Mapping[int, int] | None = None,
) -> ProcessResult:
    """Run ``command`` in ``cwd`` with stdout and stderr appended to ``log``.

    ``limits`` (POSIX) raises resource limits of the process before it starts, e.g.
    ``{resource.RLIMIT_STACK: resource.RLIM_INFINITY}`` (``ulimit -s unlimited``): each soft
    limit goes up to the value asked for, or to its hard limit when that is lower; a limit is
    never lowered.

    Stops it, children included, when it has run ``timeout`` seconds or ``cancel()``
    returns true (or a text saying why). Time spent suspended (the owner policy pausing
    Ras.exe while a colleague works) does not count towards the timeout. When the main
    process exits by itself, helper processes it left behind are killed too, so nothing
    outlives a run.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    timed_out = cancelled = False
    why = ""
    paused = 0.0
    with open(log, "ab") as out:
        out.write(f"$ {subprocess.list2cmdline(list(command))}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(command),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            **_new_group_kwargs(limits),
        )
    job = None
    tree = _Tree(proc.pid)
    try:
        job = _windows_job(proc) if sys.platform == "win32" else None  # inside: a failure still kills the tree
        if on_start is not None:
            on_start(proc.pid)
        last = time.monotonic()
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            tree.refresh()
            now = time.monotonic()
            if now - last >= 1.0:  # once a second: on Windows psutil lists every process to tell
                if tree.suspended():  # the clock stops while the run is paused
                    paused += now - last
                    if deadline is not None:
                        deadline += now - last
                last = now
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            stop = cancel() if cancel is not None else False
            if stop:
                cancelled, why = True, stop if isinstance(stop, str) else ""
                break
    finally:
        # Always: on a stop, on an exception in this thread, and after a normal exit
        # (helpers may still be running).
        tree.kill(proc)
        if job is not None:
            job.close()
    seconds = time.monotonic() - started
    exit_code = None if (timed_out or cancelled) else proc.returncode
    was_paused = f" (paused {paused:.1f} s of it)" if paused else ""
    with open(log, "ab") as out:
        if timed_out:
            out.write(f"\n[dask-hecras] timed out after {timeout:g} s of running{was_paused}; "
                      "process tree killed\n".encode())
        elif cancelled:
            out.write(f"\n[dask-hecras] cancelled{f' ({why})' if why else ''} after {seconds:.1f} s{was_paused}; "
                      "process tree killed\n".encode())
        else:
            out.write(f"\n[dask-hecras] exit code {exit_code} after {seconds:.1f} s{was_paused}\n".encode())
    return ProcessResult(exit_code, seconds, log, timed_out, cancelled, why, paused)


def _new_group_kwargs(limits: Mapping[int, int] | None = None) -> dict:
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)}
    # Own session and process group: a killpg reaches descendants even after they are orphaned.
    kwargs: dict = {"start_new_session": True}
    steps = []
    if sys.platform.startswith("linux"):
        steps.append(_die_with_parent())
    raise_limits = _raised_limits(limits) if limits else None
    if raise_limits is not None:
        steps.append(raise_limits)
    if len(steps) == 1:
        kwargs["preexec_fn"] = steps[0]
    elif steps:
        def preexec() -> None:
            for step in steps:
                step()

        kwargs["preexec_fn"] = preexec
    return kwargs


def _raised_limits(limits: Mapping[int, int]):
    """A function for the child (between fork and exec) that raises the soft resource limits
    ``limits`` asks for, up to their hard limits; ``None`` when nothing needs raising. The
    values are worked out here, in the parent, so that the child only calls ``setrlimit``."""
    import resource

    infinity = resource.RLIM_INFINITY
    wanted = []
    for which, value in limits.items():
        soft, hard = resource.getrlimit(which)
        if hard != infinity and (value == infinity or value > hard):
            value = hard
        if soft == infinity or (value != infinity and value <= soft):
            continue  # already as high: never lowered
        wanted.append((which, (value, hard)))
    if not wanted:
        return None

    def apply() -> None:
        for which, pair in wanted:
            try:
                resource.setrlimit(which, pair)
            except (ValueError, OSError):  # a smaller stack is better than no run
                pass

    return apply


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Linux: the child is killed when the thread that started it ends, so an engine never
    outlives its Dask worker (SIGKILLed, or closed because it lost its scheduler). Helpers the
    engine starts are not covered: a worker's start-up sweep ends them (``kill_leftover``).
    Windows gets the same from the Job Object, macOS only from the sweep."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec: nothing more than this
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


def kill_leftover(pid: int, started: float) -> int:
    """End an engine tree left behind by a worker process that died: the engine, if the pid
    still names the same process (``started`` is its start time), its children, and on POSIX
    every process still in its session (helpers orphaned when the engine died). Returns how
    many processes were killed."""
    victims: list[psutil.Process] = []
    leader_alive = False
    try:
        leader = psutil.Process(pid)
        if abs(leader.create_time() - started) > 1.0:
            return 0  # the pid names another process now: its session is not ours either
        leader_alive = True
        victims += [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    except psutil.Error:
        return 0
    if os.name == "posix":
        for p in psutil.process_iter():
            try:
                if p.pid != pid and os.getsid(p.pid) == pid and p.create_time() >= started - 1.0:
                    victims.append(p)
            except (OSError, psutil.Error):
                continue
    if not victims and not leader_alive:
        return 0
    killed = 0
    for p in {p.pid: p for p in victims}.values():
        try:
            p.kill()
            killed += 1
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)
    return killed


class _Tree:
    """The descendants of a process, remembered while it runs: once a parent dies,
    its orphans can no longer be found through it."""

    def __init__(self, pid: int):
        self.pid = pid
        self.known: dict[int, psutil.Process] = {}
        try:
            self.root = psutil.Process(pid)
        except psutil.Error:
            self.root = None
        self.refresh()

    def refresh(self) -> None:
        if self.root is None:
            return
        try:
            for child in self.root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def suspended(self) -> bool:
        """The engine is paused (psutil reads a suspended process as stopped on every OS)."""
        try:
            return self.root is not None and self.root.status() == psutil.STATUS_STOPPED
        except psutil.Error:
            return False

    def kill(self, proc: subprocess.Popen) -> None:
        self.refresh()
        victims = [p for p in self.known.values() if _alive(p)]
        if proc.poll() is None and self.root is not None:
            victims.append(self.root)
        for p in victims:
            try:
                p.kill()  # psutil checks the pid still names the same process
            except psutil.Error:
                pass
        if sys.platform != "win32":
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        psutil.wait_procs(victims, timeout=10)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --------------------------------------------------------------------------- Windows


class _WindowsJob:
    """A Job Object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: closing the handle (or the
    worker dying) kills every process in it, Ras.exe's helpers included."""

    def __init__(self, handle, kernel32):
        self.handle, self.kernel32 = handle, kernel32

    def close(self) -> None:
        if self.handle:
            self.kernel32.CloseHandle(self.handle)
            self.handle = None


def _windows_job(proc: subprocess.Popen, kernel32=None) -> _WindowsJob | None:
    """Put ``proc`` (and so every process it starts) in a kill-on-close Job Object; ``None``
    if Windows refuses (a job that forbids nesting): psutil still kills the tree then.

    Fields are declared with their Windows sizes (``DWORD`` is 32-bit there, ``c_ulong`` is not
    everywhere), so ``sizeof`` is the 144 bytes 64-bit Windows checks; every function gets its
    argument and return types, so 64-bit handles are never cut to a C ``int``.
    """
    import ctypes

    if kernel32 is None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    DWORD, HANDLE, BOOL = ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int

    class IO_COUNTERS(ctypes.Structure):
        _fields_ = [(n, ctypes.c_ulonglong) for n in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

    class BASIC_LIMIT(ctypes.Structure):
        _fields_ = [
            ("PerProcessUserTimeLimit", ctypes.c_int64),
            ("PerJobUserTimeLimit", ctypes.c_int64),
            ("LimitFlags", DWORD),
            ("MinimumWorkingSetSize", ctypes.c_size_t),
            ("MaximumWorkingSetSize", ctypes.c_size_t),
            ("ActiveProcessLimit", DWORD),
            ("Affinity", ctypes.c_size_t),
            ("PriorityClass", DWORD),
            ("SchedulingClass", DWORD),
        ]

    class EXTENDED_LIMIT(ctypes.Structure):
        _fields_ = [
            ("BasicLimitInformation", BASIC_LIMIT),
            ("IoInfo", IO_COUNTERS),
            ("ProcessMemoryLimit", ctypes.c_size_t),
            ("JobMemoryLimit", ctypes.c_size_t),
            ("PeakProcessMemoryUsed", ctypes.c_size_t),
            ("PeakJobMemoryUsed", ctypes.c_size_t),
        ]

    JobObjectExtendedLimitInformation = 9
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
    kernel32.CreateJobObjectW.argtypes, kernel32.CreateJobObjectW.restype = [ctypes.c_void_p, ctypes.c_wchar_p], HANDLE
    kernel32.SetInformationJobObject.argtypes = [HANDLE, ctypes.c_int, ctypes.c_void_p, DWORD]
    kernel32.SetInformationJobObject.restype = BOOL
    kernel32.AssignProcessToJobObject.argtypes, kernel32.AssignProcessToJobObject.restype = [HANDLE, HANDLE], BOOL
    kernel32.CloseHandle.argtypes, kernel32.CloseHandle.restype = [HANDLE], BOOL
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return None
    info = EXTENDED_LIMIT()
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    ok = kernel32.SetInformationJobObject(job, JobObjectExtendedLimitInformation, ctypes.byref(info),
                                          ctypes.sizeof(info))
    if ok and kernel32.AssignProcessToJobObject(job, int(proc._handle)):
        return _WindowsJob(job, kernel32)
    kernel32.CloseHandle(job)  # e.g. already in a job that forbids nesting: psutil still kills the tree
    return None
