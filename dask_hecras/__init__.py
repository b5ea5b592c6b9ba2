"""dask-hecras: run HEC-RAS plans on a Dask cluster.

Follow one plan: :class:`Project` reads it, :func:`run_plan` stages, runs,
validates and summarises it, and a :class:`PlanResult` comes back.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Imported on first use, so that light entry points (the fake engine, the CLI's
# --help) do not pay for xarray and distributed.
_EXPORTS = {
    "Project": "project",
    "Plan": "project",
    "ProjectError": "project",
    "run_plan": "pipeline",
    "RetryableFailure": "pipeline",
    "PlanResult": "records",
    "validate": "validation",
    "Validation": "validation",
    "summarise": "summary",
    "submit": "batch",
    "open_batch": "batch",
    "drain": "batch",
    "dashboard_link": "actions",
    "local_cluster": "batch",
    "combine": "results",
    "open_results": "results",
    "to_geodataframe": "maps",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dask_hecras' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
