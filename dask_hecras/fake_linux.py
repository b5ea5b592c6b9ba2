"""The fake engine as HEC-RAS's Linux engine: ``RasUnsteady`` and ``RasGeomPreprocess``.

``python -m dask_hecras.fake_linux RasUnsteady NAME.pNN.tmp.hdf xGG`` (the ``RasUnsteady``
script of :func:`dask_hecras.examples.make_linux_install` runs exactly this with the arguments
it was given), run in the folder of the prepared plan, computes into the prepared
``NAME.pNN.tmp.hdf`` with the fake engine's machinery (:mod:`dask_hecras.fake_ras`: the same
results, behaviours from ``fake-ras.json`` / ``$FAKE_RAS_CONFIG``, ``$FAKE_RAS_JOURNAL``) and
leaves it under that name, as the real engine does; the caller renames it. The older form
``RasUnsteady NAME.cGG bPP`` (6.1–6.4) is answered too. ``RasGeomPreprocess NAME.pNN.tmp.hdf
xGG`` writes the ``.x`` file.

Like the real programs it checks what it is given before computing:

- its libraries: each of ``LIBRARIES`` must be found in a folder of ``LD_LIBRARY_PATH`` (the
  fake install holds stand-ins named ``fake-<library>``, which nothing else loads); else the
  dynamic loader's message and exit code 127;
- the input HDF: missing or unreadable, exit 1; holding a ``Results`` group already (HEC-RAS
  computes only into a file without them), exit 1;
- ``NAME.bPP``, ``NAME.xGG`` (``NAME.cGG``), and ``NAME.ic.oPP`` when the plan starts from a
  restart file: a missing one is Intel Fortran's ``forrtl: severe (29): file not found``, exit 29.

It prints ``LABEL=`` lines while it starts and ``SIMTIME=<hours since the simulation start>``
lines while it computes, one at its start and about 20 more, evenly in simulated time (the format a public runner of the Linux engine parses: see
docs/fake-engine.md), then the run's messages, ending with ``Finished Unsteady Flow
Simulation`` on success. Being a fake, it also prints ``fake-linux:`` lines with the
environment it was given (library path, threads, stack), which tests read from the engine log.
The fake reads the plan's text files staged beside the HDF, which the real engine does not.
"""

from __future__ import annotations

import io
import os
import re
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import h5py
import numpy as np

from . import fake_ras

UNSTEADY, GEOMETRY_PREPROCESSOR = "RasUnsteady", "RasGeomPreprocess"
PROGRAMS = (UNSTEADY, GEOMETRY_PREPROCESSOR)
# One library per folder of the engine (libs, libs/mkl, libs/rhel_8), as the real engine needs them.
LIBRARIES = {"libs": "libifport.so.5", "libs/mkl": "libmkl_core.so.1", "libs/rhel_8": "libgfortran.so.5"}
MARKER = "fake-{}"  # the stand-in of a library in a fake install
STARTING = ("Reading Data", "Reading Boundary Conditions", "Initializing 2D Areas", "Computing initial conditions")
_PROGRESS = re.compile(r"^fake-ras: progress (\d+(?:\.\d+)?)%$")


def say(text: str) -> None:
    print(text, flush=True)


def missing_library(env: dict | None = None) -> str | None:
    """The first of ``LIBRARIES`` no folder of ``LD_LIBRARY_PATH`` holds (a stand-in of)."""
    env = os.environ if env is None else env
    folders = [Path(p) for p in (env.get("LD_LIBRARY_PATH") or "").split(":") if p]
    for library in LIBRARIES.values():
        if not any((folder / MARKER.format(library)).is_file() for folder in folders):
            return library
    return None


def _stack() -> str:
    try:
        import resource
    except ImportError:
        return "unknown"
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


def report_environment(program: str, args: list[str]) -> None:
    """What a test checks: how it was started, in ``fake-linux:`` lines."""
    env = os.environ
    say(f"fake-linux: {program} {' '.join(args)} in {Path.cwd()}")
    for key in ("LD_LIBRARY_PATH", "PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_STACKSIZE", "KMP_STACKSIZE"):
        say(f"fake-linux: {key}={env.get(key, '')}")
    say(f"fake-linux: stack {_stack()}")


