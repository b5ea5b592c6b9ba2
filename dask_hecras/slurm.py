"""HEC-RAS plans on a Slurm cluster, through dask-jobqueue::

    from dask_hecras.slurm import slurm_cluster
    cluster = slurm_cluster()                  # settings: jobqueue.slurm.* and hecras.slurm.*
    client = Client(cluster)
    batch = submit(client, plans, results_dir="/project/results")

:func:`slurm_cluster` builds a dask-jobqueue ``SLURMCluster`` whose scheduler runs in this
process with the plan queue (``--preload dask_hecras.scheduler``) and whose jobs each start one
worker with ``hecras.slurm.slots`` RAS slots, the worker preload and its scratch on the node's
local disk (``hecras.slurm.scratch``, expanded by the job's shell). Everything about Slurm itself
(partition, account, cores, memory, walltime, log folder) is dask-jobqueue's ``jobqueue.slurm.*``.

Adaptive scaling (:class:`PlanAdaptive`, on by default) follows the plan queue, not Dask's
estimates of task durations: it asks for ceil((plans queued + plans running) / slots) workers,
at most ``maximum_jobs``, and releases a worker only when no plan of the queue is on it
(running, being landed, or its task in flight) and it has been so for ``hecras.slurm.idle``.
"""

from __future__ import annotations

import math
import shlex
from inspect import isawaitable
from typing import Any

import dask.config
from distributed.deploy.adaptive import Adaptive

try:
    from dask_jobqueue import SLURMCluster
except ImportError as e:  # pragma: no cover - an optional dependency
    raise ImportError("dask_hecras.slurm needs dask-jobqueue: pip install \"dask-hecras[slurm]\"") from e

from . import config
from .slots import RESOURCE

WAITING_STATES = ("queued", "running", "lost", "landing")  # plans that need (or hold) a RAS slot


class PlanAdaptive(Adaptive):
    """Adaptive scaling driven by the plans waiting in the scheduler's plan queue.

    ``target()``: ceil((plans queued, running, lost or landing) / RAS slots per worker); one
    worker while only summaries or other Dask tasks wait; none when nothing does.
    ``workers_to_close()``: only workers with nothing of the queue's on them and no task
    running, whole jobs at a time. ``scale_down()`` checks again just before retiring them, on
    the scheduler's own event loop, so no plan is released to a worker being closed.
    """

    @property
    def _scheduler(self):
        return self.cluster.scheduler  # dask-jobqueue's scheduler runs in this process

    def _queue(self):
        from .queue import NAME

        plugins = getattr(self._scheduler, "plugins", None) or {}
        return plugins.get(NAME)

    def _slots(self) -> int:
        return max(1, int(getattr(self.cluster, "ras_slots", 1) or 1))

    async def target(self) -> int:
        queue = self._queue()
        work = queue.workload() if queue is not None else {"plans": {}, "summaries": 0}
        waiting = sum(work["plans"].get(s, 0) for s in WAITING_STATES)
        n = math.ceil(waiting / self._slots())
        if n == 0 and (work["summaries"] or self._other_work()):
            n = 1  # a summary (or someone's Dask task) needs a worker, not a slot
        return n

    def _other_work(self) -> bool:
        s = self._scheduler
        return bool(s.unrunnable or s.queued or any(ws.processing for ws in s.workers.values()))

    def _busy(self) -> set[str]:
        """Addresses of workers that must stay: a plan of the queue is theirs, or a task runs there."""
        queue = self._queue()
        busy = set(queue.workload()["busy"]) if queue is not None else set()
        busy.update(addr for addr, ws in self._scheduler.workers.items() if ws.processing)
        return busy

    def _jobs(self) -> dict[str, str]:
        """Worker name → its job's name (one job may start several workers: ``processes``)."""
        out = {}
        for job, spec in self.cluster.worker_spec.items():
            for suffix in spec.get("group", [""]):
                out[str(job) + suffix] = str(job)
        return out

    def _idle_jobs(self) -> dict[str, list[str]]:
        """Jobs all of whose workers are idle → those workers' names, oldest job first."""
        busy = self._busy()
        jobs = self._jobs()
        names: dict[str, list[str]] = {}
        blocked = set()
        for addr, ws in self._scheduler.workers.items():
            job = jobs.get(str(ws.name))
            if job is None:
                continue
            names.setdefault(job, []).append(str(ws.name))
            if addr in busy:
                blocked.add(job)
        return {job: sorted(workers) for job, workers in sorted(names.items()) if job not in blocked}

    async def workers_to_close(self, target: int) -> list[str]:
        plan = self.plan
        running = [str(ws.name) for ws in self._scheduler.workers.values() if str(ws.name) in plan]
        excess = len(running) - target
        out: list[str] = []
        for workers in self._idle_jobs().values():
            if excess < len(workers):
                break
            out.extend(workers)
            excess -= len(workers)
        return out

    async def scale_down(self, workers) -> None:
        if not workers:
            return
        idle = {w for ws in self._idle_jobs().values() for w in ws}
        arrived = {str(ws.name) for ws in self._scheduler.workers.values()}
        workers = [w for w in workers if w in idle or w not in arrived]  # or a job whose worker never came
        if not workers:
            return
        # Called directly (not over a comm): the scheduler marks them closing before this
        # coroutine first yields, so the queue cannot release a plan to them in between.
        retired = await self._scheduler.retire_workers(names=workers, remove=True, close_workers=True)
        gone = {str(info.get("name")) for info in (retired or {}).values()}
        # A worker holding data no other worker could take (someone's futures) stays: ending
        # its job would lose the data, and computing it again would bring a job back.
        workers = [w for w in workers if w in gone or w not in arrived]
        if workers:
            done = self.cluster.scale_down(workers)  # ends their jobs (scancel)
            if isawaitable(done):
                await done


