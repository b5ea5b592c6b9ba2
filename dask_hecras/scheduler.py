"""The scheduler side of dask-hecras, as one preload::

    dask scheduler --preload dask_hecras.scheduler

It installs the plan queue (``queue.PlanQueue``: every batch, released one attempt per free
``RAS`` slot, with its ledger and resumption after a restart) and the HEC-RAS dashboard page
(``dashboard``). ``local_cluster()``, the CLI and ``cluster/start-scheduler.*`` use it. The
earlier name, ``--preload dask_hecras.dashboard``, does the same.
"""

from __future__ import annotations

from . import dashboard
from .queue import NAME, PlanQueue


def dask_setup(scheduler) -> None:
    """Preload hook: the scheduler starts its plugins right after its preloads."""
    if NAME not in scheduler.plugins:
        scheduler.add_plugin(PlanQueue(), name=NAME)
    dashboard.install(scheduler)
