"""HEC-RAS's Linux compute engine (``RasUnsteady``), for plans prepared by HEC-RAS on Windows.

HEC-RAS 6.1 and later ship compute engines for Linux, not the program around them: a run's
inputs are written by Windows HEC-RAS when it computes the plan (``../shared/HECRAS.md`` §6).

- 6.5 and later: ``NAME.pPP.tmp.hdf`` (the plan's geometry, plan data and event conditions),
  ``NAME.bPP`` (boundary conditions and run settings), ``NAME.xGG`` (the geometry's run file)
  and, for a plan that starts from a restart file, ``NAME.ic.oPP``. The run is
  ``RasUnsteady NAME.pPP.tmp.hdf xGG`` in the run folder, preceded by
  ``RasGeomPreprocess NAME.pPP.tmp.hdf xGG`` when the ``.x`` file is missing; then
  ``NAME.pPP.tmp.hdf`` is renamed ``NAME.pPP.hdf``, the name HEC-RAS gives finished results.
- 6.1 to 6.4: ``RasUnsteady NAME.cGG bPP`` (``NAME.cGG``: the preprocessed geometry).

``PP`` is the plan's number, ``GG`` its geometry's (``Geom File=gGG``), as USACE's ras-runner
and ras-commander run it. A plan that has only ``NAME.pPP.hdf`` (computed once on Windows), or
a ``NAME.pPP.tmp.hdf`` that a run cut short left with results in it, gets its ``.tmp.hdf`` made
at staging from that file's input groups, never its ``Results`` (HEC-RAS will not compute into
an HDF that holds them). The source project is never written.

``NAME.ic.oPP`` rule: HEC-RAS writes it (the initial conditions of a run) beside every plan it
computes; it is staged whenever present, and required when the plan's unsteady flow file starts
the run from a file (``Use Restart=`` on), the one case in which its initial conditions come
from a file rather than from the flow data copied into ``NAME.bPP``.

``RasUnsteady`` exits 0 after a failed run too: success is read from the results HDF only
(``validation``), exactly as for Ras.exe. Its stdout (in the engine log) prints ``LABEL=`` lines
while it starts and ``SIMTIME=<hours since the simulation start>`` while it computes.

Installs: ``<root>/<version>/RasUnsteady`` (or ``<version>/bin/RasUnsteady``, the layout of
HEC's "EngineOnly" archive) with ``<version>/libs``, ``libs/mkl`` and ``libs/rhel_8``, under the
roots ``hecras.linux-roots``; or the one folder ``hecras.linux-engine``. Steady plans
(``RasSteady NAME.rPP``) are not run here: they need Ras.exe.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from .. import config
from ..staging import HDF_INPUTS
from ..project import InputFile, Plan, ProjectError, first, key_values, parse_version, read_text, text_encoding
from ..progress import SIMTIME, ProgressFile
from .base import Engine, EngineNotFound, EngineRun
from .ras import _pad, choose_install
from .runner import ProcessResult, run_process

UNSTEADY, GEOMETRY_PREPROCESSOR, STEADY = "RasUnsteady", "RasGeomPreprocess", "RasSteady"
LIBRARY_DIRS = ("libs", "libs/mkl", "libs/rhel_8")  # LD_LIBRARY_PATH, in this order
OLDEST = (6, 1)  # the first HEC-RAS with Linux engines named RasUnsteady (5.0.7 had rasUnsteady64)
MODERN = (6, 5)  # from here: RasUnsteady NAME.pPP.tmp.hdf xGG (before: RasUnsteady NAME.cGG bPP)
# What a run's input HDF keeps of a plan HDF (FFRD's create-ras-tmp): never a Results group.
INPUT_GROUPS = ("Geometry", "Plan Data", "Event Conditions")
INPUT_ATTRS = ("File Type", "File Version", "Projection", "Units System")
STACK = "2G"  # OMP_STACKSIZE and KMP_STACKSIZE: the solver's threads need large stacks
# A plan, flow or geometry text file changed this long after the prepared NAME.bPP was written
# makes the preparation stale (copies and checkouts leave files seconds apart).
STALE_SECONDS = 60.0
WHAT = "HEC-RAS's Linux engine"

# Roles of the prepared files (see staging): copied as they are, or (HDF_INPUTS) staged as a new
# NAME.pPP.tmp.hdf holding only the input groups of the HDF named.
PREPARED, PREPARED_HDF = "prepared", "prepared-hdf"


# --------------------------------------------------------------------------- installs


@dataclass(frozen=True, order=True)
class LinuxInstall:
    """One version of the Linux engine: ``folder`` holds ``libs/``, ``bin`` the programs."""

    version: tuple[int, ...]  # () when its folder names none (a configured hecras.linux-engine)
    folder: Path
    bin: Path = field(compare=False)

    @property
    def label(self) -> str:
        return ".".join(str(v) for v in self.version) if self.version else self.folder.name

    def program(self, name: str) -> Path | None:
        path = self.bin / name
        return path if path.is_file() and os.access(path, os.X_OK) else None

    @property
    def unsteady(self) -> Path:
        return self.bin / UNSTEADY

    @property
    def geometry_preprocessor(self) -> Path | None:
        return self.program(GEOMETRY_PREPROCESSOR)

    @property
    def steady(self) -> Path | None:
        return self.program(STEADY)

    @property
    def modern(self) -> bool:
        """Runs ``RasUnsteady NAME.pPP.tmp.hdf xGG`` (6.5 and later, or a version not known)."""
        return not self.version or _pad(self.version) >= _pad(MODERN)

    def library_dirs(self) -> list[Path]:
        return [self.folder / d for d in LIBRARY_DIRS]


def install_at(folder: str | os.PathLike) -> LinuxInstall | None:
    """The Linux engine in ``folder`` (``RasUnsteady`` in it or in its ``bin/``, ``libs/`` beside
    it), or ``None``. Its version is the first of the folder's name and its parents' two names
    that reads as one (``6.6``, ``7.0.1/Linux/Linux``), else unknown."""
    folder = Path(folder)
    for programs in (folder, folder / "bin"):
        exe = programs / UNSTEADY
        if exe.is_file() and os.access(exe, os.X_OK):
            break
    else:
        return None
    home = folder
    if not (home / "libs").is_dir() and folder.name.lower() == "bin" and (folder.parent / "libs").is_dir():
        home = folder.parent  # pointed at <version>/bin
    if not (home / "libs").is_dir():
        return None
    names = [home.name, home.parent.name, home.parent.parent.name]
    version = next((v for v in map(parse_version, names) if v is not None), ())
    return LinuxInstall(version, home, programs)


def linux_roots() -> list[Path]:
    return [Path(r) for r in (config.get("linux-roots") or [])]


def find_linux_installs(roots: Iterable[str | os.PathLike] | None = None) -> list[LinuxInstall]:
    """The Linux engines that would run here, oldest first: the folder ``hecras.linux-engine``
    when set (and usable), else every ``<root>/<version>/`` of ``roots`` (default
    ``hecras.linux-roots``) holding ``RasUnsteady`` and ``libs/``, version 6.1 or later. Each has
    ``.version``, ``.label`` and ``.folder``."""
    if roots is None:
        configured = config.get("linux-engine")
        if configured:
            one = install_at(configured)
            return [one] if one is not None else []
        roots = linux_roots()
    found: dict[tuple[int, ...], LinuxInstall] = {}
    for root in roots:
        try:
            children = sorted(Path(root).iterdir())
        except OSError:
            continue
        for folder in children:
            version = parse_version(folder.name)
            if version is None or _pad(version) < _pad(OLDEST) or not folder.is_dir() or version in found:
                continue
            install = install_at(folder)
            if install is not None:
                found[version] = replace(install, version=version)
    return sorted(found.values())


# --------------------------------------------------------------------------- prepared inputs


def _numbers(plan: Plan) -> tuple[str, str, str]:
    """The project's name, the plan's number and its geometry's: ``("Demo", "01", "01")``."""
    return plan.project_name, plan.id[1:], plan.geometry[1:]