class HecrasSLURMCluster(SLURMCluster):
    """A ``SLURMCluster`` for plans; ``adapt()`` sizes it by the plan queue (:class:`PlanAdaptive`)
    unless another ``Adaptive`` class is given."""

    ras_slots: int = 1
    _jobs_named = 0

    def _new_worker_name(self, worker_number):
        # Every job a name of its own: SpecCluster would give a new job the name of one that
        # ended, and the queue knows a machine by its worker's name (what its start-up sweep
        # reports, which workers a plan failed on).
        self._jobs_named += 1
        return f"{self._name}-{self._jobs_named - 1}"

    def adapt(self, *args, Adaptive: type[Adaptive] | None = None, **kwargs):
        """dask-jobqueue's ``adapt`` (``minimum_jobs``, ``maximum_jobs``, ...), by the plans
        waiting: :class:`PlanAdaptive`, looking every ``hecras.slurm.interval`` and releasing a
        worker idle for ``hecras.slurm.idle`` unless ``interval``/``wait_count`` say otherwise."""
        if Adaptive is None:
            Adaptive = PlanAdaptive
            earlier = getattr(self, "_adaptive_options", {})
            s = config.get("slurm", {}) or {}
            if "interval" not in kwargs and "interval" not in earlier:
                kwargs["interval"] = _seconds(s.get("interval", "2s"), "hecras.slurm.interval")
            if "wait_count" not in kwargs and "wait_count" not in earlier:
                every = _seconds(kwargs.get("interval", earlier.get("interval")), "interval")
                kwargs["wait_count"] = _wait_count(s.get("idle", "30s"), every)
        return super().adapt(*args, Adaptive=Adaptive, **kwargs)

    def adapt_to_plans(self, minimum_jobs: int | None = None, maximum_jobs: int | None = None, *,
                       interval: str | float | None = None, idle: str | float | None = None) -> PlanAdaptive:
        """Scale between ``minimum_jobs`` and ``maximum_jobs`` with the plans waiting (defaults:
        ``hecras.slurm.minimum-jobs``, ``maximum-jobs``, ``interval``, ``idle``). A worker
        idle for ``idle`` is released: its job ends."""
        s = config.get("slurm", {}) or {}
        minimum_jobs = int(s.get("minimum-jobs") or 0) if minimum_jobs is None else int(minimum_jobs)
        maximum_jobs = s.get("maximum-jobs") if maximum_jobs is None else maximum_jobs
        every = _seconds(interval if interval is not None else s.get("interval", "2s"), "hecras.slurm.interval")
        if maximum_jobs is not None and int(maximum_jobs) < minimum_jobs:
            raise ValueError(f"maximum_jobs ({maximum_jobs}) is less than minimum_jobs ({minimum_jobs})")
        kwargs: dict[str, Any] = {"minimum_jobs": minimum_jobs, "interval": every,
                                  "wait_count": _wait_count(idle if idle is not None else s.get("idle", "30s"), every)}
        if maximum_jobs is not None:
            kwargs["maximum_jobs"] = int(maximum_jobs)
        return self.adapt(**kwargs)


def _seconds(value, what: str) -> float:
    seconds = config.parse_duration(value, what)
    if seconds <= 0:
        raise ValueError(f"{what} must be more than 0 s, not {value!r}")
    return seconds


def _wait_count(idle, every: float) -> int:
    """Adaptive's rounds in a row a worker must be idle for ``idle`` (a duration)."""
    return max(1, math.ceil(config.parse_duration(idle, "hecras.slurm.idle") / every))


