"""The HEC-RAS project model: what a project and its plans are, and which files a plan needs.

Only text files are read here (``.prj``, plan, flow files and the ``.rasmap``), so a
project can be opened cheaply from a network share and its plans sent to workers.
"""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PureWindowsPath
from typing import Iterable, Iterator

from . import config


class ProjectError(ValueError):
    """A HEC-RAS project that cannot be used as it is on disk."""

    def __init__(self, project: Path | str, problem: str, missing: Iterable[Path] = ()):
        self.project = Path(project)
        self.problem = problem
        self.missing = sorted({Path(p) for p in missing})
        text = f"HEC-RAS project {self.project}: {problem}"
        if self.missing:
            text += "".join(f"\n  - {p}" for p in self.missing)
        super().__init__(text)

    def __reduce__(self):  # keep the fields when the error crosses a process boundary
        return (type(self), (self.project, self.problem, self.missing))


# --------------------------------------------------------------------------- text files


def text_encoding(windll=None) -> str:
    """The code page HEC-RAS's text files are in. HEC-RAS is not a Unicode program: it writes in
    Windows' ANSI code page (cp1252 in Western Europe and America, cp1250 in Central Europe,
    cp932 in Japan), and a path read in the wrong one is a false "missing file".

    ``hecras.text-encoding`` when set; else, on Windows, the system's ANSI code page (GetACP);
    else cp1252 (files made on a Western PC, read here).
    """
    import codecs

    chosen = config.get("text-encoding")
    if chosen:
        try:
            return codecs.lookup(str(chosen)).name
        except LookupError:
            raise ValueError(f"hecras.text-encoding: {chosen!r} is not an encoding Python knows "
                             "(a Windows code page is written cp1250, cp1252, cp932, ...)") from None
    if windll is None and sys.platform != "win32":
        return "cp1252"
    return _ansi_code_page(windll)


def _ansi_code_page(windll=None) -> str:
    import codecs
    import ctypes

    windll = windll or ctypes.windll
    get_acp = windll.kernel32.GetACP
    get_acp.argtypes, get_acp.restype = [], ctypes.c_uint32  # UINT
    try:
        return codecs.lookup(f"cp{get_acp()}").name  # 65001 (the "UTF-8 for non-Unicode programs" option): utf-8
    except LookupError:
        return "cp1252"


def read_text(path: Path, project: Path) -> str:
    """A HEC-RAS text file (CRLF line ends, the ANSI code page: see :func:`text_encoding`)."""
    try:
        return path.read_bytes().decode(text_encoding(), errors="replace")
    except FileNotFoundError:
        raise ProjectError(project, "a file it needs is missing:", [path]) from None
    except OSError as e:
        raise ProjectError(project, f"cannot read {path}: {e.strerror or e}") from None


def key_values(text: str) -> list[tuple[str, str]]:
    """``Key=value`` lines in file order (keys repeat, so not a dict)."""
    pairs = []
    for line in text.splitlines():
        if "=" in line and line[:1] not in (" ", "\t"):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def set_plan_lines(plan_file: Path, lines_by_key: dict[str, str]) -> None:
    """Set whole ``Key=value`` lines of a plan file (added before its end when absent), keeping
    its line ends and code page. Only ever called on a staged copy: the source project is never
    written."""
    raw = plan_file.read_bytes()
    text = raw.decode(text_encoding(), errors="surrogateescape")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    for key, line_text in lines_by_key.items():
        at = [i for i, line in enumerate(lines) if line.split("=", 1)[0].strip() == key]
        for i in at:
            lines[i] = line_text
        if not at:
            end = len(lines) - 1 if lines and lines[-1] == "" else len(lines)
            lines.insert(end, line_text)
    plan_file.write_bytes(newline.join(lines).encode(text_encoding(), errors="surrogateescape"))


def set_plan_cores(plan_file: Path, cores: int) -> None:
    """Set a plan file's ``UNET D1 Cores=`` and ``UNET D2 Cores=`` to ``cores`` (a staged copy)."""
    set_plan_lines(plan_file, {key: f"{key}={cores}" for key in ("UNET D1 Cores", "UNET D2 Cores")})


def set_plan_detailed(plan_file: Path) -> None:
    """Set a plan file's ``Write Detailed=`` to 1 (a staged copy), so that Ras.exe writes its
    computation messages (``NAME.bcoNN``) while it runs: they carry the simulation time reached."""
    set_plan_lines(plan_file, {"Write Detailed": "Write Detailed= 1 "})


