"""``dask worker --preload tests.worker_hooks``: moments of a worker's life that chaos only hits
by chance, made to happen on cue (needs ``PYTHONPATH`` at the repository).

- ``HECRAS_TEST_HOLD=<file>``: while that file exists, the worker waits at its start (a PC slow
  to come back), before its start-up sweep (list this preload before ``dask_hecras.worker``).
- ``HECRAS_TEST_MUTE=<action>[,...]``: the worker's dask-hecras reports of those actions never
  reach the scheduler (as if it died the moment after acting).
"""

from __future__ import annotations

import os
import time


def dask_setup(worker) -> None:
    hold = os.environ.get("HECRAS_TEST_HOLD")
    while hold and os.path.exists(hold):
        time.sleep(0.1)
    muted = {a for a in os.environ.get("HECRAS_TEST_MUTE", "").split(",") if a}
    if muted:
        real = worker.log_event

        def log_event(topic, msg):
            if isinstance(msg, dict) and msg.get("action") in muted:
                return
            return real(topic, msg)

        worker.log_event = log_event