def worker_environment(settings: dict, prefix: str = "DASK_HECRAS") -> list[str]:
    """``export DASK_HECRAS__KEY=value`` lines for the job script: ``hecras.*`` settings for the
    workers, each value a Python literal (what Dask reads back from a variable)."""
    lines = []
    for key, value in (settings or {}).items():
        name = f"{prefix}__{str(key).upper().replace('-', '_')}"
        if isinstance(value, dict):
            lines += worker_environment(value, name)
        else:
            lines.append(f"export {name}={_shell_value(value)}")
    return lines


def _shell_value(value) -> str:
    """``value`` as the shell word Dask reads back as ``value``: bare where it reads the same
    (``12h``, ``False``), else its Python literal in double quotes."""
    text = str(value)
    if shlex.quote(text) == text and dask.config.interpret_value(text) == value \
            and type(dask.config.interpret_value(text)) is type(value):
        return text
    literal = repr(value)
    for char in '\\"$`':
        literal = literal.replace(char, "\\" + char)
    return f'"{literal}"'


def slurm_cluster(*, slots: int | None = None, scratch: str | None = None, worker_config: dict | None = None,
                  adaptive: bool | None = None, minimum_jobs: int | None = None, maximum_jobs: int | None = None,
                  **kwargs) -> HecrasSLURMCluster:
    """A dask-jobqueue ``SLURMCluster`` for HEC-RAS plans.

    - each job starts one worker (``processes=1`` unless ``jobqueue.slurm.processes`` or the
      argument says otherwise) with ``--resources RAS=<slots>`` and ``--preload dask_hecras.worker``;
    - its scratch (``hecras.scratch``) is ``scratch`` on the node, e.g. ``${TMPDIR:-/tmp}/...``:
      the job's shell expands it, so it must not point at a shared file system;
    - ``worker_config`` (``hecras.slurm.worker-config``) are ``hecras.*`` settings for the workers
      (``ras-exe``, ``timeout``, ...), exported as ``DASK_HECRAS__*`` in the job script;
    - the scheduler, in this process, has the plan queue and the ``/hecras`` dashboard page;
    - with ``adaptive`` (``hecras.slurm.adaptive``) jobs come and go with the plans waiting,
      between ``minimum_jobs`` and ``maximum_jobs`` (see :meth:`HecrasSLURMCluster.adapt_to_plans`).

    Any other argument goes to ``SLURMCluster`` (``cores``, ``memory``, ``queue``, ``account``,
    ``walltime``, ``job_extra_directives``, ``scheduler_options``, ...), which reads the rest
    from ``jobqueue.slurm.*``.
    """
    s = config.get("slurm", {}) or {}
    slots = int(s.get("slots", 1) if slots is None else slots)
    if slots < 1:
        raise ValueError(f"a Slurm worker needs at least one RAS slot, not {slots}")
    scratch = s.get("scratch") if scratch is None else scratch
    settings = dict(s.get("worker-config") or {}) if worker_config is None else dict(worker_config)
    name = kwargs.get("config_name") or "slurm"

    def jobqueue(key: str, default=None):
        return dask.config.get(f"jobqueue.{name}.{key}", default)

    if kwargs.get("processes") is None and jobqueue("processes") is None:
        kwargs["processes"] = 1  # one worker per job: its RAS slots are the job's
    args = list(kwargs.pop("worker_extra_args", None) or jobqueue("worker-extra-args") or [])
    if any(str(a) == "--resources" or str(a).startswith("--resources=") for a in args):
        raise ValueError("worker_extra_args gives --resources: the workers' RAS slots are hecras.slurm.slots "
                         "(slots=...), and adaptive scaling counts on them")
    args += ["--resources", f"{RESOURCE}={slots}"]
    if "dask_hecras.worker" not in args:
        args += ["--preload", "dask_hecras.worker"]
    kwargs["worker_extra_args"] = args
    prologue = list(kwargs.pop("job_script_prologue", None) or jobqueue("job-script-prologue") or [])
    if scratch:
        prologue.append(f'export DASK_HECRAS__SCRATCH="{scratch}"')  # expanded on the node
        prologue.append('mkdir -p "$DASK_HECRAS__SCRATCH"')
    prologue += worker_environment(settings)
    kwargs["job_script_prologue"] = prologue
    options = dict(kwargs.pop("scheduler_options", None) or jobqueue("scheduler-options") or {})
    preload = options.get("preload") or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    if "dask_hecras.scheduler" not in preload:
        preload.append("dask_hecras.scheduler")  # the plan queue and the /hecras page
    options["preload"] = preload
    kwargs["scheduler_options"] = options

    cluster = HecrasSLURMCluster(**kwargs)
    cluster.ras_slots = slots
    if adaptive is None:
        adaptive = bool(s.get("adaptive", True))
    if adaptive:
        cluster.adapt_to_plans(minimum_jobs, maximum_jobs)
    return cluster


__all__ = ["slurm_cluster", "HecrasSLURMCluster", "PlanAdaptive", "worker_environment"]