def first(pairs: list[tuple[str, str]], key: str, default: str | None = None) -> str | None:
    for k, v in pairs:
        if k == key:
            return v
    return default


_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(SEC|MIN|HOUR|DAY|WEEK|MON|YEAR)S?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"SEC": 1, "MIN": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800, "MON": 30 * 86400,
                 "YEAR": 365 * 86400}  # months and years as HEC-DSS counts them, roughly


def parse_interval(text: str | None) -> timedelta | None:
    """``20SEC``, ``5MIN``, ``1HOUR``, ``1DAY`` as a timedelta; ``None`` if absent or unreadable."""
    if not text:
        return None
    m = _INTERVAL.match(text)
    if not m:
        return None
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2).upper()])


def parse_ras_datetime(date: str, hhmm: str = "0000") -> datetime:
    """``01JAN1999`` + ``1200`` (``2400`` is midnight at the end of the day)."""
    hhmm = hhmm.replace(":", "").strip() or "0000"
    day = datetime.strptime(date.strip().upper(), "%d%b%Y")
    return day + timedelta(hours=int(hhmm[:-2] or 0), minutes=int(hhmm[-2:]))


def parse_simulation_date(text: str | None) -> tuple[datetime | None, datetime | None]:
    if not text:
        return None, None
    parts = [p.strip() for p in text.split(",")]
    try:
        return parse_ras_datetime(parts[0], parts[1]), parse_ras_datetime(parts[2], parts[3])
    except (IndexError, ValueError):
        return None, None


def _check_times(text: str, pairs: list[tuple[str, str]], path: Path, project: Path) -> None:
    """A simulation window or interval HEC-RAS would not write (``02JNA2026``, ``20SCE``) is an
    error naming the file and line, not a plan read as having none."""
    wrong = []
    for key, example in (("Simulation Date", "01JAN2026,0000,05JAN2026,2400"), ("Computation Interval", "20SEC"),
                         ("Output Interval", "1HOUR"), ("Mapping Interval", "1HOUR")):
        value = first(pairs, key)
        if not value or not value.strip(" ,"):
            continue
        ok = None not in parse_simulation_date(value) if key == "Simulation Date" else parse_interval(value) is not None
        if not ok:
            line = next((n for n, t in enumerate(text.splitlines(), 1) if t.split("=", 1)[0].strip() == key), 0)
            wrong.append(f"{path.name} line {line}: {key}={value} is not what HEC-RAS writes (like {example})")
    if wrong:
        raise ProjectError(project, "; ".join(wrong))


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """HEC-RAS writes ``Program Version=6.50`` for 6.5 and ``6.31`` for 6.3.1;
    install folders are named ``6.5`` or ``6.3.1``. Both become (6, 5) / (6, 3, 1)."""
    if not text:
        return None
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    major, minor, patch = m.group(1), m.group(2), m.group(3)
    if patch is None and len(minor) > 1:  # "6.50" -> 6.5.0, "6.31" -> 6.3.1
        parts = [int(major)] + [int(c) for c in minor]
    else:
        parts = [int(major), int(minor)] + ([int(patch)] if patch else [])
    while len(parts) > 2 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


# --------------------------------------------------------------------------- references


_WIN_ABS = re.compile(r"^([A-Za-z]:[\\/]|\\\\|//)")


def _allowed_roots() -> list[Path]:
    return [Path(os.path.abspath(p)) for p in (config.get("allowed-roots") or [])]


