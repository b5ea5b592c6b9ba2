"""The fake engine: Ras.exe's command line and results files, on any OS.

``python -m dask_hecras.fake_ras -c PROJECT.prj PROJECT.pNN`` (or ``fake-ras``)
reads the plan, its geometry and flow, writes ``NAME.pNN.tmp.hdf`` while it runs,
renames it to ``NAME.pNN.hdf`` at the end and writes ``NAME.pNN.computeMsgs.txt``.
The HDF has HEC-RAS 6.x's layout (see docs/fake-engine.md). Like Ras.exe, the
process you start does the bookkeeping and a helper process computes, so killing
only the first one leaves the helper running.

Per-plan behaviour comes from ``fake-ras.json`` in the project folder (or the file
named by ``$FAKE_RAS_CONFIG``)::

    {"p01": {"seconds": 2.5, "outcome": "success"}, "p02": {"seconds": 1, "outcome": "unstable"}}

Outcomes: success, unstable, crash, hang, stall, no-results, truncated (``hang`` stops before
any progress, like Ras.exe behind a dialog at start-up; ``stall`` computes to 40% of the
simulation window and stops moving there, never exiting). A plan may also set
``cells`` and ``steps`` to write one large mesh (for benchmarks), and ``post-seconds``: how
long the front process goes on after the results file is final (Ras.exe's post-processing,
such as RAS Mapper's stored maps), when killing the engine no longer loses the results.

The water is computed, not drawn at random (see :mod:`dask_hecras.fake_hydraulics`, which reads
the project's meshes, lines and hydrographs and says how the water behaves): the flow file's inflow
hydrographs raise a flood level that slopes down each mesh's valley, so a bigger storm wets more
cells, a plan titled "Dam break ..." floods most of the mesh, dry cells keep their water surface
at the bed, and boundary-condition lines carry the hydrograph in (stage and flow per line and per
face, in HEC-RAS 6.6's layout). A plan asks for additional 2D output as HEC-RAS 6.x plans do,
one ``HDF Additional Output Variable=<name>`` line each; the fake writes ``Cell Velocity``
(``Cell Velocity - Velocity X|Y``), ``Cell Hydraulic Depth`` and ``Face Shear Stress``.

Progress, as Ras.exe reports it: when the plan file says ``Write Detailed= 1`` (plans say 0
unless set), the helper writes its computation messages to ``NAME.bcoNN`` in the run folder
while it computes: a header, ``Starting Unsteady Flow Computations``, then
:data:`PROGRESS_STEPS` + 1 lines carrying the simulation time reached (``01JAN2026  06:00:00``,
evenly spaced in simulated time, in step with the compute time spent, each written whole as it
is reached), then ``Finished Unsteady Flow Simulation`` (or the went-unstable lines). On stdout
the same steps are ``fake-ras: progress N%`` lines (N of the window, possibly fractional),
which :mod:`dask_hecras.fake_linux` turns into ``SIMTIME=`` lines. The ``.bco`` line format
follows public runners, not a real file: see docs/fake-engine.md.

With ``$FAKE_RAS_JOURNAL`` set, the helper appends one line to that file when it starts
computing and one when its results are final (``start``/``end``, the plan, the outcome, the
folder, its pid): tests count from it how often an engine really ran, and to what end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

from .fake_hydraulics import (
    FT,
    BoundaryLine,
    FlowBoundary,
    G,
    Mesh,
    MeshFlow,
    Storm,
    additional_outputs,
    big_mesh,
    profile_names,
    read_boundary_lines,
    read_cross_sections,
    read_flow_boundaries,
    read_meshes,
    read_reference,
)

VERSION = "6.6"
FILE_VERSION = "HEC-RAS 6.6 September 2024"
OUTCOMES = ("success", "unstable", "crash", "hang", "stall", "no-results", "truncated")
PROGRESS_STEPS = 20  # progress lines over a run (the .bco's time lines, stdout's progress lines), after the first
STALL_STEP = PROGRESS_STEPS * 2 // 5  # where a "stall" run stops moving: 40% of the window
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
BASE = "Results/Unsteady/Output/Output Blocks/Base Output"
STEADY_BASE = "Results/Steady/Output/Output Blocks/Base Output/Steady Profiles"


def text_encoding() -> str:
    """The code page HEC-RAS writes its text in, on this machine (see ``project.text_encoding``)."""
    from .project import text_encoding as machine_code_page

    return machine_code_page()


# --------------------------------------------------------------------------- behaviour


@dataclass(frozen=True)
class Behaviour:
    seconds: float
    outcome: str = "success"
    cells: int | None = None
    steps: int | None = None
    post_seconds: float = 0.0


def load_behaviour(project_dir: Path, plan_id: str) -> Behaviour:
    """This plan's entry of fake-ras.json; plans not listed succeed quickly."""
    from . import config

    default_seconds = float(config.get("fake-ras.default-seconds", 0.2))
    candidates = [project_dir / "fake-ras.json"]
    if os.environ.get("FAKE_RAS_CONFIG"):
        candidates.append(Path(os.environ["FAKE_RAS_CONFIG"]))
    for path in candidates:
        if not path.is_file():
            continue
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"fake-ras: cannot read {path}: {e}")
        entry = table.get(plan_id) if isinstance(table, dict) else None
        if entry is None:
            break
        outcome = str(entry.get("outcome", "success"))
        if outcome not in OUTCOMES:
            raise SystemExit(f"fake-ras: {path}: plan {plan_id}: unknown outcome {outcome!r} (one of {', '.join(OUTCOMES)})")
        return Behaviour(
            seconds=float(entry.get("seconds", default_seconds)),
            outcome=outcome,
            cells=int(entry["cells"]) if entry.get("cells") else None,
            steps=int(entry["steps"]) if entry.get("steps") else None,
            post_seconds=float(entry.get("post-seconds", 0.0)),
        )
    return Behaviour(seconds=default_seconds)


# --------------------------------------------------------------------------- text


def _b(text: str) -> np.bytes_:
    return np.bytes_(text.encode(text_encoding(), errors="replace"))


def _stamp(t: datetime, upper: bool = True, ms: bool = False) -> str:
    s = t.strftime("%d%b%Y %H:%M:%S")
    s = s.upper() if upper else s
    return s + ":000" if ms else s