def uses_restart(plan: Plan) -> bool:
    """The plan's unsteady flow file starts the run from a file (``Use Restart=`` on)."""
    if plan.steady or not plan.flow_file.is_file():
        return False
    use = (first(key_values(read_text(plan.flow_file, plan.project)), "Use Restart", "0") or "0").strip()
    return use not in ("0", "", "False")


_LISTINGS: dict[tuple[Path, int], dict[str, str]] = {}  # (folder, its mtime) → lower-case name → name


def _exists(path: Path) -> Path | None:
    """``path``, or the file of that name in another case (a project from Windows may have
    ``Demo.B01``), or ``None``. A folder's listing is read once while it is unchanged: a client
    checks every plan of a project on a share at submit."""
    if path.is_file():
        return path
    folder = path.parent
    try:
        key = (folder, folder.stat().st_mtime_ns)
        names = _LISTINGS.get(key)
        if names is None:
            names = {p.name.lower(): p.name for p in folder.iterdir()}
            if len(_LISTINGS) > 64:
                _LISTINGS.clear()
            _LISTINGS[key] = names
    except OSError:
        return None
    name = names.get(path.name.lower())
    return folder / name if name is not None and (folder / name).is_file() else None


@dataclass
class _Located:
    hdf: Path | None = None  # NAME.pPP.tmp.hdf, else NAME.pPP.hdf
    files: list[tuple[Path, str]] = field(default_factory=list)  # .b, .x or .c, .ic.o present: (path, name to stage as)
    missing: list[tuple[Path, str]] = field(default_factory=list)  # (path, what it is)


