"""Engines run one staged plan: the real Ras.exe, HEC-RAS's Linux engine or the fake engine.

Engines are chosen by name (``"ras"``, ``"linux"``, ``"fake"``, or ``"auto"``: whichever HEC-RAS
this machine has): a task sent by a client never carries an executable path; each worker's own
configuration says what runs.
"""

from __future__ import annotations

from .base import Engine, EngineNotFound, EngineRun
from .fake import FakeRas
from .linux import LinuxEngine
from .ras import RasExe

ENGINES: dict[str, type[Engine]] = {"ras": RasExe, "linux": LinuxEngine, "fake": FakeRas}


def default_engine() -> str:
    """``hecras.engine``: HEC-RAS unless configured otherwise. The fake engine (synthetic
    results) is never a silent default: one asks for it by name."""
    from .. import config

    return str(config.get("engine") or "ras").lower()


def get_engine(name: str | None = None) -> Engine:
    """The engine called ``name`` ("ras", "linux" or "fake"; ``None``: :func:`default_engine`), set up from
    this machine's configuration.

    Only names are accepted: an engine object sent by a client could carry any executable.
    """
    if name is None:
        name = default_engine()
    if isinstance(name, str) and name.lower() == "auto":
        return auto_engine()
    if not isinstance(name, str):
        raise TypeError(f"an engine is chosen by name ({', '.join(sorted(ENGINES))}), not given as "
                        f"{type(name).__name__}: each worker's own configuration says what runs")
    try:
        return ENGINES[str(name).lower()]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}") from None


def auto_engine() -> Engine:
    """The HEC-RAS this machine has: Ras.exe where it is installed (it runs any plan), else the
    Linux engine (for plans prepared on Windows). The plan queue sends a plan only to a worker
    whose engines can run it (``placement``)."""
    import socket

    refusals = []
    for engine in (RasExe(), LinuxEngine()):
        try:
            engine.available()
            return engine
        except EngineNotFound as e:
            refusals.append(str(e))
    raise EngineNotFound(f"no HEC-RAS on {socket.gethostname()}: " + "; ".join(refusals))


FAKE_NOTE = "FAKE ENGINE (synthetic results, not HEC-RAS):"  # starts every fake result's reason

__all__ = ["Engine", "EngineNotFound", "EngineRun", "FakeRas", "LinuxEngine", "RasExe", "ENGINES", "FAKE_NOTE", "auto_engine",
           "default_engine", "get_engine"]
