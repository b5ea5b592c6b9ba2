"""Settings under the ``hecras`` namespace of ``dask.config``.

Defaults live in ``hecras.yaml`` beside this module, so every setting can come
from a Dask config file or a ``DASK_HECRAS__*`` environment variable.
"""

from __future__ import annotations

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


def timeout_seconds(value: Any) -> float | None:
    """A timeout given as seconds or as text ("6h", "90m"); ``None`` means none."""
    if value is None or value == "" or value == "null":
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    from dask.utils import parse_timedelta

    seconds = parse_timedelta(value, default="s")
    return float(seconds) if seconds and seconds > 0 else None