def _locate(plan: Plan, modern: bool, can_preprocess: bool) -> _Located:
    """Where the prepared files of ``plan`` are, and which are missing (existence only)."""
    name, pp, gg = _numbers(plan)
    folder = plan.folder
    out = _Located()
    tmp = folder / f"{name}.p{pp}.tmp.hdf"
    out.hdf = _exists(tmp) or _exists(folder / plan.results_name)
    if out.hdf is None:
        out.missing.append((tmp, f"or {plan.results_name}: the plan's geometry, plan data and event conditions"))
    wanted = [(folder / f"{name}.b{pp}", "boundary conditions and run settings", True)]
    if modern:
        wanted.append((folder / f"{name}.x{gg}", "the geometry's run file", not can_preprocess))
    else:
        wanted.append((folder / f"{name}.c{gg}", "the preprocessed geometry", True))
    wanted.append((folder / f"{name}.ic.o{pp}", "initial conditions: the plan starts from a restart file",
                   uses_restart(plan)))
    for path, what, required in wanted:
        found = _exists(path)
        if found is not None:
            out.files.append((found, path.name))  # staged under the name the engine opens: not DEMO.B01
        elif required:
            out.missing.append((path, what))
    return out


def _modern_for(version) -> bool:
    if isinstance(version, str) or version is None:
        version = parse_version(version)
    return not version or _pad(tuple(version)) >= _pad(MODERN)


def missing_inputs(plan: Plan, version: str | tuple[int, ...] | None = None) -> list[str]:
    """What ``plan`` lacks to run on the Linux engine ``version`` (default: the plan's own
    Program Version), one entry per file in words (``"Demo.b01 (boundary conditions ...)"``);
    empty when it can run there. Only looks for the files (cheap on a share): the worker checks
    their contents before staging. A steady plan always lacks something: it needs Ras.exe. A
    missing ``.x`` file (6.5+) is not counted: ``RasGeomPreprocess`` makes it."""
    if plan.steady:
        return [f"{plan.file.name} is a steady plan: {WHAT} runs unsteady plans only; steady plans need Ras.exe"]
    if not plan.geometry:
        return [f"{plan.file.name} names no geometry (Geom File=)"]
    try:
        located = _locate(plan, _modern_for(version if version is not None else plan.program_version), True)
    except ProjectError as e:
        return [e.problem]
    return [f"{path.name} ({what})" for path, what in located.missing]


