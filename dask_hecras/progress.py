"""How far a running plan has got, from what its engine writes while it computes, and when a
run that no longer moves is a stall.

Where each figure comes from:

- **Ras.exe** writes its computation messages to ``NAME.bcoNN`` in the run folder when the plan
  says ``Write Detailed= 1`` (the staged copy is set so: ``project.set_plan_detailed``). Its
  lines carry the simulation time reached, as ``01JAN2026  06:20:00`` (or ``01JAN2026 0620``):
  the latest one read is the time reached.
- **HEC-RAS's Linux engines** print ``SIMTIME=<hours since the simulation start>`` lines on
  their standard output (which goes to the engine log), negative during warm-up.

The fraction is the time reached over the plan's simulation window (``Simulation Date=`` of
the plan file). The pace is wall seconds per simulated hour over the run so far (time spent
suspended by the owner policy left out), and the time left is the simulated hours still to go
at that pace. Nothing here knows about Dask: the worker follows a run with :class:`RunWatch`
and sends what it says on.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

BCO = "bco"
SIMTIME = "simtime"

_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
# 01JAN2026  06:20:00 | 01Jan2026 06:20 | 01JAN2026 0620 | 01JAN2026,0620
_BCO_TIME = re.compile(r"\b(\d{1,2})([A-Za-z]{3})(\d{4})[ \t,]+(\d{2}):?(\d{2})(?::(\d{2}))?\b")
_SIMTIME = re.compile(r"SIMTIME=\s*(-?[0-9]+(?:\.[0-9]+)?)")


def parse_bco_time(line: str) -> datetime | None:
    """The simulation time a ``.bco`` line names, if any (``24:00`` is the end of the day)."""
    m = _BCO_TIME.search(line)
    if not m:
        return None
    day, month, year, hh, mm, ss = m.groups()
    mon = _MONTHS.get(month.upper())
    if mon is None:
        return None
    try:
        base = datetime(int(year), mon, int(day))
    except ValueError:
        return None
    return base + timedelta(hours=int(hh), minutes=int(mm), seconds=int(ss or 0))


def parse_simtime(line: str) -> float | None:
    """Hours since the simulation start from a Linux engine's ``SIMTIME=`` line, if any."""
    m = _SIMTIME.search(line)
    return float(m.group(1)) if m else None


def bco_file(run_dir: Path, project_name: str, plan_id: str) -> Path:
    """``NAME.bcoNN``: where Ras.exe writes a plan's computation messages (``p03`` → ``bco03``)."""
    return Path(run_dir) / f"{project_name}.bco{plan_id[1:]}"


class ProgressFile:
    """Follows one file an engine appends to, reading only what is new at each :meth:`read`.

    ``kind`` is :data:`BCO` (simulation date-times) or :data:`SIMTIME` (hours since ``start``).
    A file that does not exist yet is simply nothing yet; a file that got shorter (the engine
    started it again) is read from its beginning.
    """

    def __init__(self, path: Path, kind: str, start: datetime | None):
        if kind not in (BCO, SIMTIME):
            raise ValueError(f"unknown progress kind {kind!r}")
        self.path, self.kind, self.start = Path(path), kind, start
        self.offset = 0
        self.partial = b""
        self.hours: float | None = None  # the latest simulation time read, hours since start

    def read(self) -> float | None:
        """Read what was appended; the latest simulation time reached (hours since the start)."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return self.hours
        if size < self.offset:
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return self.hours
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(min(size - self.offset, 4 << 20))  # a huge backlog: the rest next time
        except OSError:
            return self.hours
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # a line still being written waits for its end
        for raw in reversed(lines):
            hours = self._hours(raw.decode("latin-1"))
            if hours is not None:
                self.hours = hours
                break
        return self.hours

    def _hours(self, line: str) -> float | None:
        if self.kind == SIMTIME:
            return parse_simtime(line)
        when = parse_bco_time(line)
        if when is None or self.start is None:
            return None
        return (when - self.start).total_seconds() / 3600.0


@dataclass(frozen=True)
class Progress:
    """One reading of a run's progress. Plain values: it travels to the scheduler."""

    fraction: float  # of the simulation window reached, 0 to 1
    sim_hours: float  # simulated hours reached since the window's start
    window_hours: float  # the plan's simulation window
    wall_seconds: float  # engine run time so far, time suspended left out
    pace: float | None  # wall seconds per simulated hour so far; None before any simulated time
    left_seconds: float | None  # wall time still to go at that pace
    still_seconds: float  # how long the simulation time has not moved (run time, suspensions left out)
    source: str  # BCO or SIMTIME

    def as_dict(self) -> dict:
        return asdict(self)


