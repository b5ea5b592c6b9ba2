"""Which worker can run which plan: its engine, and a version of it that can open the plan.

A mixed cluster has Windows PCs with Ras.exe and Linux nodes with HEC-RAS's Linux engine
(``RasUnsteady``), each with its own versions. Workers report what they have (``worker``'s
capability events, ``{"ras": ["6.5", "6.6"], "linux": ["6.6"]}``); the plan queue releases a
plan only to a worker that can run it, and fails at once a plan no worker can run, saying why.
Plain functions: the queue calls them with what it knows.
"""

from __future__ import annotations

from .project import parse_version

# What a batch's engine accepts of a worker: "auto" runs each plan with the HEC-RAS the worker
# has (Ras.exe, else the Linux engine for a plan prepared for it).
KINDS = {"ras": ("ras",), "linux": ("linux",), "auto": ("ras", "linux")}
WORDS = {"ras": "HEC-RAS (Ras.exe)", "linux": "HEC-RAS's Linux engine (RasUnsteady)"}


def _pad(v: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(v) + (0,) * (4 - len(v))


def opens(installed: list[str], plan_version: str | None) -> bool:
    """An installed version at or above the plan's (HEC-RAS opens older plans, not newer ones);
    a plan of unknown version, or an install of unknown version (a configured executable), passes."""
    if not installed:
        return False
    wanted = parse_version(plan_version)
    if wanted is None:
        return True
    for label in installed:
        have = parse_version(label)
        if have is None or _pad(have) >= _pad(wanted):
            return True
    return False


def can_run(engine: str, plan_version: str | None, prepared: bool, worker_engines: dict | None) -> bool:
    """Whether a worker that reported ``worker_engines`` can run a plan with ``engine``.

    ``None`` (a worker that has not reported: started without ``--preload dask_hecras.worker``)
    may: the engine's own check there says no if it cannot. The fake engine runs anywhere."""
    if engine not in KINDS or worker_engines is None:
        return True
    for kind in KINDS[engine]:
        if kind == "linux" and not prepared:
            continue
        if opens(list(worker_engines.get(kind) or []), plan_version):
            return True
    return False


def why_not(engine: str, plan_version: str | None, prepared: bool, workers: dict[str, dict]) -> str:
    """Why no worker of ``workers`` (name → reported engines) can run the plan, in words."""
    kinds = [k for k in KINDS.get(engine, ()) if k != "linux" or prepared]
    version = f" {plan_version} or newer" if parse_version(plan_version) else ""
    if not kinds:  # linux asked for, the plan not prepared
        need = "a plan prepared for HEC-RAS's Linux engine (it has no .tmp.hdf/.b/.x files)"
    else:
        need = " or ".join(WORDS[k] + version for k in kinds)
    have = "; ".join(f"{name}: " + (", ".join(f"{k} {' '.join(v)}" for k, v in sorted(e.items()) if v) or "no HEC-RAS")
                     for name, e in sorted(workers.items()))
    return f"no worker has {need} (workers: {have or 'none'})"