def _how_to(plan: Plan, label: str, modern: bool) -> str:
    name, pp, gg = _numbers(plan)
    run_file = f"{name}.x{gg} (the geometry's run file)" if modern else f"{name}.c{gg} (the preprocessed geometry)"
    return (f"Open the project in HEC-RAS {label} on Windows (the version of the Linux engine) and compute plan "
            f"{plan.id} ('{plan.title}') there once (Run > Unsteady Flow Analysis > Compute, or Ras.exe -c "
            f"{plan.project.name} {plan.file.name}): HEC-RAS then writes {name}.b{pp} (boundary conditions and run "
            f"settings), {run_file}, {name}.p{pp}.tmp.hdf (the plan's geometry, plan data and event conditions; "
            f"renamed {plan.results_name} when the run ends) and {name}.ic.o{pp} (initial conditions) beside the "
            f"plan. Keep them with the project: the Linux engine reads them, not the plan's text files")


def _read_input_hdf(path: Path, plan: Plan, how: str) -> bool:
    """Check the HDF a run computes into; whether it holds a ``Results`` group."""
    import h5py

    from .. import hdf

    try:
        with h5py.File(path, "r") as f:
            lacking = [g for g in INPUT_GROUPS if g not in f]
            results = "Results" in f
            written_for = hdf.plan_information(f).get("Plan Filename", "")
    except OSError as e:
        if not path.exists():
            raise  # gone meanwhile (a share out of reach): another attempt may do better
        raise ProjectError(plan.project, f"{path.name} cannot be read as HDF5 ({e}): it is damaged or still being "
                                         f"written. {how}", [path]) from None
    if lacking:
        raise ProjectError(plan.project, (
            f"{path.name} holds no {' or '.join(lacking)} group: it is not a plan HDF that HEC-RAS prepared for "
            f"computing. {how}"))
    if written_for and written_for.lower() != plan.file.name.lower():
        raise ProjectError(plan.project, f"{path.name} was prepared for {written_for}, not for {plan.file.name}. {how}")
    return results


def _b_plan(path: Path) -> tuple[str, str] | None:
    """The plan title and short identifier a ``.b`` file was written for (the lines after
    ``Project Title, Plan Title and Plan ShortID``), if it says."""
    with open(path, "rb") as fh:
        head = fh.read(256 * 1024).decode(text_encoding(), errors="replace").splitlines()
    for i, line in enumerate(head):
        if line.strip().startswith("Project Title, Plan Title and Plan ShortID") and i + 3 < len(head):
            return head[i + 2].strip(), head[i + 3].strip()
    return None


def _same_plan(plan: Plan, title: str, short_id: str) -> bool:
    """A ``.b`` file's plan title and short identifier name ``plan`` (either one; a title may be
    cut short there)."""
    mine, short = plan.title.strip().lower(), plan.short_id.strip().lower()
    title, short_id = title.strip().lower(), short_id.strip().lower()
    return bool(title == mine or (short_id and short_id == short) or (len(title) >= 16 and mine.startswith(title))
                or not (title or short_id))