def _duration(value, default: float | None, key: str) -> float | None:
    from .config import parse_duration

    if value is None or value == "auto":
        return default
    return parse_duration(value, f"hecras.{key}")


@dataclass(frozen=True)
class StallRule:
    """When a run whose progress has not moved counts as a stall (``hecras.stall-*``).

    ``after`` fixes it; ``None`` (``auto``) sizes it from the run's own pace: ``factor`` times the
    longest the simulation time has stood still between two moves so far, never less than
    ``floor``. Before the first move (start-up, geometry preprocessing, a licence dialog), it is
    ``startup`` either way; and ``auto`` keeps to ``startup`` until a second move gives a pace. ``enabled=False`` never calls a stall.
    """

    enabled: bool = True
    after: float | None = None
    floor: float = 600.0
    startup: float = 1800.0
    factor: float = 10.0

    @classmethod
    def from_config(cls) -> "StallRule":
        from . import config

        after = config.get("stall-after", "auto")
        if after in (False, "off", "never", "none"):
            return cls(enabled=False)
        return cls(after=_duration(after, None, "stall-after"),
                   floor=_duration(config.get("stall-floor", "10min"), 600.0, "stall-floor"),
                   startup=_duration(config.get("stall-startup", "30min"), 1800.0, "stall-startup"),
                   factor=float(config.get("stall-factor", 10)))

    def limit(self, moves: int, longest_still: float) -> float:
        """The limit after ``moves`` moves of the simulation time, the longest still between two
        of them ``longest_still``."""
        if moves < 1:  # preprocessing a big model may take long: a fixed ``after`` starts with the progress
            return self.startup
        if self.after is not None:
            return self.after
        if moves < 2:  # no pace known yet
            return self.startup
        return max(self.floor, self.factor * longest_still)


BUSY = 0.1  # an engine tree using this share of a core while its progress stands still is working, not stalled


