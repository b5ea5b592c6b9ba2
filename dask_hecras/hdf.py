"""Small readers over h5py for HEC-RAS 6.x results files (layout: ../shared/HECRAS.md §3–4).

Each reads only what it names and tolerates absent groups by returning ``None`` or
an empty value; validation and summaries are built on them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import h5py
import numpy as np

BASE = "Results/Unsteady/Output/Output Blocks/Base Output"
STEADY_PROFILES = "Results/Steady/Output/Output Blocks/Base Output/Steady Profiles"
MESHES = "Geometry/2D Flow Areas/Attributes"

_COMPLETE = re.compile(r"^\s*Complete Process\s*\t\s*(<?[\d:]+)\s*$", re.M)
_VOLUME = re.compile(r"Overall Volume Accounting Error as percentage:\s*([-+0-9.eE]+)")
_VERSION = re.compile(r"HEC-RAS\s+(\d+(?:\.\d+)*)")


def text(value) -> str:
    """An attribute or one-element dataset of bytes as text."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    if isinstance(value, (bytes, np.bytes_)):
        from .project import text_encoding

        return bytes(value).decode(text_encoding(), errors="replace")
    return str(value)


def attr(f: h5py.File, path: str, name: str, default: str = "") -> str:
    obj = f.get(path)
    if obj is None or name not in obj.attrs:
        return default
    return text(obj.attrs[name]).strip()


def plan_information(f: h5py.File) -> dict[str, str]:
    info = f.get("Plan Data/Plan Information")
    return {} if info is None else {k: text(v).strip() for k, v in info.attrs.items()}


def parse_datetime(value: str) -> datetime | None:
    """``01Jan1999 12:00:00`` (any month case; ``24:00:00`` is the next midnight)."""
    value = value.strip()
    if not value:
        return None
    if value.endswith("24:00:00"):
        day = datetime.strptime(value[:-8].strip(), "%d%b%Y")
        return day + timedelta(days=1)
    for fmt in ("%d%b%Y %H:%M:%S", "%d%b%Y %H:%M"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            pass
    return None


def parse_stamp_ms(value: str) -> datetime | None:
    """``01JAN1999 12:00:00:000`` from ``Time Date Stamp (ms)``."""
    value = value.strip()
    if value.count(":") == 3:
        base, ms = value.rsplit(":", 1)
        t = parse_datetime(base)
        return None if t is None else t + timedelta(milliseconds=int(ms or 0))
    return parse_datetime(value)


def simulation_window(f: h5py.File) -> tuple[datetime | None, datetime | None]:
    """Start and end of the simulation; HEC-RAS 5.0 writes only ``Time Window`` ("<start> to <end>")."""
    info = plan_information(f)
    start, end = parse_datetime(info.get("Simulation Start Time", "")), parse_datetime(info.get("Simulation End Time", ""))
    if start is None and " to " in info.get("Time Window", ""):
        first, last = info["Time Window"].split(" to ", 1)
        start, end = parse_datetime(first), end or parse_datetime(last)
    return start, end


def version(f: h5py.File) -> str:
    """``HEC-RAS 6.5 February 2024`` → ``6.5``."""
    m = _VERSION.search(text(f.attrs.get("File Version", b"")))
    return m.group(1) if m else ""


def compute_messages(f: h5py.File) -> str:
    d = f.get("Results/Summary/Compute Messages (text)")
    return "" if d is None else text(d[()])


def complete_process_seconds(messages: str) -> float | None:
    """The ``Complete Process`` row of the Computations Summary, if the run got there."""
    m = _COMPLETE.search(messages)
    return None if m is None else parse_task_time(m.group(1))


def parse_task_time(value: str) -> float | None:
    """The Computations Summary's time column: ``<1``, ``27``, ``6:41``, ``21:52:33``."""
    value = value.strip()
    if value.startswith("<"):
        return 0.5
    try:
        parts = [int(p) for p in value.split(":")]
    except ValueError:
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return float(seconds)


def run_seconds(f: h5py.File, messages: str | None = None) -> float | None:
    """Run time of the whole process: the sum of ``Compute Processes``, else ``Complete Process``."""
    d = f.get("Results/Summary/Compute Processes")
    if d is not None and d.dtype.names and "Compute Time (ms)" in d.dtype.names and d.shape[0]:
        return float(d.fields("Compute Time (ms)")[()].sum()) / 1000.0
    return complete_process_seconds(compute_messages(f) if messages is None else messages)


def volume_error_percent(f: h5py.File, messages: str | None = None) -> float | None:
    va = f.get("Results/Unsteady/Summary/Volume Accounting")
    if va is not None and "Error Percent" in va.attrs:
        return float(np.asarray(va.attrs["Error Percent"]).ravel()[0])
    m = _VOLUME.search(compute_messages(f) if messages is None else messages)
    if m:
        return float(m.group(1))
    legacy = attr(f, "Results/Unsteady/Summary", "Vol Accounting Error Percentage")  # HEC-RAS 5.0.x
    try:
        return float(legacy) if legacy else None
    except ValueError:
        return None


def meshes(f: h5py.File) -> list[tuple[str, int]]:
    """(name, real cell count) of each 2D flow area; arrays hold ghost cells beyond the count."""
    d = f.get(MESHES)
    if d is None:
        return []
    table = d[()]
    return [(text(row["Name"]).strip(), int(row["Cell Count"])) for row in table]


def units(dataset: h5py.Dataset, row: int = 0) -> str:
    """Units from ``Units``, ``Units per row`` or ``Variable_Unit`` attributes."""
    for key in ("Units per row", "Units"):
        if key in dataset.attrs:
            u = np.asarray(dataset.attrs[key]).ravel()
            return text(u[min(row, len(u) - 1)]).strip() if u.size else ""
    if "Variable_Unit" in dataset.attrs:
        vu = np.asarray(dataset.attrs["Variable_Unit"])
        return text(vu.reshape(-1, 2)[0, 1]).strip() if vu.size >= 2 else ""
    return ""


class LazyDataset:
    """An HDF dataset that opens its file only while a block is read.

    Unlike an h5py.Dataset it pickles (to Dask workers) and holds no open handle,
    which on Windows would block replacing the results folder.
    """

    def __init__(self, path, name: str, shape: tuple[int, ...], dtype):
        self.path = str(path)
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        with h5py.File(self.path, "r") as f:
            return f[self.name][key]

    def __repr__(self) -> str:
        return f"LazyDataset({self.path!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"