def not_found(path: Path, unit: int) -> int:
    """Intel Fortran's runtime error for a file a program opens and cannot find."""
    print(f"forrtl: severe (29): file not found, unit {unit}, file {path}", flush=True)
    return 29


# --------------------------------------------------------------------------- the run


class LinuxRun(fake_ras.Run):
    """The fake engine's run as the Linux engine does it: into the prepared ``NAME.pNN.tmp.hdf``,
    which it keeps (``final`` is the tmp file: the caller renames it)."""

    current: "LinuxRun | None" = None

    def __init__(self, prj: Path, plan_file: Path, behaviour: fake_ras.Behaviour):
        super().__init__(prj, plan_file, behaviour)
        self.final = self.tmp
        self.text = ""
        self.detailed = False  # it reports progress on stdout (SIMTIME=); Ras.exe's NAME.bcoNN is not its
        LinuxRun.current = self

    def write_start(self) -> None:
        """The prepared file holds the inputs already: only mark the run as not finished."""
        with h5py.File(self.tmp, "a") as f:
            if self.behaviour.cells:  # one big mesh in place of the prepared geometry (benchmarks)
                if "Geometry" in f:
                    del f["Geometry"]
                self._write_synthetic_geometry(f)
            ev = f.require_group("Event Conditions")
            ev.attrs["Completed Successfully"] = fake_ras._b("False")
            ev.require_group("Steady" if self.plan.steady else "Unsteady")

    def messages(self, *args, **kwargs) -> str:
        self.text = super().messages(*args, **kwargs)
        return self.text

    def _compute_processes(self, compute_seconds: float) -> np.ndarray:
        rows = super()._compute_processes(compute_seconds)
        rows = rows[rows["Process"] != b"Ras.exe"]  # no Ras.exe on Linux: the engine alone
        computing = rows["Process"] == (b"Steady" if self.plan.steady else b"Unsteady") + b" Flow Computations"
        rows["Filename"][computing] = UNSTEADY.encode()
        rows["Arguments"][computing] = f"{self.tmp.name} x{self.plan.geometry[1:]}".encode()
        return rows


class _Progress(io.TextIOBase):
    """Stdout of the fake engine's compute, as the Linux engine prints it: each ``fake-ras:
    progress N%`` becomes a ``SIMTIME=`` line (hours since the simulation start), the fake's
    closing line is dropped (the messages follow), the rest passes."""

    def __init__(self, out, hours: float):
        self.out, self.hours, self.pending = out, hours, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            m = _PROGRESS.match(line)
            if m:
                self.out.write(f"SIMTIME={self.hours * float(m.group(1)) / 100:.4f}\n")
            elif not line.startswith("fake-ras: finished"):
                self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


@contextmanager
def _as_linux_engine():
    """fake_ras.compute with :class:`LinuxRun` in place of its Run (this process only)."""
    saved = fake_ras.Run
    fake_ras.Run = LinuxRun
    try:
        yield
    finally:
        fake_ras.Run = saved


