"""The fake engine as an engine: ``python -m dask_hecras.fake_ras`` with Ras.exe's command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..project import Plan
from .base import Engine


class FakeRas(Engine):
    name = "fake"

    def command(self, prj: Path, plan_file: Path, plan: Plan) -> list[str]:
        return [sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(plan_file)]

    def environment(self, plan: Plan):
        # The run folder is a copy without fake-ras.json: point at the source project's.
        return {**os.environ, "FAKE_RAS_CONFIG": str(plan.folder / "fake-ras.json")}