def prepared_inputs(plan: Plan, install: LinuxInstall | None = None) -> list[InputFile]:
    """The prepared files ``plan`` needs on ``install`` (``None``: by the plan's version), as
    inputs to stage; raises one :class:`ProjectError` naming every missing file (the plan's own
    missing inputs too) and how to make them, or saying why the ones present cannot be used
    (a steady plan, a damaged or foreign HDF, a ``.b`` of another plan, files older than the
    plan's text files)."""
    name, pp, gg = _numbers(plan)
    label = install.label if install is not None and install.version else (
        ".".join(map(str, parse_version(plan.program_version) or ())) or "(the Linux engine's version)")
    modern = install.modern if install is not None else _modern_for(plan.program_version)
    if plan.steady:
        raise ProjectError(plan.project, (
            f"plan {plan.id} ('{plan.title}') is a steady plan: dask-hecras runs only unsteady plans on {WHAT} "
            f"(its RasSteady is not supported); run it with Ras.exe (engine 'ras')"))
    can_preprocess = install is None or install.geometry_preprocessor is not None
    located = _locate(plan, modern, can_preprocess)
    how = _how_to(plan, label, modern)
    if located.missing:
        also, problems = [], []
        try:
            plan.inputs()
        except ProjectError as e:
            also, problems = e.missing, ([] if e.missing else [e.problem])
        what = "; ".join(f"{p.name} ({w})" for p, w in located.missing)
        no_pre = "" if can_preprocess or not modern else (
            f" ({install.label} at {install.folder} has no {GEOMETRY_PREPROCESSOR} to make the .x file)")
        text = (f"plan {plan.id} is not prepared for {WHAT} {label}: it needs files that Windows HEC-RAS writes "
                f"when it computes the plan, and these are missing: {what}{no_pre}. {how}.")
        if problems or also:
            text += " " + " ".join(problems) + (" The plan's own inputs are missing too." if also else "")
        raise ProjectError(plan.project, text, [p for p, _ in located.missing] + list(also))
    b = next(p for p, staged in located.files if staged == f"{name}.b{pp}")
    written_for = _b_plan(b)
    if written_for and not _same_plan(plan, *written_for):
        raise ProjectError(plan.project, (
            f"{b.name} was written for plan '{written_for[0]}' ({written_for[1]}), not for plan {plan.id} "
            f"('{plan.title}'): it belongs to another plan, or the plans were renumbered. {how}."))
    prepared_at = b.stat().st_mtime
    newer = [p for p in (plan.file, plan.flow_file, plan.geometry_file)
             if p.is_file() and p.stat().st_mtime > prepared_at + STALE_SECONDS]
    if newer:
        raise ProjectError(plan.project, (
            f"plan {plan.id}'s prepared files are older than the plan: {', '.join(p.name for p in newer)} changed "
            f"after HEC-RAS wrote {b.name}, so the Linux engine would compute the plan as it was before. {how}."))
    results = _read_input_hdf(located.hdf, plan, how + ".")
    tmp_name = f"{name}.p{pp}.tmp.hdf"
    if located.hdf.name.lower() == tmp_name.lower() and not results:
        inputs = [InputFile(located.hdf, PREPARED_HDF, staged_as=tmp_name)]
    else:  # a plan's results (or a run cut short): only its input groups, never its Results
        inputs = [InputFile(located.hdf, HDF_INPUTS, staged_as=tmp_name)]
    return inputs + [InputFile(p, PREPARED, staged_as=staged if staged != p.name else "")
                     for p, staged in located.files]