def _bco_stamp(t: datetime) -> str:
    """A simulation time as the public ``.bco`` readers expect it: ``01JAN2026  06:20:00``
    (month names in English whatever the machine's locale)."""
    return f"{t.day:02d}{_MONTHS[t.month - 1]}{t.year:04d}  {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _percent(value: float) -> str:
    """``5``, ``2.9167``: a progress percentage without an exponent or trailing zeros."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _task_time(seconds: float) -> str:
    """The Computations Summary's time column: '<1', seconds, m:ss or h:mm:ss."""
    if seconds < 1:
        return "<1"
    s = int(round(seconds))
    if s < 60:
        return f"{s:8d}"
    if s < 3600:
        return f"{s // 60:5d}:{s % 60:02d}"
    return f"{s // 3600:2d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --------------------------------------------------------------------------- the run


class Run:
    """One fake compute of one plan, in the folder of the ``.prj`` it was given."""

    def __init__(self, prj: Path, plan_file: Path, behaviour: Behaviour):
        from .project import Plan, key_values, read_text

        self.prj = prj
        self.plan = Plan.from_file(prj, plan_file.suffix.lstrip(".").lower())
        self.behaviour = behaviour
        self.folder = prj.parent
        self.name = prj.stem
        prj_text = read_text(prj, prj)
        self.si = any(line.strip() == "SI Units" for line in prj_text.splitlines())
        self.project_title = dict(key_values(prj_text)).get("Proj Title", "")
        self.final = self.folder / f"{self.name}.{self.plan.id}.hdf"
        self.tmp = self.folder / f"{self.name}.{self.plan.id}.tmp.hdf"
        self.messages_file = self.folder / f"{self.name}.{self.plan.id}.computeMsgs.txt"
        geometry_hdf = Path(str(self.plan.geometry_file) + ".hdf")
        self.geometry_hdf = geometry_hdf
        plan_text = read_text(plan_file, prj)
        self.additional = additional_outputs(plan_text)
        # Ras.exe writes its computation messages (NAME.bcoNN) only when the plan asks for them.
        self.detailed = _write_detailed(plan_text)
        self.bco = self.folder / f"{self.name}.bco{self.plan.id[1:]}"
        self._bco_rng = np.random.default_rng(zlib.crc32(f"{prj.stem}|{self.plan.id}|bco".encode()))  # not self.rng: results stay as they were
        big = bool(behaviour.cells)  # the geometry's reference and boundary lines lie in meshes the big one replaces
        if big:
            mesh, self.bc_lines = big_mesh(behaviour.cells)
            self.meshes = [mesh]
        else:
            self.meshes = read_meshes(geometry_hdf)
            self.bc_lines = read_boundary_lines(geometry_hdf)
        geometry_text = self.plan.geometry_file.read_text(encoding=text_encoding(), errors="replace")
        self.cross_sections = read_cross_sections(geometry_text)
        self.reflines = [] if big else read_reference(geometry_hdf, "Reference Lines")
        self.refpoints = [] if big else read_reference(geometry_hdf, "Reference Points")
        self.flow_text = self.plan.flow_file.read_text(encoding=text_encoding(), errors="replace")
        seed = zlib.crc32(f"{self.name}|{self.plan.id}|{self.plan.title}|{self.plan.flow}".encode())
        self.rng = np.random.default_rng(seed)
        self.start = self.plan.start or datetime(2000, 1, 1)
        self.end = self.plan.end or self.start + timedelta(days=1)
        interval = self.plan.output_interval or self.plan.mapping_interval or timedelta(hours=1)
        steps = behaviour.steps or int((self.end - self.start) / interval) + 1
        self.steps = max(2, steps)
        self.span = (self.end - self.start).total_seconds()
        self.times_days = np.linspace(0.0, self.span / 86400.0, self.steps)
        self.length_unit = "m" if self.si else "ft"
        self.velocity_unit = "m/s" if self.si else "ft/s"
        self.flow_unit = "m3/s" if self.si else "cfs"
        self.started_wall = datetime.now()
        # The storm: the plan's inflow hydrographs; a dam-break plan adds a breach wave, a
        # roughness plan ("Roughness +20%") deepens (or lowers) the water as Manning does.
        title = self.plan.title.lower()
        self.dam_break = "dam break" in title or "dam-break" in title
        m = re.search(r"roughness\s*([+-])\s*(\d+(?:\.\d+)?)\s*%", title)
        self.roughness = 1.0 + (1 if m.group(1) == "+" else -1) * float(m.group(2)) / 100 if m else 1.0
        self.boundaries = [] if self.plan.steady else read_flow_boundaries(self.flow_text)
        self.storm = Storm(self.boundaries, self.span, self.si, self.roughness, self.dam_break)
        self.peak = self.storm.peak  # depth scale

    # --- values (the storm's: see fake_hydraulics.Storm) --------------------------------

    def inflow(self, seconds) -> np.ndarray:
        return self.storm.inflow(seconds)

    def depth_of_flow(self, flow) -> np.ndarray:
        return self.storm.depth_of_flow(flow)

    def flow_of_depth(self, depth) -> np.ndarray:
        return self.storm.flow_of_depth(depth)

    def storm_depth(self, seconds) -> np.ndarray:
        return self.storm.storm_depth(seconds)

    def breach_wave(self, seconds) -> np.ndarray:
        return self.storm.breach_wave(seconds)

    def hydrograph(self) -> np.ndarray:
        """The inflow at the output times, as a fraction of its peak."""
        q = self.inflow(self.times_days * 86400.0)
        return q / max(float(self.storm.inflow_q.max()), 1e-9)

    def depth_shape(self, n: int, salt: int) -> np.ndarray:
        r = np.random.default_rng(zlib.crc32(f"{self.plan.id}|{salt}".encode()))
        return r.uniform(0.2, 1.0, n)

    # --- files ----------------------------------------------------------------------

    def projection(self) -> str:
        """The project's coordinate system as HEC-RAS puts it on the results: the geometry
        HDF's ``Projection``, else the projection file the project's RAS Mapper file names."""
        if self.geometry_hdf.is_file():
            with h5py.File(self.geometry_hdf, "r") as g:
                value = g.attrs.get("Projection")
                if value is not None:
                    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        for rasmap in sorted(self.folder.glob("*.rasmap")):
            m = re.search(r'<RASProjectionFilename\s+Filename="([^"]+)"', rasmap.read_text(errors="replace"))
            if m:
                candidate = self.folder.joinpath(*[p for p in re.split(r"[\\/]", m.group(1)) if p not in ("", ".")])
                if candidate.is_file():
                    return candidate.read_text(errors="replace").strip()
        return ""

    def write_start(self) -> None:
        """What HEC-RAS has written into the tmp.hdf by the time the solver starts."""
        with h5py.File(self.tmp, "w") as f:
            f.attrs["File Type"] = _b("HEC-RAS Results")
            f.attrs["File Version"] = _b(FILE_VERSION)
            projection = self.projection()
            if projection:
                f.attrs["Projection"] = _b(projection)
            f.attrs["Units System"] = _b("SI Units" if self.si else "US Customary")
            if self.geometry_hdf.is_file() and not self.behaviour.cells:
                with h5py.File(self.geometry_hdf, "r") as g:
                    if "Geometry" in g:
                        g.copy("Geometry", f)
            else:
                self._write_synthetic_geometry(f)
            info = f.require_group("Plan Data/Plan Information")
            p = self.plan
            for key, value in {
                "Plan Name": p.title, "Plan Title": p.title, "Plan ShortID": p.short_id,
                "Plan Filename": p.file.name, "Geometry Filename": p.geometry_file.name,
                "Flow Filename": p.flow_file.name, "Project Filename": str(self.prj),
                "Project Title": self.project_title,
                "Simulation Start Time": _stamp(self.start, upper=False),
                "Simulation End Time": _stamp(self.end, upper=False),
                "Time Window": f"{_stamp(self.start, upper=False)} to {_stamp(self.end, upper=False)}",
                "Base Output Interval": _interval_text(self.plan.output_interval),
                "Computation Time Step Base": _interval_text(self.plan.computation_interval),
            }.items():
                info.attrs[key] = _b(value)
            params = f.require_group("Plan Data/Plan Parameters")
            params.attrs["HDF Compression"] = np.int32(1)
            ev = f.require_group("Event Conditions")
            ev.attrs["Completed Successfully"] = _b("False")
            ev.require_group("Steady" if p.steady else "Unsteady")

    def _write_synthetic_geometry(self, f: h5py.File) -> None:
        """The geometry of meshes made up here (``--cells``): a real, regular mesh."""
        from .examples import write_2d_flow_areas, write_boundary_lines

        made = [m.geometry for m in self.meshes if m.geometry is not None]
        if not made:
            return
        g = f.require_group("Geometry")
        write_2d_flow_areas(g, [mesh for mesh, _ in made])
        lines = [line for _, mesh_lines in made for line in mesh_lines]
        if lines:
            write_boundary_lines(g, lines)
        for m in self.meshes:  # written: the arrays the water needs stay on the mesh, the others go
            m.geometry = None

    def write_unsteady_results(self, f: h5py.File, until_step: int | None = None) -> dict:
        """Time series and their summaries; returns per-run figures for the messages."""
        n = self.steps if until_step is None else until_step
        hydro = self.hydrograph()[:n]
        times = self.times_days[:n]
        ts = f.require_group(f"{BASE}/Unsteady Time Series")
        stamps = [self.start + timedelta(days=float(d)) for d in times]
        ts.create_dataset("Time", data=times)
        ts.create_dataset("Time Date Stamp", data=np.array([_stamp(t).encode() for t in stamps], dtype="S19"))
        ts.create_dataset("Time Date Stamp (ms)", data=np.array([_stamp(t, ms=True).encode() for t in stamps], dtype="S23"))
        ts.create_dataset("Time Step", data=np.full(n, (self.plan.computation_interval or timedelta(seconds=20)).total_seconds(), "float32"))
        worst = (0.0, "", 0)
        self.flows = {mesh.name: MeshFlow(mesh, self.storm) for mesh in self.meshes}
        for i, mesh in enumerate(self.meshes):
            worst = max(worst, self._write_mesh(f, ts, mesh, self.flows[mesh.name], times), key=lambda w: w[0])
        self._write_boundary_lines(ts, times)
        if self.cross_sections:
            self._write_cross_sections_unsteady(f, ts, hydro)
        for kind, items, names in (
            ("Reference Lines", self.reflines, ("Flow", "Water Surface")),
            ("Reference Points", self.refpoints, ("Velocity", "Water Surface")),
        ):
            if items:
                g = ts.require_group(kind)
                g.create_dataset("Name", data=np.array([f"{name}|{mesh}".encode() for name, mesh, _ in items]))
                for var in names:
                    columns = [self._reference_series(var, mesh, cell, times, hydro) for _, mesh, cell in items]
                    d = g.create_dataset(var, data=np.column_stack(columns).astype("float32"))
                    d.attrs["Units"] = _b(self._unit(var))
        return {"worst": worst}

    def _reference_series(self, var: str, mesh_name: str, cell: int, times: np.ndarray, hydro: np.ndarray) -> np.ndarray:
        """A reference point follows the water of the cell it lies in; a reference line (no
        cell) that of the cell halfway down its mesh, and carries the flood's flow there."""
        flow = getattr(self, "flows", {}).get(mesh_name)
        if flow is None:
            return hydro * self.peak * (100.0 if var == "Flow" else 1.0)
        mesh = flow.mesh
        if cell < 0 or cell >= mesh.cell_count:
            lags = flow.lag[: mesh.cell_count]
            cell = int(np.argmin(np.abs(lags - np.median(lags))))
        seconds = times * 86400.0
        depth = flow.depth(seconds, [cell])[:, 0]
        if var == "Water Surface":
            return mesh.bed[cell] + depth
        if var == "Velocity":
            return flow.speed(depth)
        return flow.channel_flow(seconds - flow.lag[cell])

    def _unit(self, var: str) -> str:
        return {"Flow": self.flow_unit, "Velocity": self.velocity_unit}.get(var, self.length_unit)

    def _write_mesh(self, f, ts, mesh: Mesh, flow: MeshFlow, times):
        """Water surface, face velocity and the additional output the plan asks for, row block
        by row block so big meshes stay small in memory; then their summaries."""
        n = len(times)
        seconds = times * 86400.0
        has_faces = flow.face_flow_share is not None and len(flow.face_flow_share) == mesh.faces
        cols_c = min(mesh.total_cells, 1 << 18)
        cols_f = max(1, min(mesh.faces, 1 << 18))
        rows = lambda cols: max(1, min(n, (1 << 20) // (4 * cols)))  # ~1 MB chunks, like HEC-RAS  # noqa: E731
        g = ts.require_group(f"2D Flow Areas/{mesh.name}")

        def series(name: str, cells: bool, unit: str):
            cols = cols_c if cells else cols_f
            d = g.create_dataset(name, shape=(n, mesh.total_cells if cells else mesh.faces), dtype="float32",
                                 chunks=(rows(cols), cols), compression="gzip", compression_opts=1)
            d.attrs["Units"] = _b(unit)
            return d

        ws = series("Water Surface", True, self.length_unit)
        fv = series("Face Velocity", False, self.velocity_unit)
        extra = {}
        if "Cell Velocity" in self.additional:
            extra["Cell Velocity - Velocity X"] = series("Cell Velocity - Velocity X", True, self.velocity_unit)
            extra["Cell Velocity - Velocity Y"] = series("Cell Velocity - Velocity Y", True, self.velocity_unit)
        if "Cell Hydraulic Depth" in self.additional:
            extra["Cell Hydraulic Depth"] = series("Cell Hydraulic Depth", True, self.length_unit)
        if "Face Shear Stress" in self.additional and has_faces:
            extra["Face Shear Stress"] = series("Face Shear Stress", False, "N/m^2" if self.si else "lb/ft^2")
        stats = {k: None for k in ("wmax", "wmax_t", "wmin", "wmin_t", "vmax", "vmax_t", "vmin", "vmin_t")}
        block = rows(cols_c)
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            depth = flow.depth(seconds[lo:hi])
            w = (mesh.bed[None, :] + depth).astype("float32")
            v = (flow.face_velocity(depth) if has_faces else np.zeros((hi - lo, mesh.faces))).astype("float32")
            ws[lo:hi] = w
            fv[lo:hi] = v
            if extra:
                speed = flow.speed(depth)
                for name, d in extra.items():
                    if name.endswith("Velocity X"):
                        d[lo:hi] = (speed * flow.direction[0]).astype("float32")
                    elif name.endswith("Velocity Y"):
                        d[lo:hi] = (speed * flow.direction[1]).astype("float32")
                    elif name == "Cell Hydraulic Depth":
                        d[lo:hi] = depth.astype("float32")
                    else:
                        d[lo:hi] = flow.shear_stress(depth).astype("float32")
            for key, arr, fn in (("wmax", w, np.argmax), ("wmin", w, np.argmin), ("vmax", v, np.argmax), ("vmin", v, np.argmin)):
                if arr.shape[1] == 0:
                    stats[key], stats[key + "_t"] = np.zeros(0, "float32"), np.zeros(0)
                    continue
                idx = fn(arr, axis=0)
                val = arr[idx, np.arange(arr.shape[1])]
                t = times[lo:hi][idx]
                if stats[key] is None:
                    stats[key], stats[key + "_t"] = val, t
                else:
                    better = val > stats[key] if "max" in key else val < stats[key]
                    stats[key] = np.where(better, val, stats[key])
                    stats[key + "_t"] = np.where(better, t, stats[key + "_t"])
        s = f.require_group(f"{BASE}/Summary Output/2D Flow Areas/{mesh.name}")
        for name, key, unit in (
            ("Maximum Water Surface", "wmax", self.length_unit), ("Minimum Water Surface", "wmin", self.length_unit),
            ("Maximum Face Velocity", "vmax", self.velocity_unit), ("Minimum Face Velocity", "vmin", self.velocity_unit),
        ):
            data = np.vstack([stats[key], stats[key + "_t"]]).astype("float32")
            d = s.create_dataset(name, data=data, compression="gzip", compression_opts=1)
            self._summary_attributes(d, name, data, unit)
        # How far the first time step moved from the initial conditions (HEC-RAS: "Starting Differences").
        first_step = np.array([0.0, (self.plan.computation_interval or timedelta(seconds=20)).total_seconds()])
        depth = flow.depth(first_step)
        start_ws = mesh.bed[None, :] + depth
        start_v = flow.face_velocity(depth) if has_faces else np.zeros((2, mesh.faces))
        for name, pair, rows_, unit in (
            ("Starting Differences WSE", start_ws, ("Prior Profile WSE", "First Time Step WSE"), self.length_unit),
            ("Starting Differences Velocity", start_v, ("Prior Profile Velocity", "First Time Step Velocity"), self.velocity_unit),
        ):
            d = s.create_dataset(name, data=np.vstack([pair, pair[1] - pair[0]]).astype("float32"),
                                 compression="gzip", compression_opts=1)
            d.attrs["Row0"], d.attrs["Row1"], d.attrs["Row2"] = _b(rows_[0]), _b(rows_[1]), _b("Difference")
            d.attrs["Units"] = _b(unit)
        del depth, start_ws, start_v
        # Run health: small water-surface errors where the water went (0 on cells never wet),
        # no cell at the iteration limit, a few cells last to converge now and then.
        wet = stats["wmax"] > mesh.bed.astype("float32")
        err = np.where(wet, self.rng.uniform(0, 0.009, mesh.total_cells), 0.0).astype("float32")
        err_t = np.where(wet, stats["wmax_t"], 0.0).astype("float32")
        d = s.create_dataset("Cell Maximum Water Surface Error", data=np.vstack([err, err_t]),
                             compression="gzip", compression_opts=1)
        self._summary_attributes(d, "Cell Maximum Water Surface Error", np.vstack([err, err_t]), self.length_unit)
        d = s.create_dataset("Cell Cumulative Iteration", data=np.zeros(mesh.total_cells, "float32"),
                             compression="gzip", compression_opts=1)
        self._summary_attributes(d, "Cell Cumulative Iteration", d[()][None, :], "Iterations")
        last = np.where(wet, self.rng.poisson(0.05, mesh.total_cells), 0).astype("int32")
        d = s.create_dataset("Cell Last Iteration", data=last, compression="gzip", compression_opts=1)
        d.attrs["Cell"] = _b("Number of times given cell is last cell to converge or it went to max iterations")
        d = s.create_dataset("Cell Cumulative Iter Lookup", data=np.array([[-1, -1]], "int32"))
        d.attrs["Column 1"] = _b("Cell Number")
        d.attrs["Column 2"] = _b("Cumulative number of Max Iterations")
        d.attrs["Number of different Cells that went to Maximum Iterations"] = np.int32(0)
        cell = int(np.argmax(err[: mesh.cell_count])) if mesh.cell_count else 0
        return (float(err[cell]) if mesh.cell_count else 0.0, mesh.name, cell)

    @staticmethod
    def _summary_attributes(d, name: str, data: np.ndarray, unit: str) -> None:
        """The attributes HEC-RAS 6.x puts on a 2D summary (read off BaldEagleDamBrk.p18.hdf)."""
        values = data[0] if len(data) else data
        vmax = np.float32(values.max()) if values.size else np.float32(0)
        vmin = np.float32(values.min()) if values.size else np.float32(0)
        tmax = np.float32(data[1].max()) if len(data) > 1 and data[1].size else np.float32(0)
        tmin = np.float32(data[1].min()) if len(data) > 1 and data[1].size else np.float32(0)
        a = d.attrs
        if name.endswith("Water Surface"):  # Maximum / Minimum Water Surface
            a["Max Time"], a["Max Value"], a["Min Time"], a["Min Value"] = tmax, vmax, tmin, vmin
            a["Rows Variables"] = np.array([b"WSEL", b"Time"], dtype="S16")
            a["Units"] = np.array([unit.encode(), b"days"], dtype="S16")
            a["Units per row"] = np.array([unit.encode(), b"days"], dtype="S16")
            return
        a["Can Interpolate"] = _b("True" if "Velocity" in name else "False")
        a["Can Plot"] = _b("False" if "Velocity" in name else "True")
        a["Coverage"] = _b("Average")
        a["Location"] = _b("Faces" if "Face" in name else "Cells")
        a["Maximum Value of Data Set"], a["Minimum Value of Data Set"] = vmax, vmin
        a["Orientation"] = _b("Scalar")
        a["Row"] = np.int32(0)
        a["Units"] = _b(unit)
        if "Velocity" in name:
            a["Name"] = _b("Face Velocity Maximum" if name.startswith("Maximum") else "Face Velocity Minimum")
            a["Max Time"], a["Min Time"], a["Min Value"] = tmax, tmin, vmin
            a["Rows Variables"] = np.array([b"Velocity" if name.startswith("Maximum") else b"velocity", b"Time"], dtype="S16")
            a["Units per row"] = np.array([unit.encode(), b"days"], dtype="S16")
        elif name == "Cell Maximum Water Surface Error":
            a["Name"] = _b("Water Surface Error Maximum")
            a["Max Time"] = tmax
            a["Row Variables"] = np.array([b"WSEL Error", b"Time"], dtype="S16")
            a["Units per row"] = np.array([unit.encode(), b"days"], dtype="S16")
        else:  # Cell Cumulative Iteration
            a["Name"] = _b("Cumulative Max Iterations")
            a["Cell"] = _b("Number of times given cell went to max iterations")

    def _boundary_of(self, line: BoundaryLine) -> FlowBoundary | None:
        """The flow file's block for a boundary line: same mesh and name, else the same name."""
        for same_mesh in (True, False):
            for b in self.boundaries:
                if b.line.lower() == line.name.lower() and (not same_mesh or b.mesh.lower() == line.mesh.lower()):
                    return b
        return None

    def _write_boundary_lines(self, ts, times: np.ndarray) -> None:
        """Stage and flow of each boundary-condition line, whole and per face, in HEC-RAS 6.6's
        layout (``2D Flow Areas/<mesh>/Boundary Conditions/<line>``; before 6.6 they sat in
        ``Unsteady Time Series/Boundary Conditions``). A line with a flow hydrograph carries it
        (interpolated onto the output times); the others let the flood out, sharing it. The
        line's stage is the lowest water surface of the cells along it (the dry cells' is their
        bed); its flow is split between its faces by conveyance (depth^5/3 × face length)."""
        seconds = times * 86400.0
        lines = []
        for line in self.bc_lines:
            flow = self.flows.get(line.mesh)
            if flow is None or flow.mesh.face_cells is None:
                continue
            faces = line.faces[(line.faces >= 0) & (line.faces < len(flow.mesh.face_cells))]
            if len(faces):
                lines.append((line, flow, faces, self._boundary_of(line)))
        outflows = sum(1 for *_, b in lines if b is None or b.flow is None or not len(b.flow))
        for line, flow, faces, boundary in lines:
            mesh = flow.mesh
            fc = mesh.face_cells[faces]
            cells = np.where(fc[:, 0] < mesh.cell_count, fc[:, 0], fc[:, 1])
            depth = flow.depth(seconds, cells)
            stage_per_face = mesh.bed[cells][None, :] + depth
            stage = stage_per_face.min(axis=1)
            if boundary is not None and boundary.flow is not None and len(boundary.flow):
                step = (boundary.interval or timedelta(hours=1)).total_seconds()
                q = np.interp(seconds, np.arange(len(boundary.flow)) * step, boundary.flow)
            else:
                q = flow.channel_flow(seconds - float(flow.lag[cells].mean())) / max(1, outflows)
            lengths = mesh.face_lengths[faces] if mesh.face_lengths is not None else np.ones(len(faces))
            weight = np.power(depth, 5.0 / 3.0) * lengths[None, :]
            dry = weight.sum(axis=1) <= 0
            weight[dry, int(np.argmin(mesh.bed[cells]))] = 1.0  # no water yet: it comes in at the lowest face
            per_face = q[:, None] * weight / weight.sum(axis=1)[:, None]
            g = ts.require_group(f"2D Flow Areas/{mesh.name}/Boundary Conditions")
            name = line.name.replace("/", "_")
            d = g.create_dataset(name, data=np.column_stack([stage, q]).astype("float32"),
                                 compression="gzip", compression_opts=1)
            d.attrs["2D Area"] = _b(mesh.name)
            d.attrs["Columns"] = np.array([b"Stage", b"Flow"], dtype="S16")
            d.attrs["Flow"] = _b(self.flow_unit)
            d.attrs["Stage"] = _b(self.length_unit)
            for suffix, data, unit in ((" - Flow per Face", per_face, self.flow_unit),
                                       (" - Stage per Face", stage_per_face, self.length_unit)):
                d = g.create_dataset(name + suffix, data=data.astype("float32"), compression="gzip", compression_opts=1)
                d.attrs["2D Area"] = _b(mesh.name)
                d.attrs["Faces"] = faces.astype("int32")
                d.attrs["Units"] = _b(unit)

    def _write_cross_sections_unsteady(self, f, ts, hydro) -> None:
        n_xs = len(self.cross_sections)
        bed = 900.0 - np.arange(n_xs) * 0.05
        shape = self.depth_shape(n_xs, salt=200) * self.peak
        g = ts.require_group("Cross Sections")
        for var, data in (
            ("Water Surface", bed[None, :] + hydro[:, None] * shape[None, :]),
            ("Flow", hydro[:, None] * shape[None, :] * 1000.0),
            ("Velocity Total", hydro[:, None] * shape[None, :] * 0.8),
        ):
            d = g.create_dataset(var, data=data.astype("float32"))
            d.attrs["Units"] = _b(self._unit("Velocity" if "Velocity" in var else var))
        f.create_dataset("Results/Unsteady/Output/Geometry Info/Cross Section Attributes", data=self._xs_table())

    def _xs_table(self) -> np.ndarray:
        dt = np.dtype([("River", "S16"), ("Reach", "S16"), ("Station", "S8"), ("Name", "S16")])
        return np.array([(r.encode()[:16], c.encode()[:16], s.encode()[:8], b"") for r, c, s in self.cross_sections], dtype=dt)

    def write_steady_results(self, f: h5py.File) -> None:
        """Steady profiles: water surface, flow and energy grade per profile and cross section,
        and the additional variables a floodplain map needs (velocities, flow area, the
        encroachment stations at the edges of the flow). Depth and velocity follow Manning
        on a wide channel; velocity × area gives back the flow."""
        names = profile_names(self.flow_text)
        xs = self.cross_sections or [("Fake River", "Reach 1", f"{1000 - 10 * i}.") for i in range(10)]
        if not self.cross_sections:
            self.cross_sections = xs
        n_xs = len(xs)
        f.create_dataset("Results/Steady/Output/Geometry Info/Cross Section Attributes", data=self._xs_table())
        g = f.require_group(STEADY_BASE)
        g.create_dataset("Profile Names", data=np.array([n.encode() for n in names], dtype="S16"))
        scale = np.linspace(0.5, 1.0, len(names))[:, None]
        shape = self.depth_shape(n_xs, salt=300) * self.peak
        bed = 900.0 - np.arange(n_xs) * 0.05
        depth = np.maximum(scale * shape[None, :], 0.05 * self.peak)
        ws = bed[None, :] + depth
        flow = scale * 1000.0 * np.ones(n_xs)[None, :]
        to_m = 1.0 if self.si else FT
        v_total = np.power(depth * to_m, 2.0 / 3.0) * np.sqrt(0.001) / 0.035 / to_m
        area = flow / v_total
        top_width = area / depth
        centre = float(np.ceil(top_width.max() / 200.0) * 100.0) + 100.0  # the channel's station: stations stay positive
        unit = self.length_unit
        for var, data, label, u in (
            ("Water Surface", ws, "Stage", unit),
            ("Flow", flow, "Flow", self.flow_unit),
            ("Energy Grade", ws + v_total ** 2 / (2 * G / to_m), "Stage", unit),  # HEC-RAS labels it so
            ("Additional Variables/Velocity Total", v_total, "Total Velocity", self.velocity_unit),
            ("Additional Variables/Velocity Channel", v_total * 1.15, "Channel Velocity", self.velocity_unit),
            ("Additional Variables/Area Flow Total", area, "Total Flow Area", f"{unit}^2"),
            ("Additional Variables/Encroachment Station Left", centre - top_width / 2, "Encroachment Station Left", unit),
            ("Additional Variables/Encroachment Station Right", centre + top_width / 2, "Encroachment Station Right", unit),
        ):
            d = g.create_dataset(f"Cross Sections/{var}", data=data.astype("float32"), compression="gzip", compression_opts=1)
            d.attrs["Variable_Unit"] = np.array([[label.encode(), u.encode()]], dtype="S32")

    def messages(self, outcome: str, compute_seconds: float, total_seconds: float, volume_error: float,
                 worst: tuple, unstable_at: datetime | None) -> str:
        p = self.plan
        kind = "Steady" if p.steady else "Unsteady"
        lines = [
            f"Plan: '{p.title}' ({p.file.name})",
            f"Simulation started at: {self.started_wall.strftime('%d%b%Y %I:%M:%S %p')}",
            "",
            "Writing Plan GIS Data...",
            "Completed Writing Plan GIS Data",
            "Writing Geometry...",
            "Completed Writing Geometry",
            "Writing Event Conditions ...",
            "Completed Writing Event Condition Data",
            "",
        ]
        if p.steady:
            lines += ["", f"Steady Flow Simulation {FILE_VERSION}", "", "Finished Steady Flow Simulation"]
        else:
            lines += [f"Performing Unsteady Flow Simulation  {FILE_VERSION}", "",
                      "Maximum iteration location\t\tCell\t WSEL\tERROR\tITERATIONS"]
            err, mesh, cell = worst
            if mesh:
                lines.append(f"{_stamp(self.start + timedelta(minutes=1))}  {mesh}\t{cell:10d}\t{900.0:8.2f}\t{err:8.3f}\t20")
            if outcome == "unstable" and unstable_at is not None:
                lines += [
                    f"{_stamp(unstable_at)}  {mesh or 'Model'}\t{cell:10d}\t{987.65:8.2f}\t{45.21:8.3f}\t20",
                    f"The model went unstable at {_stamp(unstable_at)}: water surface error 45.21 in cell {cell}"
                    f"{' of ' + mesh if mesh else ''}.",
                    "Unsteady Flow Simulation Terminated",
                ]
            else:
                lines += [
                    f"Overall Volume Accounting Error in {'Cubic Meters' if self.si else 'Acre Feet'}: {volume_error * 3.1:12.4f}",
                    f"Overall Volume Accounting Error as percentage: {volume_error:12.5f}",
                    "",
                    "Finished Unsteady Flow Simulation",
                ]
        lines += [
            "", "", "Computations Summary", "", "Computation Task\tTime(hh:mm:ss)",
            f"Completing Geometry, Flow and Plan\t{_task_time(0.3)}",
            f"{kind} Flow Computations\t{_task_time(compute_seconds)}",
            f"Complete Process\t{_task_time(total_seconds)}",
            "",
        ]
        return "\r\n".join(lines) + "\r\n"

    def finish(self, outcome: str, compute_seconds: float) -> None:
        """Results, messages and the summary groups; then the rename HEC-RAS does at the end."""
        total = (datetime.now() - self.started_wall).total_seconds()
        unstable_at = None
        worst = (0.0, "", 0)
        volume_error = float(self.rng.uniform(0.001, 0.05))
        with h5py.File(self.tmp, "a") as f:
            if self.plan.steady:
                self.write_steady_results(f)
            else:
                until = None
                if outcome == "unstable":
                    until = self.unstable_step()
                    unstable_at = self.unstable_time()
                worst = self.write_unsteady_results(f, until)["worst"]
            text = self.messages(outcome, compute_seconds, total, volume_error, worst, unstable_at)
            summary = f.require_group("Results/Summary")
            summary.create_dataset("Compute Messages (text)", data=np.array([text.encode(text_encoding(), errors="replace")]))
            summary.create_dataset("Compute Processes", data=self._compute_processes(compute_seconds))
            window = f"{_stamp(self.started_wall)} to {_stamp(datetime.now())}"
            if self.plan.steady:
                st = f.require_group("Results/Steady/Summary")
                st.attrs["Solution"] = _b("Steady Finished Successfully")
                st.attrs["Run Time Window"] = _b(window)
            else:
                us = f.require_group("Results/Unsteady/Summary")
                us.attrs["Computation Time DSS"] = _b("00:00:00")
                us.attrs["Computation Time Total"] = _b(_hms(total))
                us.attrs["Maximum WSEL Error"] = np.float32(worst[0] if outcome != "unstable" else 45.21)
                us.attrs["Maximum number of cores"] = np.int32(os.cpu_count() or 1)
                us.attrs["Run Time Window"] = _b(window)
                if outcome == "unstable":
                    us.attrs["Solution"] = _b("Unsteady Flow Computations Went Unstable")
                    us.attrs["Time Solution Went Unstable"] = np.float64((unstable_at - self.start).total_seconds() / 86400)
                    us.attrs["Time Stamp Solution Went Unstable"] = _b(_stamp(unstable_at))
                else:
                    us.attrs["Solution"] = _b("Unsteady Finished Successfully")
                    us.attrs["Time Solution Went Unstable"] = np.float64("nan")
                    us.attrs["Time Stamp Solution Went Unstable"] = _b("Not Applicable")
                    va = us.require_group("Volume Accounting")
                    start_volume = 12345.6
                    va.attrs["Vol Accounting in"] = _b("Cubic Meters" if self.si else "Acre Feet")
                    va.attrs["Volume Starting"] = np.float32(start_volume)
                    va.attrs["Volume Ending"] = np.float32(start_volume * 1.1)
                    va.attrs["Total Boundary Flux of Water In"] = np.float32(start_volume * 0.5)
                    va.attrs["Total Boundary Flux of Water Out"] = np.float32(start_volume * 0.4)
                    va.attrs["Error"] = np.float32(volume_error * start_volume / 100)
                    va.attrs["Error Percent"] = np.float32(volume_error)
            f["Event Conditions"].attrs["Completed Successfully"] = _b("True" if outcome != "unstable" else "False")
        self.messages_file.write_bytes(text.encode(text_encoding(), errors="replace"))
        os.replace(self.tmp, self.final)

    def unstable_step(self) -> int:
        """How many output steps an unstable run writes (it goes unstable at the last of them)."""
        return max(2, int(self.steps * 0.6))

    def unstable_time(self) -> datetime:
        return self.start + timedelta(days=float(self.times_days[self.unstable_step() - 1]))

    def reach(self, outcome: str) -> float:
        """The fraction of the simulation window the run computes to."""
        if outcome == "unstable" and not self.plan.steady and self.span > 0:
            return min(1.0, (self.unstable_time() - self.start).total_seconds() / self.span)
        return 1.0

    # --- computation messages (NAME.bcoNN) ----------------------------------------

    def bco_line(self, *lines: str) -> None:
        """Append lines to the ``.bco`` (when the plan asks for it), each written whole at once
        and closed, so a reader sees it at once."""
        if not self.detailed or not lines:
            return
        data = "".join(line + "\r\n" for line in lines).encode(text_encoding(), errors="replace")
        with open(self.bco, "ab") as fh:
            fh.write(data)

    def bco_open(self) -> None:
        """A new ``.bco`` with its header: what Ras.exe has written before computing."""
        if not self.detailed:
            return
        self.bco.write_bytes(b"")
        self.bco_line(f"HEC-RAS {VERSION} (dask_hecras.fake_ras)", f"Plan: '{self.plan.title}' ({self.plan.file.name})",
                      f"Project: {self.prj.name}", "")

    def bco_started(self) -> None:
        kind = "Steady" if self.plan.steady else "Unsteady"
        self.bco_line(f"Starting {kind} Flow Computations")

    def bco_time(self, fraction: float) -> None:
        """A line carrying the simulation time reached: ``fraction`` of the window."""
        if not self.detailed or self.plan.steady:
            return
        seconds = round(self.span * fraction)
        at = self.start + timedelta(seconds=seconds)
        dt = (self.plan.computation_interval or timedelta(seconds=20)).total_seconds()
        step = int(seconds // dt) if dt > 0 else 0
        mesh = self.meshes[0].name if self.meshes else "Model"
        iterations = int(self._bco_rng.integers(2, 7))
        error = float(self._bco_rng.uniform(0.0005, 0.02))
        self.bco_line(f"{_bco_stamp(at)}  time step {step:8d} ({_interval_text(self.plan.computation_interval) or '20SEC'})"
                      f"  iterations {iterations:2d}  max WS error {error:7.4f} in {mesh}")

    def bco_end(self, outcome: str) -> None:
        if self.plan.steady:
            self.bco_line("", "Finished Steady Flow Simulation")
        elif outcome == "unstable":
            at = self.unstable_time()
            self.bco_line(f"The model went unstable at {_bco_stamp(at)}", "Unsteady Flow Simulation Terminated")
        elif outcome != "crash":  # a crashed engine writes no end
            self.bco_line("", "Finished Unsteady Flow Simulation")

    def _compute_processes(self, compute_seconds: float) -> np.ndarray:
        dt = np.dtype([("Process", "S40"), ("Filename", "S80"), ("File Date", "S21"), ("File Size", "<i4"),
                       ("File Version", "S7"), ("Arguments", "S200"), ("Compute Time", "S12"),
                       ("Compute Time (ms)", "<i4")])
        kind = "Steady" if self.plan.steady else "Unsteady"
        exe = "RasSteady.exe" if self.plan.steady else "RasUnsteady.exe"

        def t(s: float) -> str:
            ms = int(round(s * 1000))
            return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

        rows = [
            ("Ras.exe", f"fake_ras {VERSION}", "", 0, VERSION, "", " ", 0),
            ("Completing Geometry, Flow and Plan", "fake_ras", "", 0, VERSION, "", t(0.3), 300),
            (f"{kind} Flow Computations", exe, "", 0, VERSION,
             f'"{self.tmp.name}" x{self.plan.geometry[1:]}', t(compute_seconds), int(compute_seconds * 1000)),
        ]
        return np.array([tuple(x.encode() if isinstance(x, str) else x for x in r) for r in rows], dtype=dt)


def _write_detailed(plan_text: str) -> bool:
    """Whether a plan file says ``Write Detailed= 1`` (any value but 0: Ras.exe's plans say 0 or 1)."""
    from .project import first, key_values

    value = (first(key_values(plan_text), "Write Detailed", "0") or "0").strip()
    try:
        return int(float(value)) != 0
    except ValueError:
        return False


def _interval_text(interval: timedelta | None) -> str:
    if interval is None:
        return ""
    s = int(interval.total_seconds())
    for unit, size in (("DAY", 86400), ("HOUR", 3600), ("MIN", 60)):
        if s % size == 0 and s >= size:
            return f"{s // size}{unit}"
    return f"{s}SEC"


# --------------------------------------------------------------------------- processes


SERIAL_FRACTION = 0.2  # of a 2D run's work that more cores do not speed up


def run_seconds(seconds: float, cores: int | None) -> float:
    """The fake's compute time on ``cores`` cores. When a plan names its cores (``UNET D2
    Cores`` > 0, e.g. set by ``hecras.cores-per-plan``), ``seconds`` is its one-core time and
    more cores help as HEC-RAS 2D's do, flattening past a few (Amdahl's law with a fifth of the
    work serial: 2 cores 1.7x, 4 cores 2.5x, 8 cores 3.3x, 16 cores 4x). With 0 (all cores, the
    default) the time is ``seconds`` as given."""
    if not cores or cores < 1:
        return seconds
    return seconds * (SERIAL_FRACTION + (1 - SERIAL_FRACTION) / cores)


def journal(event: str, plan_file: Path, outcome: str) -> None:
    """One line in ``$FAKE_RAS_JOURNAL``, written whole (appends of one short line do not mix)."""
    path = os.environ.get("FAKE_RAS_JOURNAL")
    if not path:
        return
    line = f"{event} {plan_file.stem}.{plan_file.suffix.lstrip('.')} {outcome} {plan_file.parent} {os.getpid()} {time.time():.3f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def compute(prj: Path, plan_file: Path, behaviour: Behaviour) -> int:
    """The helper process (RasUnsteady's part): does the work and the waiting."""
    started = time.monotonic()
    outcome = behaviour.outcome
    journal("start", plan_file, outcome)
    if outcome == "no-results":
        time.sleep(behaviour.seconds)
        print("fake-ras: finished without writing results", flush=True)
        return 0
    run = Run(prj, plan_file, behaviour)
    run.write_start()
    dss = run.plan.output_dss
    if dss is not None and dss.exists() and not dss.stat().st_mode & stat.S_IWRITE:
        # HEC-DSS opens the plan's DSS file for writing; a read-only one (the attribute Windows
        # shares between hard links) stops the run. Root on Linux could write it: check the bit.
        print(f"Error opening DSS file {dss}: access denied (the file is read-only)", flush=True)
        return 1
    cores = f" on {run.plan.d2_cores} cores" if run.plan.d2_cores else ""
    print(f"fake-ras: computing {run.plan.id} ({outcome}, {run_seconds(behaviour.seconds, run.plan.d2_cores):g} s"
          f"{cores})", flush=True)
    run.bco_open()
    if outcome == "hang":
        while True:  # like Ras.exe behind a modal dialog
            time.sleep(3600)
    # Spend the requested time, reporting progress like an engine would. Progress is counted in
    # short steps, so that time spent suspended (SIGSTOP, the owner policy's "suspend") is not
    # progress: like HEC-RAS, a paused run ends that much later.
    # Start-up counts towards the run time up to 0.5 s: longer means the process was paused (or
    # the machine busy), which is not progress either.
    total = max(0.0, run_seconds(behaviour.seconds, run.plan.d2_cores) - min(time.monotonic() - started, 0.5))
    reach = run.reach(outcome)  # an unstable run gets only so far in the same time

    def report(step: int) -> None:
        """Progress step ``step`` of PROGRESS_STEPS: the simulated time reached, in step with
        the compute time spent (a stalled run stops moving at STALL_STEP, for ever)."""
        fraction = reach * step / PROGRESS_STEPS
        print(f"fake-ras: progress {_percent(100 * fraction)}%", flush=True)
        run.bco_time(fraction)
        if outcome == "stall" and step >= STALL_STEP:
            while True:  # a hang mid-run: the process lives on, its progress stands still
                time.sleep(3600)

    run.bco_started()
    report(0)
    done, last, reported = 0.0, time.monotonic(), 0
    while done < total:
        time.sleep(min(0.05, total - done))
        now = time.monotonic()
        done += min(now - last, 0.1)
        last = now
        while reported < PROGRESS_STEPS and done >= total * (reported + 1) / PROGRESS_STEPS:
            reported += 1
            report(reported)
    for step in range(reported + 1, PROGRESS_STEPS + 1):
        report(step)
    run.bco_end(outcome)
    if outcome == "crash":
        print("forrtl: severe (157): Program Exception - access violation", flush=True)
        return 157
    run.finish(outcome, compute_seconds=time.monotonic() - started)
    if dss is not None:  # the computed hydrographs, added to what the file holds (made if absent)
        with open(dss, "ab") as fh:
            fh.write(f"fake DSS record: /{run.name}/{run.plan.id}/STAGE-FLOW//{_interval_text(run.plan.output_interval)}"
                     f"/{run.plan.short_id}/ {outcome}\n".encode())
    if outcome == "truncated":
        size = run.final.stat().st_size
        with open(run.final, "r+b") as fh:
            fh.truncate(size // 2)
    journal("end", plan_file, outcome)
    print(f"fake-ras: finished {run.plan.id}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-ras", description="A stand-in for Ras.exe that writes HEC-RAS 6.x results.")
    parser.add_argument("-c", dest="prj", required=True, type=Path, help="project file NAME.prj")
    parser.add_argument("plan_file", type=Path, help="plan file NAME.pNN")
    parser.add_argument("--cells", type=int, help="write one mesh of this many cells (benchmarks)")
    parser.add_argument("--steps", type=int, help="number of output time steps")
    parser.add_argument("--seconds", type=float, help="run time, overriding fake-ras.json")
    parser.add_argument("--outcome", choices=OUTCOMES, help="outcome, overriding fake-ras.json")
    parser.add_argument("--compute", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    prj, plan_file = args.prj.resolve(), args.plan_file.resolve()
    if not prj.is_file() or not plan_file.is_file():
        print(f"fake-ras: cannot open {prj if not prj.is_file() else plan_file}", file=sys.stderr)
        return 2
    b = load_behaviour(prj.parent, plan_file.suffix.lstrip(".").lower())
    b = Behaviour(
        seconds=args.seconds if args.seconds is not None else b.seconds,
        outcome=args.outcome or b.outcome,
        cells=args.cells or b.cells,
        steps=args.steps or b.steps,
        post_seconds=b.post_seconds,
    )
    if args.compute:
        return compute(prj, plan_file, b)
    # The front process, like Ras.exe: start the compute helper and wait for it.
    helper = [sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(prj), str(plan_file), "--compute",
              "--seconds", repr(b.seconds), "--outcome", b.outcome]
    if b.cells:
        helper += ["--cells", str(b.cells)]
    if b.steps:
        helper += ["--steps", str(b.steps)]
    code = subprocess.call(helper, cwd=prj.parent)
    if code != 0:
        print(f"Error with program: RasUnsteady.exe  Exit Code = {code}", flush=True)
    elif b.post_seconds:  # the results file is final; Ras.exe goes on with its post-processing
        print("fake-ras: post-processing (RAS Mapper stored maps)", flush=True)
        time.sleep(b.post_seconds)
    return code


if __name__ == "__main__":
    sys.exit(main())
