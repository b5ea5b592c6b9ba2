"""HEC-RAS 6.x on Windows: ``Ras.exe -c "<prj>" "<plan file>"``.

Several versions are often installed side by side under
``...\\HEC\\HEC-RAS\\<version>\\Ras.exe``; a plan is best run by the version that
wrote it (its ``Program Version=``), or else by the oldest newer one.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TypeVar

from .. import config
from ..project import Plan, parse_version
from .base import Engine, EngineNotFound


@dataclass(frozen=True, order=True)
class RasInstall:
    version: tuple[int, ...]
    exe: Path

    @property
    def label(self) -> str:
        return ".".join(str(v) for v in self.version)


InstallT = TypeVar("InstallT")  # an install: RasInstall here, LinuxInstall in linux.py


def standard_roots() -> list[Path]:
    """The folders the HEC-RAS installer uses, plus ``hecras.ras-roots``."""
    roots = [Path(r) for r in (config.get("ras-roots") or [])]
    for var, default in (("ProgramFiles(x86)", r"C:\Program Files (x86)"), ("ProgramFiles", r"C:\Program Files")):
        base = os.environ.get(var) or (default if sys.platform == "win32" else None)
        if base:
            roots.append(Path(base) / "HEC" / "HEC-RAS")
    return roots


def find_installs(roots: Iterable[Path] | None = None) -> list[RasInstall]:
    """HEC-RAS versions installed as ``<root>/<version>/Ras.exe``, oldest first."""
    found: dict[tuple[int, ...], RasInstall] = {}
    for root in standard_roots() if roots is None else roots:
        try:
            children = sorted(Path(root).iterdir())
        except OSError:
            continue
        for folder in children:
            version = parse_version(folder.name)
            if version is None or not folder.is_dir():
                continue
            exe = next((f for f in folder.iterdir() if f.name.lower() == "ras.exe"), None)
            if exe is not None and version not in found:
                found[version] = RasInstall(version, exe)
    return sorted(found.values())


def _pad(v: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(v) + (0,) * (4 - len(v))


def choose_install(installs: list[InstallT], plan_version: str | None, choice: str = "plan", *,
                   what: str = "HEC-RAS") -> InstallT:
    """Pick the HEC-RAS that runs a plan.

    ``choice`` is ``"plan"`` (the plan's version, else the oldest newer one),
    ``"newest"``, or a version such as ``"6.6"``. ``installs`` are any installs with a
    ``version`` tuple and a ``label`` (Ras.exe's, or the Linux engine's: ``what`` names them in
    errors).
    """
    if not installs:
        raise EngineNotFound(f"no {what} installation found")
    found = ", ".join(i.label for i in installs)
    choice = (choice or "plan").strip().lower()
    if choice == "newest":
        return max(installs)
    if choice != "plan":
        wanted = parse_version(choice)
        for i in installs:
            if wanted is not None and _pad(i.version) == _pad(wanted):
                return i
        raise EngineNotFound(f"{what} {choice} is not installed (found {found})")
    wanted = parse_version(plan_version)
    if wanted is None:
        return max(installs)
    for i in installs:
        if _pad(i.version) == _pad(wanted):
            return i
    newer = [i for i in installs if _pad(i.version) > _pad(wanted)]
    if newer:
        return min(newer)
    raise EngineNotFound(
        f"the plan was written by HEC-RAS {plan_version}, and only older versions"
        f"{'' if what == 'HEC-RAS' else ' of ' + what} are installed ({found})"
    )


class RasExe(Engine):
    """The real HEC-RAS. Which Ras.exe runs comes from this machine's configuration only."""

    name = "ras"

    def __init__(self, exe: str | os.PathLike | None = None, roots: Iterable[Path] | None = None,
                 choice: str | None = None):
        configured = exe if exe is not None else config.get("ras-exe")
        self.exe = Path(configured) if configured else None
        self.roots = None if roots is None else [Path(r) for r in roots]
        self.choice = choice if choice is not None else str(config.get("ras-version") or "plan")

    def installs(self) -> list[RasInstall]:
        return find_installs(self.roots)

    def available(self) -> str:
        """What would run here, in words; ``EngineNotFound`` (saying where it looked) if nothing."""
        if self.exe is not None:
            self._checked_exe()
            return f"HEC-RAS at {self.exe} (hecras.ras-exe)"
        labels = ", ".join(i.label for i in self._checked_installs())
        return f"HEC-RAS (installed here: {labels}; the version for each plan: hecras.ras-version={self.choice})"

    def _checked_exe(self) -> Path:
        if not self.exe.is_file():
            raise EngineNotFound(f"hecras.ras-exe {self.exe} does not exist on {socket.gethostname()}")
        return self.exe

    def _checked_installs(self) -> list[RasInstall]:
        installs = self.installs()
        if not installs:
            looked = ", ".join(str(r) for r in (self.roots if self.roots is not None else standard_roots()))
            raise EngineNotFound(
                f"HEC-RAS is not installed on {socket.gethostname()} (looked in {looked or 'no folders'}); "
                "install it or set hecras.ras-exe"
            )
        return installs

    def executable_for(self, plan: Plan) -> Path:
        if self.exe is not None:
            return self._checked_exe()
        installs = self._checked_installs()
        try:
            return choose_install(installs, plan.program_version, self.choice).exe
        except EngineNotFound as e:
            raise EngineNotFound(f"{socket.gethostname()}: {e}") from None

    def run(self, plan: Plan, prj: Path, plan_file: Path, *, timeout: float | None = None, **kwargs):
        """Run Ras.exe; never without a time limit: a licence or error dialog would hold the PC's
        slot for ever, and the batch would wait on it."""
        self.executable_for(plan)  # a PC without HEC-RAS says so first
        if not timeout:
            raise EngineNotFound(
                f"{socket.gethostname()} has no time limit for HEC-RAS runs: a dialog would hold its slot for ever; "
                "set hecras.timeout on the worker (dask-hecras worker-config --timeout) or submit(..., timeout=)")
        return super().run(plan, prj, plan_file, timeout=timeout, **kwargs)

    def command(self, prj: Path, plan_file: Path, plan: Plan) -> list[str]:
        # 6.x: the plan file is given on the command line; 5.x needed "Current Plan" edited instead.
        return [str(self.executable_for(plan)), "-c", str(prj), str(plan_file)]
