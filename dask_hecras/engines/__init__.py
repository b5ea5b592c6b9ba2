"""Engines run one staged plan: the real Ras.exe or the fake engine.

Engines are chosen by name (``"ras"``, ``"fake"``): a task sent by a client never
carries an executable path; each worker's own configuration says what runs.
"""

from __future__ import annotations

from .base import Engine, EngineNotFound, EngineRun
from .fake import FakeRas
from .ras import RasExe

ENGINES: dict[str, type[Engine]] = {"ras": RasExe, "fake": FakeRas}


def get_engine(name: str) -> Engine:
    """The engine called ``name`` ("ras" or "fake"), set up from this machine's configuration.

    Only names are accepted: an engine object sent by a client could carry any executable.
    """
    if not isinstance(name, str):
        raise TypeError(f"an engine is chosen by name ({', '.join(sorted(ENGINES))}), not given as "
                        f"{type(name).__name__}: each worker's own configuration says what runs")
    try:
        return ENGINES[str(name).lower()]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}") from None


__all__ = ["Engine", "EngineNotFound", "EngineRun", "FakeRas", "RasExe", "ENGINES", "get_engine"]