def make_tmp_hdf(source: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Write ``dest``, the HDF a Linux run computes into, from a plan HDF ``source``: its groups
    Geometry, Plan Data and Event Conditions and its root attributes File Type, File Version,
    Projection and Units System, nothing else (never its Results). Written under a temporary
    name and renamed, so ``dest`` is whole or absent."""
    import h5py

    source, dest = Path(source), Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        with h5py.File(source, "r") as src, h5py.File(part, "w") as out:
            for attr in INPUT_ATTRS:
                if attr in src.attrs:
                    out.attrs.create(attr, src.attrs[attr], dtype=src.attrs.get_id(attr).dtype)
            for group in INPUT_GROUPS:
                if group in src:
                    src.copy(src[group], out, name=group)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


# --------------------------------------------------------------------------- running


def threads(plan: Plan) -> int:
    """The solver's threads: ``hecras.cores-per-plan`` if set, else the plan's ``UNET D2 Cores``
    when above 0, else every core of the machine."""
    cores = config.cores_per_plan()
    if cores:
        return cores
    if plan.d2_cores and plan.d2_cores > 0:
        return plan.d2_cores
    import psutil

    return psutil.cpu_count() or os.cpu_count() or 1


def engine_environment(install: LinuxInstall, n_threads: int, base: dict | None = None) -> dict[str, str]:
    """The worker's environment with the engine's libraries first on ``LD_LIBRARY_PATH``, its
    folder first on ``PATH``, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and large thread stacks."""
    env = dict(os.environ if base is None else base)
    libs = ":".join(str(d) for d in install.library_dirs())
    env["LD_LIBRARY_PATH"] = libs + (f":{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else "")
    env["PATH"] = str(install.bin) + (f"{os.pathsep}{env['PATH']}" if env.get("PATH") else "")
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(n_threads)
    env["OMP_STACKSIZE"] = env["KMP_STACKSIZE"] = STACK
    return env


def _stack_limits() -> dict[int, int] | None:
    """``ulimit -s unlimited`` for the engine (up to the hard limit)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return {resource.RLIMIT_STACK: resource.RLIM_INFINITY}


def unsteady_command(install: LinuxInstall, plan: Plan) -> list[str]:
    name, pp, gg = _numbers(plan)
    if install.modern:
        return [str(install.unsteady), f"{name}.p{pp}.tmp.hdf", f"x{gg}"]
    return [str(install.unsteady), f"{name}.c{gg}", f"b{pp}"]


def geometry_command(install: LinuxInstall, plan: Plan) -> list[str]:
    name, pp, gg = _numbers(plan)
    return [str(install.geometry_preprocessor or install.bin / GEOMETRY_PREPROCESSOR), f"{name}.p{pp}.tmp.hdf",
            f"x{gg}"]


def _note(log: Path, text: str) -> None:
    with open(log, "ab") as out:
        out.write(f"[dask-hecras] {text}\n".encode())


def _finish_results(tmp: Path, final: Path, log: Path) -> None:
    """After a run that ended by itself: ``NAME.pPP.tmp.hdf`` becomes ``NAME.pPP.hdf`` when the
    engine wrote results into it (or wrote it unreadable: validation says so); one it left
    without results stays, and validation reports the run as cut short."""
    import h5py

    if not tmp.is_file():
        return
    try:
        with h5py.File(tmp, "r") as f:
            written = "Results" in f
    except OSError:
        written = True
    if written:
        os.replace(tmp, final)
        _note(log, f"renamed {tmp.name} to {final.name}")
    else:
        _note(log, f"{UNSTEADY} wrote no results into {tmp.name}; left as it is")


def _together(runs: list[ProcessResult]) -> ProcessResult:
    """The engine's processes as one result: the last one's ending, everyone's time."""
    last = runs[-1]
    return replace(last, seconds=sum(r.seconds for r in runs), paused_seconds=sum(r.paused_seconds for r in runs))


class LinuxEngine(Engine):
    """HEC-RAS's Linux engine. Which one runs comes from this machine's configuration only
    (``hecras.linux-engine``, else ``hecras.linux-roots`` and ``hecras.ras-version``)."""

    name = "linux"

    def __init__(self, folder: str | os.PathLike | None = None, roots: Iterable[str | os.PathLike] | None = None,
                 choice: str | None = None):
        configured = folder if folder is not None else config.get("linux-engine")
        self.folder = Path(configured) if configured else None
        self.roots = None if roots is None else [Path(r) for r in roots]
        self.choice = choice if choice is not None else str(config.get("ras-version") or "plan")

    def installs(self) -> list[LinuxInstall]:
        if self.folder is not None:
            one = install_at(self.folder)
            return [one] if one is not None else []
        return find_linux_installs(self.roots if self.roots is not None else linux_roots())

    def available(self) -> str:
        """What would run here, in words; ``EngineNotFound`` (saying where it looked) if nothing."""
        if self.folder is not None:
            return f"{WHAT} {self._configured().label} at {self.folder} (hecras.linux-engine)"
        labels = ", ".join(i.label for i in self._checked_installs())
        return f"{WHAT} (installed here: {labels}; the version for each plan: hecras.ras-version={self.choice})"

    def _configured(self) -> LinuxInstall:
        one = install_at(self.folder)
        if one is None:
            raise EngineNotFound(
                f"hecras.linux-engine {self.folder} on {socket.gethostname()} holds no {UNSTEADY} (in it or in its "
                "bin/) with a libs/ folder beside it")
        return one

    def _checked_installs(self) -> list[LinuxInstall]:
        installs = self.installs()
        if not installs:
            roots = self.roots if self.roots is not None else linux_roots()
            looked = ", ".join(str(r) for r in roots) or "no folders: hecras.linux-roots is empty"
            raise EngineNotFound(
                f"{WHAT} is not installed on {socket.gethostname()} (looked in {looked}); install it as "
                f"<folder>/<version>/{UNSTEADY} with its libs/ and list the folder in hecras.linux-roots, or set "
                "hecras.linux-engine")
        return installs

    def install_for(self, plan: Plan) -> LinuxInstall:
        """The Linux engine that runs ``plan`` here (its version chosen as for Ras.exe)."""
        if self.folder is not None:
            return self._configured()
        try:
            return choose_install(self._checked_installs(), plan.program_version, self.choice, what=WHAT)
        except EngineNotFound as e:
            host = socket.gethostname()
            raise EngineNotFound(str(e) if host in str(e) else f"{host}: {e}") from None

    def extra_inputs(self, plan: Plan) -> list[InputFile]:
        """The plan's prepared files, checked before anything is copied: ``EngineNotFound`` when no
        Linux engine can run it here, one ``ProjectError`` for what the plan lacks."""
        return prepared_inputs(plan, self.install_for(plan))

    def command(self, prj: Path, plan_file: Path, plan: Plan) -> list[str]:
        return unsteady_command(self.install_for(plan), plan)

    def environment(self, plan: Plan) -> dict[str, str]:
        return engine_environment(self.install_for(plan), threads(plan))

    def progress_file(self, plan: Plan, run_dir: Path, log: Path) -> ProgressFile:
        """The engine's ``SIMTIME=`` lines (hours since the simulation start), in its log."""
        return ProgressFile(log, SIMTIME, plan.start)

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
        """Run the plan staged beside ``prj`` (with its prepared files: see :meth:`extra_inputs`):
        ``RasGeomPreprocess`` first when the ``.x`` file is missing, then ``RasUnsteady``, both
        within ``timeout`` and killed whole on a stop; then the rename of the results file."""
        install = self.install_for(plan)
        if plan.steady:
            raise ProjectError(plan.project, f"plan {plan.id} is a steady plan: {WHAT} runs unsteady plans only")
        folder = prj.parent
        name, pp, gg = _numbers(plan)
        tmp, final = folder / f"{name}.p{pp}.tmp.hdf", folder / plan.results_name
        if not tmp.is_file():
            raise ProjectError(plan.project, f"{tmp.name} is not in the run folder {folder}: the plan was staged "
                                             "without its prepared files (see LinuxEngine.extra_inputs)")
        if _holds_results(tmp):
            raise ProjectError(plan.project, f"{tmp} already holds results: {UNSTEADY} will not compute into it")
        self.set_cores(plan, plan_file)
        env = engine_environment(install, threads(plan))
        limits = _stack_limits()
        runs: list[ProcessResult] = []

        def left() -> float | None:  # of the time limit, for the next process (time paused is not counted)
            return None if not timeout else max(timeout - sum(r.seconds - r.paused_seconds for r in runs), 0.001)

        if install.modern and _exists(folder / f"{name}.x{gg}") is None:
            command = geometry_command(install, plan)
            if install.geometry_preprocessor is None:
                raise ProjectError(plan.project, f"{name}.x{gg} is missing and {install.folder} has no "
                                                 f"{GEOMETRY_PREPROCESSOR} to make it")
            runs.append(run_process(command, cwd=folder, log=log, timeout=left(), cancel=cancel, env=env,
                                    on_start=on_start, limits=limits))
            if runs[-1].killed or _exists(folder / f"{name}.x{gg}") is None:
                if not runs[-1].killed:
                    _note(log, f"{GEOMETRY_PREPROCESSOR} made no {name}.x{gg}: {UNSTEADY} not started")
                return EngineRun(self.name, tuple(command), _together(runs))
        command = unsteady_command(install, plan)
        runs.append(run_process(command, cwd=folder, log=log, timeout=left(), cancel=cancel, env=env,
                                on_start=on_start, limits=limits))
        if not runs[-1].killed:
            _finish_results(tmp, final, log)
        return EngineRun(self.name, tuple(command), _together(runs))


def _holds_results(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "Results" in f
    except OSError:
        return False