class RunWatch:
    """Follows one engine run: its progress, and whether it stalled.

    Call :meth:`poll` often (the process runner does, every tenth of a second); it reads the
    progress file at most every ``interval`` seconds. ``suspended()`` tells whether the engine is
    paused (the owner policy): paused time is neither run time nor standing still.

    A stall is the simulation time standing still for the rule's limit. Until the first time is
    read, the progress file growing counts as moving (preprocessing messages, or lines of a form
    not understood here), so a file this module cannot read never stops a working run; and when
    ``cpu()`` (the CPU seconds the engine's processes used) says they kept at least
    :data:`BUSY` of a core busy meanwhile, the run is computing, not stalled: a dialog waits
    idle. ``dialogs()`` names open dialog boxes for the reason.
    """

    def __init__(self, source: ProgressFile, window_hours: float | None, *, rule: StallRule | None = None,
                 interval: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 suspended: Callable[[], bool] | None = None, dialogs: Callable[[], list[str]] | None = None,
                 cpu: Callable[[], float | None] | None = None):
        self.source, self.rule = source, rule or StallRule()
        self.window_hours = window_hours if window_hours and window_hours > 0 else None
        self.interval, self.clock = interval, clock
        self.suspended = suspended or (lambda: False)
        self.dialogs, self.cpu = dialogs, cpu
        self.active_at = 0.0  # run time of the last sign of life: a move, or (before any) the file growing
        self.cpu_at: float | None = None  # the engine's CPU seconds then
        self.size = 0
        now = clock()
        self.last_poll = now - interval  # the first poll reads at once
        self.counted_at = now  # run time counts from here, not from that earlier poll that never was
        self.run_seconds = 0.0  # not suspended
        self.moved_at = 0.0  # run time of the last move
        self.longest_still = 0.0
        self.moves = 0
        self.hours: float | None = None
        self.first_hours: float | None = None  # the first simulated time read (warm-up may start below 0)
        self.first_at = 0.0
        self.latest: Progress | None = None
        self.stall: str = ""
        self.pids: list[int] = []  # the engine's process, once started (for ``suspended`` and ``dialogs``)

    def poll(self) -> Progress | None:
        """A new :class:`Progress` when the simulation time moved since the last one, else None.
        Sets :attr:`stall` (the reason) once the run counts as stalled."""
        now = self.clock()
        if now - self.last_poll < self.interval:
            return None
        elapsed = now - self.counted_at
        self.last_poll = self.counted_at = now
        if self.suspended():
            return None
        self.run_seconds += elapsed
        hours = self.source.read()
        moved = hours is not None and (self.hours is None or hours > self.hours)
        grew = self.source.offset > self.size
        self.size = self.source.offset
        if moved or (grew and self.hours is None and hours is None):
            self.active_at, self.cpu_at = self.run_seconds, self._cpu()
        elif self.cpu_at is None:
            self.cpu_at = self._cpu()  # from the start (once the engine is there)
        if moved:
            if self.hours is not None:
                self.longest_still = max(self.longest_still, self.run_seconds - self.moved_at)
            else:
                self.first_hours, self.first_at = hours, self.run_seconds
            self.hours, self.moved_at = hours, self.run_seconds
            self.moves += 1
            self.latest = self._progress()
            return self.latest
        self._check_stall()
        return None

    def _progress(self) -> Progress:
        hours = self.hours or 0.0
        window = self.window_hours
        fraction = min(1.0, max(0.0, hours / window)) if window else 0.0
        pace = left = None
        if self.first_hours is not None and hours > max(0.0, self.first_hours):
            # from the first reading on: start-up time (preprocessing) is not simulation pace
            pace = (self.run_seconds - self.first_at) / (hours - max(0.0, self.first_hours))
            left = pace * max(0.0, (window or hours) - hours)
        return Progress(fraction, hours, window or 0.0, self.run_seconds, pace, left,
                        self.run_seconds - self.moved_at, self.source.kind)

    @property
    def still_seconds(self) -> float:
        return self.run_seconds - self.moved_at

    def _cpu(self) -> float | None:
        if self.cpu is None:
            return None
        try:
            return self.cpu()
        except Exception:
            return None

    def _check_stall(self) -> None:
        if self.stall or not self.rule.enabled:
            return
        moved_yet = self.hours is not None
        limit = self.rule.limit(self.moves, self.longest_still)
        still = self.run_seconds - self.active_at
        if still < limit:
            return
        used = self._cpu()
        if used is not None and self.cpu_at is not None and used - self.cpu_at >= BUSY * still:
            self.active_at, self.cpu_at = self.run_seconds, used  # computing: look again a limit later
            return
        where = (f"at {100 * self.latest.fraction:.0f}% of the simulation" if moved_yet and self.latest and self.window_hours
                 else "before any simulation time was reached")
        found = ""
        if self.dialogs is not None:
            try:
                titles = self.dialogs()
            except Exception:
                titles = []
            if titles:
                found = "a dialog is open: " + "; ".join(f'"{t}"' for t in titles)
        kind = found or "a dialog or a hang"
        idle = (f" (its processes used {used - self.cpu_at:.1f} s of CPU meanwhile)"
                if used is not None and self.cpu_at is not None else "")
        self.stall = f"no progress for {_minutes(still)} {where}: {kind}{idle}"

    def __call__(self) -> str | bool:
        """As a ``cancel`` check for the process runner: the stall reason once stalled."""
        self.poll()
        return self.stall or False


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
