"""Settings under the ``hecras`` namespace of ``dask.config``.

Defaults live in ``hecras.yaml`` beside this module, so every setting can come
from a Dask config file or a ``DASK_HECRAS__*`` environment variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dask.config
import yaml

_DEFAULTS_FILE = Path(__file__).with_name("hecras.yaml")

with _DEFAULTS_FILE.open() as _f:
    _DEFAULTS = yaml.safe_load(_f)

dask.config.update_defaults(_DEFAULTS)


def get(key: str, default: Any = None) -> Any:
    """Read ``hecras.<key>``."""
    return dask.config.get(f"hecras.{key}", default=default)


_UNITS = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})\s*([a-z]+)")


def parse_duration(value: Any, what: str = "a duration") -> float:
    """Seconds from ``900``, ``"90min"``, ``"1.5h"``, ``"1h30m"``, ``"2 days"``.

    Anything else raises a ``ValueError`` that names ``what`` and shows what is accepted:
    a typo must fail where it is typed, not as a traceback on every worker.
    """
    from datetime import timedelta

    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(_NUMBER, text):
        return float(text)
    if re.fullmatch(rf"(?:\s*{_NUMBER}\s*[a-z]+)+\s*", text):
        parts = _PART.findall(text)
        if all(unit in _UNITS for _, unit in parts):
            return sum(float(n) * _UNITS[unit] for n, unit in parts)
    raise ValueError(f"{what}: cannot read {value!r} as a duration; write it like 900 (seconds), "
                     f"90min, 1.5h, 1h30m or 2d")


def timeout_seconds(value: Any, what: str = "timeout") -> float | None:
    """A timeout given as seconds or as text ("6h", "90min"); ``None`` (or 0) means none."""
    if value is None or value == "" or value == "null" or value == "none":
        return None
    seconds = parse_duration(value, what)
    if seconds < 0:
        raise ValueError(f"{what}: {value!r} is negative")
    return seconds or None


def seconds(key: str, default: Any) -> float:
    """A duration setting ``hecras.<key>`` in seconds, its name in the error if unreadable."""
    return parse_duration(get(key, default), f"hecras.{key}")


def state_folder() -> Path:
    """This user's dask-hecras folder on local disk, for state and logs of its own
    (``%LOCALAPPDATA%\\dask-hecras`` on Windows, ``~/.local/state/dask-hecras`` elsewhere)."""
    import os

    base = os.environ.get("LOCALAPPDATA") or os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "dask-hecras"


def cores_per_plan() -> int | None:
    """``hecras.cores-per-plan``: the cores one HEC-RAS run uses (None: all of the machine's)."""
    value = get("cores-per-plan")
    if value in (None, "", 0, "null", "none"):
        return None
    try:
        cores = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"hecras.cores-per-plan: {value!r} is not a number of cores") from None
    if cores < 1:
        raise ValueError(f"hecras.cores-per-plan: {value!r} must be at least 1")
    return cores


def ras_slots(cores: int | None = None) -> int:
    """How many HEC-RAS runs a worker takes at once: ``hecras.worker.slots`` if set, else
    ``cores // hecras.cores-per-plan`` (a 32-core server with 8 cores per plan runs 4), else 1.

    2D HEC-RAS speeds up little past a few cores, so a big machine does more with several
    plans of a few cores each than with one plan given every core."""
    slots = get("worker.slots")
    if slots not in (None, "", "null", "auto"):
        return max(0, int(slots))
    per_plan = cores_per_plan()
    if per_plan is None:
        return 1
    if cores is None:
        import psutil

        cores = psutil.cpu_count() or 1
    return max(1, cores // per_plan)