def _run_messages(text: str) -> list[str]:
    """The engine's own part of a run's messages: from the computation to its verdict (the
    Computations Summary after it is Ras.exe's)."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("Performing ")), 0)
    end = next((i for i, line in enumerate(lines) if line.strip() == "Computations Summary"), len(lines))
    return [line for line in lines[start:end] if line.strip()]


# --------------------------------------------------------------------------- programs


def _inputs(args: list[str], program: str) -> tuple[str, str, str, bool] | None:
    """``(NAME, plan number, geometry number, modern)`` from the command line, or ``None``."""
    if len(args) == 2:
        m, x = re.fullmatch(r"(.+)\.p(\d+)\.tmp\.hdf", args[0], re.I), re.fullmatch(r"x(\d+)", args[1], re.I)
        if m and x:
            return m.group(1), m.group(2), x.group(1), True
        c, b = re.fullmatch(r"(.+)\.c(\d+)", args[0], re.I), re.fullmatch(r"b(\d+)", args[1], re.I)
        if c and b and program == UNSTEADY:
            return c.group(1), b.group(1), c.group(2), False
    return None


def _usage(program: str) -> int:
    forms = "NAME.pNN.tmp.hdf xGG" + (" | NAME.cGG bPP" if program == UNSTEADY else "")
    print(f"usage: {program} {forms}", flush=True)
    return 2


def _input_hdf(tmp: Path) -> tuple[bool, str]:
    """Whether the HDF can be computed into, and why not."""
    if not tmp.is_file():
        return False, f"ERROR: cannot open {tmp.name}: no such file"
    try:
        with h5py.File(tmp, "r") as f:
            if "Results" in f:
                return False, (f"ERROR: {tmp.name} already contains results (a Results group): HEC-RAS computes only "
                               "into a plan HDF without them")
            lacking = [g for g in ("Geometry", "Plan Data", "Event Conditions") if g not in f]
    except OSError as e:
        return False, f"ERROR: cannot open {tmp.name} as HDF5: {e}"
    if lacking:
        return False, f"ERROR: {tmp.name} holds no {', '.join(lacking)}: not prepared by HEC-RAS"
    return True, ""


def geometry_preprocess(args: list[str]) -> int:
    inputs = _inputs(args, GEOMETRY_PREPROCESSOR)
    if inputs is None:
        return _usage(GEOMETRY_PREPROCESSOR)
    name, pp, gg, _ = inputs
    folder = Path.cwd()
    tmp = folder / f"{name}.p{pp}.tmp.hdf"
    if not tmp.is_file():
        say(f"ERROR: cannot open {tmp.name}: no such file")
        return 1
    say("LABEL=Reading Geometry")
    say("LABEL=Computing hydraulic property tables")
    (folder / f"{name}.x{gg}").write_bytes(
        f"fake geometry run file of {name}.g{gg} (dask_hecras.fake_linux {GEOMETRY_PREPROCESSOR})\r\n".encode())
    fake_ras.journal("geometry", folder / f"{name}.p{pp}", "success")
    say("Finished Geometry Preprocessing")
    return 0


def unsteady(args: list[str]) -> int:
    from .project import Plan, first, key_values, read_text

    inputs = _inputs(args, UNSTEADY)
    if inputs is None:
        return _usage(UNSTEADY)
    name, pp, gg, modern = inputs
    folder = Path.cwd()
    tmp = folder / f"{name}.p{pp}.tmp.hdf"
    ok, why = _input_hdf(tmp)
    if not ok:
        say(why)
        return 1
    needed = [folder / f"{name}.b{pp}", folder / (f"{name}.x{gg}" if modern else f"{name}.c{gg}")]
    prj, plan_file = folder / f"{name}.prj", folder / f"{name}.p{pp}"
    if not prj.is_file() or not plan_file.is_file():
        say(f"fake-linux: the fake needs the plan's text files ({prj.name}, {plan_file.name}) beside {tmp.name}")
        return 2
    plan = Plan.from_file(prj, f"p{pp}")
    if plan.flow_file.is_file():
        use = (first(key_values(read_text(plan.flow_file, prj)), "Use Restart", "0") or "0").strip()
        if use not in ("0", "", "False"):
            needed.append(folder / f"{name}.ic.o{pp}")
    for unit, path in enumerate(needed, start=10):
        if not path.is_file():
            return not_found(path, unit)
    behaviour = fake_ras.load_behaviour(folder, f"p{pp}")
    for label in STARTING:
        say(f"LABEL={label}")
    hours = ((plan.end - plan.start).total_seconds() / 3600) if plan.start and plan.end else 24.0
    LinuxRun.current = None
    with _as_linux_engine(), redirect_stdout(_Progress(sys.stdout, hours)):
        code = fake_ras.compute(prj, plan_file, behaviour)
    run = LinuxRun.current
    if code == 0 and run is not None and run.text:
        for line in _run_messages(run.text):
            say(line)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in PROGRAMS:
        print(f"usage: python -m dask_hecras.fake_linux {{{','.join(PROGRAMS)}}} ARGS...", file=sys.stderr)
        return 2
    program, args = argv[0], argv[1:]
    library = missing_library()
    if library is not None:  # as the dynamic loader says it, before the program starts
        print(f"{program}: error while loading shared libraries: {library}: cannot open shared object file: "
              "No such file or directory", file=sys.stderr, flush=True)
        return 127
    report_environment(program, args)
    return geometry_preprocess(args) if program == GEOMETRY_PREPROCESSOR else unsteady(args)


if __name__ == "__main__":
    sys.exit(main())