def _find_case_insensitive(path: Path) -> Path:
    """HEC-RAS projects come from Windows, where ``terrain.HDF`` and ``Terrain.hdf``
    are the same file; on Linux find the one that exists."""
    if path.exists():
        return path
    parts = path.parts
    current = Path(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        candidate = current / part
        if not candidate.exists():
            try:
                matches = [c for c in current.iterdir() if c.name.lower() == part.lower()]
            except OSError:
                matches = []
            if not matches:
                return path.__class__(current, *parts[i:])
            candidate = matches[0]
        current = candidate
    return current


def resolve_reference(ref: str, base: Path, project: Path) -> Path:
    """A file reference as written in a HEC-RAS file (``.\\Terrain\\x.hdf``) as a path.

    References that leave the project folder are refused unless they lie under
    one of ``hecras.allowed-roots``.
    """
    ref = ref.strip().strip('"')
    project_dir = project.parent
    if _WIN_ABS.match(ref) and os.name != "nt":
        roots = _allowed_roots()
        raise ProjectError(
            project,
            f"reference {ref!r} is a Windows absolute path, which cannot be resolved here"
            + ("" if roots else "; keep referenced files inside the project folder"),
        )
    # Split as Windows does (either slash); a leading slash means the root, here as there.
    parts = ["/" if part == "\\" else part for part in PureWindowsPath(ref).parts]
    candidate = Path(os.path.normpath(base.joinpath(*parts)))
    candidate = _find_case_insensitive(candidate)
    inside = [project_dir.resolve()] + [r.resolve() for r in _allowed_roots()]
    real = Path(os.path.realpath(candidate))
    if not any(real == root or root in real.parents for root in inside):
        raise ProjectError(
            project,
            f"reference {ref!r} points outside the project folder ({real}); "
            "add its folder to hecras.allowed-roots to allow it",
        )
    return candidate


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class InputFile:
    """One file a plan needs, and what it is for (staging treats roles differently)."""

    path: Path
    role: str  # project, plan, geometry, geometry-hdf, flow, rasmap, projection, terrain, dss, restart
    # (and for HEC-RAS's Linux engine: prepared, prepared-hdf, hdf-inputs; see engines.linux)
    staged_as: str = ""  # its name in the run folder when not its own (beside where it would be)

    @property
    def read_only(self) -> bool:
        """HEC-RAS only reads these; the others it may write to during a run (a DSS file too:
        HEC-DSS opens every file for writing, and the plan's output goes into one)."""
        return self.role in ("terrain", "restart", "projection")


@dataclass(frozen=True)
class Plan:
    """One plan of a project: small and picklable, so it can be sent to a Dask worker."""

    id: str  # "p01"
    project: Path  # the .prj file
    title: str = ""
    short_id: str = ""
    program_version: str = ""
    geometry: str = ""  # "g01"
    flow: str = ""  # "u01" (unsteady) or "f01" (steady)
    start: datetime | None = None
    end: datetime | None = None
    computation_interval: timedelta | None = None
    output_interval: timedelta | None = None
    mapping_interval: timedelta | None = None
    d2_cores: int | None = None
    dss_file: str = ""  # the plan's "DSS File=": where an unsteady run writes its hydrographs ("dss": NAME.dss)

    @property
    def project_name(self) -> str:
        return self.project.stem

    @property
    def folder(self) -> Path:
        return self.project.parent

    @property
    def file(self) -> Path:
        return self.folder / f"{self.project_name}.{self.id}"

    @property
    def geometry_file(self) -> Path:
        return self.folder / f"{self.project_name}.{self.geometry}"

    @property
    def flow_file(self) -> Path:
        return self.folder / f"{self.project_name}.{self.flow}"

    @property
    def steady(self) -> bool:
        return self.flow.lower().startswith("f")

    @property
    def results_name(self) -> str:
        """The results HDF HEC-RAS writes: ``NAME.p01.hdf``."""
        return f"{self.project_name}.{self.id}.hdf"

    @property
    def key(self) -> str:
        """Names this plan in task keys and result folders: ``<project>-<plan>``."""
        return f"{self.project_name}-{self.id}"

    @property
    def output_dss(self) -> Path | None:
        """The DSS file an unsteady run writes its stage and flow hydrographs to (``None`` for a
        steady plan or none named). It lands with the results; references leaving the project
        folder are refused as for inputs (HEC-RAS would write into the source share)."""
        if self.steady or not self.dss_file:
            return None
        if self.dss_file.lower() == "dss":
            return _find_case_insensitive(self.folder / f"{self.project_name}.dss")
        return resolve_reference(self.dss_file, self.folder, self.project)

    @classmethod
    def from_file(cls, project: Path, plan_id: str) -> "Plan":
        path = _find_case_insensitive(project.parent / f"{project.stem}.{plan_id}")
        text = read_text(path, project)
        pairs = key_values(text)
        _check_times(text, pairs, path, project)
        start, end = parse_simulation_date(first(pairs, "Simulation Date"))
        cores = first(pairs, "UNET D2 Cores")
        return cls(
            id=plan_id,
            project=project,
            title=first(pairs, "Plan Title", "") or "",
            short_id=first(pairs, "Short Identifier", "") or "",
            program_version=first(pairs, "Program Version", "") or "",
            geometry=(first(pairs, "Geom File", "") or "").lower(),
            flow=(first(pairs, "Flow File", "") or "").lower(),
            start=start,
            end=end,
            computation_interval=parse_interval(first(pairs, "Computation Interval")),
            output_interval=parse_interval(first(pairs, "Output Interval")),
            mapping_interval=parse_interval(first(pairs, "Mapping Interval")),
            d2_cores=int(cores) if cores and cores.strip().lstrip("-").isdigit() else None,
            dss_file=(first(pairs, "DSS File", "") or "").strip(),
        )

    def inputs(self, memo: dict | None = None) -> list[InputFile]:
        """Every file the plan needs to run in another folder, with its role.

        Raises one :class:`ProjectError` listing every missing file. ``memo`` (a dict kept
        across calls) reads the project's RAS Mapper file once for all its plans.
        """
        files: list[InputFile] = []
        missing: list[Path] = []

        def add(path: Path, role: str, required: bool = True) -> None:
            if any(f.path == path for f in files):  # e.g. the plan's output DSS also holds its boundaries
                return
            if path.is_file():
                files.append(InputFile(path, role))
            elif required:
                missing.append(path)

        add(self.project, "project")
        add(self.file, "plan")
        if not self.geometry:
            raise ProjectError(self.project, f"plan {self.file.name} names no geometry (Geom File=)")
        if not self.flow:
            raise ProjectError(self.project, f"plan {self.file.name} names no flow file (Flow File=)")
        add(self.geometry_file, "geometry")
        # The preprocessed geometry HDF: HEC-RAS rebuilds it if absent, so not required.
        add(self.geometry_file.with_name(self.geometry_file.name + ".hdf"), "geometry-hdf", required=False)
        add(self.flow_file, "flow")
        if self.flow_file.is_file():
            for ref, role in _flow_references(read_text(self.flow_file, self.project)):
                add(resolve_reference(ref, self.folder, self.project), role)
        output = self.output_dss
        if output is not None:  # HEC-RAS adds to it (it may hold the boundary data too), or makes it
            add(output, "dss", required=False)
        key = ("rasmap", self.project)
        if memo is not None and key in memo:
            rasmap, references = memo[key]
        else:
            rasmap = _rasmap_path(self.project)
            references = list(_rasmap_references(rasmap, self.project)) if rasmap and rasmap.is_file() else []
            if memo is not None:
                memo[key] = rasmap, references
        if rasmap is not None and rasmap.is_file():
            add(rasmap, "rasmap")
            for path, role in references:
                add(path, role)
        elif rasmap is not None:
            missing.append(rasmap)
        if missing:
            raise ProjectError(self.project, f"plan {self.id} needs files that are missing:", missing)
        seen: set[Path] = set()
        unique = []
        for f in files:
            if f.path not in seen:
                seen.add(f.path)
                unique.append(f)
        return unique

    def input_files(self) -> list[Path]:
        """Every file the plan needs to run elsewhere (see :meth:`inputs`)."""
        return [f.path for f in self.inputs()]


def _flow_references(text: str) -> Iterator[tuple[str, str]]:
    """DSS and restart files an unsteady flow file uses."""
    pairs = key_values(text)
    use_restart = (first(pairs, "Use Restart", "0") or "0").strip()
    restart = first(pairs, "Restart Filename")
    if restart and use_restart not in ("0", "", "False"):
        yield restart, "restart"
    # Boundary blocks start at "Boundary Location="; a DSS file counts when the block uses DSS.
    dss_file, use_dss = None, False
    blocks: list[tuple[str | None, bool]] = []
    for key, value in pairs:
        if key == "Boundary Location":
            blocks.append((dss_file, use_dss))
            dss_file, use_dss = None, False
        elif key == "DSS File":
            dss_file = value or None
        elif key == "Use DSS":
            use_dss = value.strip().lower() in ("true", "-1")
    blocks.append((dss_file, use_dss))
    for dss, used in blocks:
        if dss and used:
            yield dss, "dss"
    if (first(pairs, "Precipitation Mode", "Disable") or "").lower() != "disable":
        for key, value in pairs:
            if key == "Met BC" and "DSS Filename=" in value:
                name = value.split("DSS Filename=", 1)[1].strip()
                if name:
                    yield name, "dss"


def _rasmap_path(project: Path) -> Path | None:
    pairs = key_values(read_text(project, project))
    named = first(pairs, "RASMap Filename")
    if named:
        return resolve_reference(named, project.parent, project)
    default = project.with_suffix(".rasmap")
    return default if default.exists() else None


_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


def _rasmap_references(rasmap: Path, project: Path) -> Iterator[tuple[Path, str]]:
    """The projection and terrain files named by a RAS Mapper file.

    A terrain is its ``.hdf`` plus the rasters beside it named after it
    (``Terrain.hdf``, ``Terrain.vrt``, ``Terrain.source.tif``), as RAS Mapper writes them.
    """
    try:
        root = ET.fromstring(rasmap.read_bytes())
    except (ET.ParseError, OSError) as e:
        raise ProjectError(project, f"cannot read RAS Mapper file {rasmap}: {e}") from None
    base = rasmap.parent
    projection = root.find("RASProjectionFilename")
    if projection is not None and projection.get("Filename"):
        yield resolve_reference(projection.get("Filename"), base, project), "projection"
    for terrains in root.iter("Terrains"):
        for layer in terrains.iter("Layer"):
            ref = layer.get("Filename")
            if not ref:
                continue
            hdf = resolve_reference(ref, base, project)
            yield hdf, "terrain"
            if hdf.parent.is_dir():
                stem = hdf.stem.lower()
                for sibling in sorted(hdf.parent.iterdir()):
                    name = sibling.name.lower()
                    if name.endswith(_RASTER_SUFFIXES) and (
                        name.startswith(stem + ".") or sibling.stem.lower() == stem
                    ):
                        yield sibling, "terrain"


# --------------------------------------------------------------------------- projects


class Project:
    """A HEC-RAS project (``NAME.prj``) and the plans it lists."""

    def __init__(self, path: str | os.PathLike):
        path = Path(os.path.abspath(path))
        if path.suffix.lower() != ".prj":
            raise ProjectError(path, "a HEC-RAS project is a .prj file")
        if not path.is_file():
            raise ProjectError(path, "the project file does not exist" if not path.exists() else "is not a file")
        text = read_text(path, path)
        pairs = key_values(text)
        if first(pairs, "Proj Title") is None:
            raise ProjectError(path, "is not a HEC-RAS project file (no 'Proj Title=' line; a projection file?)")
        lines = {line.strip() for line in text.splitlines()}
        self.path = path
        self.title = first(pairs, "Proj Title", "") or ""
        self.units = "SI" if "SI Units" in lines else "English" if "English Units" in lines else ""
        self.current_plan = (first(pairs, "Current Plan") or "").lower() or None
        ids = [v.strip().lower() for k, v in pairs if k == "Plan File" and v.strip()]
        missing = [path.parent / f"{path.stem}.{i}" for i in ids]
        missing = [p for p in missing if not _find_case_insensitive(p).is_file()]
        if missing:
            raise ProjectError(path, "plan files listed in the project are missing:", missing)
        self.plans = [Plan.from_file(path, i) for i in ids]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def folder(self) -> Path:
        return self.path.parent

    def plan(self, plan_id: str) -> Plan:
        """A plan by id (``"p03"``), short identifier or title."""
        wanted = plan_id.strip().lower()
        for p in self.plans:
            if wanted in (p.id, p.short_id.lower(), p.title.lower()):
                return p
        known = ", ".join(p.id for p in self.plans) or "none"
        raise KeyError(f"{self.path.name} has no plan {plan_id!r} (plans: {known})")

    def check(self, plans: Iterable[Plan] | None = None) -> None:
        """Raise one :class:`ProjectError` listing every missing file of the given plans."""
        missing: list[Path] = []
        problems: list[str] = []
        for plan in self.plans if plans is None else plans:
            try:
                plan.inputs()
            except ProjectError as e:
                missing.extend(e.missing)
                if not e.missing:
                    problems.append(e.problem)
        if problems:
            raise ProjectError(self.path, "; ".join(problems), missing)
        if missing:
            raise ProjectError(self.path, "files its plans need are missing:", missing)

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}, plans={[p.id for p in self.plans]})"
