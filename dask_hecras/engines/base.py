"""What every engine shares: building a command line, then the one process runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..progress import BCO, ProgressFile, bco_file
from ..project import InputFile, Plan
from .runner import ProcessResult, run_process


def _staged(plan: Plan, plan_file: Path) -> bool:
    """``plan_file`` is a staged copy, never the source project's own file."""
    return plan_file.resolve().parent != plan.folder.resolve()


class EngineNotFound(RuntimeError):
    """The engine cannot run on this machine (e.g. no HEC-RAS installed)."""


@dataclass(frozen=True)
class EngineRun:
    """What an engine run produced, before anyone reads the results."""

    engine: str
    command: tuple[str, ...]
    process: ProcessResult

    @property
    def exit_code(self) -> int | None:
        return self.process.exit_code

    @property
    def seconds(self) -> float:
        return self.process.seconds

    @property
    def log(self) -> Path:
        return self.process.log


class Engine:
    """Runs ``<engine> -c NAME.prj NAME.pNN`` in a run folder."""

    name = "engine"

    def command(self, prj: Path, plan_file: Path, plan: Plan) -> list[str]:
        raise NotImplementedError

    def extra_inputs(self, plan: Plan) -> list[InputFile]:
        """Files this engine needs staged beyond the plan's own inputs (:meth:`Plan.inputs`),
        checked before anything is copied: a ``ProjectError`` names each one missing, an
        ``EngineNotFound`` says the engine cannot run here. None for Ras.exe."""
        return []

    def set_cores(self, plan: Plan, plan_file: Path) -> None:
        """``hecras.cores-per-plan``, when set, written into the staged plan file (``UNET D1/D2
        Cores``: what Ras.exe reads), so that several runs share a big machine."""
        from .. import config
        from ..project import set_plan_cores

        cores = config.cores_per_plan()
        if cores is not None and _staged(plan, plan_file):
            set_plan_cores(plan_file, cores)

    def progress_file(self, plan: Plan, run_dir: Path, log: Path) -> ProgressFile:
        """Where a run of this engine says how far it has got (``progress``): Ras.exe's
        computation messages, ``NAME.bcoNN`` (written because the staged plan says ``Write
        Detailed= 1``: :meth:`set_detailed`)."""
        return ProgressFile(bco_file(run_dir, plan.project_name, plan.id), BCO, plan.start)

    def set_detailed(self, plan: Plan, plan_file: Path) -> None:
        """The staged plan file asks for the computation messages (``Write Detailed= 1``), which
        carry the simulation time reached; the source is never written."""
        from ..project import set_plan_detailed

        if _staged(plan, plan_file):
            set_plan_detailed(plan_file)

    def environment(self, plan: Plan) -> Mapping[str, str] | None:
        """Environment of the engine process; ``None`` inherits the worker's."""
        return None

    def run(
        self,
        plan: Plan,
        prj: Path,
        plan_file: Path,
        *,
        log: Path,
        timeout: float | None = None,
        cancel: Callable[[], bool | str] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> EngineRun:
        self.set_cores(plan, plan_file)
        self.set_detailed(plan, plan_file)
        command = self.command(prj, plan_file, plan)
        process = run_process(
            command, cwd=prj.parent, log=log, timeout=timeout, cancel=cancel, env=self.environment(plan),
            on_start=on_start,
        )
        return EngineRun(self.name, tuple(command), process)
