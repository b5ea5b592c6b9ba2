"""What the fake engine reads from a project, and how its water behaves.

The fake engine (:mod:`dask_hecras.fake_ras`) writes results that a reader can check against
physics, not random numbers: a bigger storm wets more cells, water runs downhill, velocities
follow Manning, a dam break floods most of the mesh. For that it needs the project's inputs:
the geometry HDF's 2D meshes (bed, cell centres, faces), boundary-condition lines, reference
lines and points, the geometry text's cross sections, the unsteady flow file's inflow
hydrographs (or the steady flow file's profile names) and the additional 2D output a plan asks
for. This module reads those, and computes the water from them: :class:`Storm` (the plan's
total inflow and the channel depth it raises) and :class:`MeshFlow` (that flood on one mesh).
Writing the results file, in HEC-RAS's layout, is :mod:`dask_hecras.fake_ras`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np

# --------------------------------------------------------------------------- the project's inputs


@dataclass
class Mesh:
    name: str
    cell_count: int  # real cells
    total_cells: int  # with ghost cells
    faces: int
    bed: np.ndarray  # (total_cells,): a ghost cell has its real neighbour's bed
    xy: np.ndarray | None = None  # (total_cells, 2) cell centres
    face_cells: np.ndarray | None = None  # (faces, 2): cell 0, cell 1
    face_normals: np.ndarray | None = None  # (faces, 2): unit normal, from cell 0 to cell 1
    face_lengths: np.ndarray | None = None  # (faces,)
    manning: float = 0.06
    geometry: tuple | None = None  # a made-up mesh's (examples.MeshGeometry, [examples.BoundaryLine]), written as geometry


@dataclass
class BoundaryLine:
    """A boundary-condition line of the geometry and the mesh faces it covers."""

    name: str
    mesh: str
    type: str
    faces: np.ndarray


@dataclass
class FlowBoundary:
    """One ``Boundary Location=`` block of an unsteady flow file."""

    river: str
    reach: str
    station: str
    mesh: str  # storage area or 2D flow area
    line: str  # boundary-condition line
    interval: timedelta | None = None
    flow: np.ndarray | None = None  # the Flow Hydrograph= values, from the simulation start


def read_meshes(geometry_hdf: Path) -> list[Mesh]:
    """The geometry's 2D meshes: bed, cell centres and faces (whatever of them the file has)."""
    if not geometry_hdf.is_file():
        return []
    meshes = []
    with h5py.File(geometry_hdf, "r") as g:
        if "Geometry/2D Flow Areas/Attributes" not in g:
            return []
        table = g["Geometry/2D Flow Areas/Attributes"][()]
        for row in table:
            name = row["Name"].decode().strip()
            group = g[f"Geometry/2D Flow Areas/{name}"]
            count = int(row["Cell Count"])
            bed = group["Cells Minimum Elevation"][()].astype("float64")
            get = lambda key: group[key][()] if key in group else None  # noqa: E731
            xy = get("Cells Center Coordinate")
            face_cells = get("Faces Cell Indexes")
            normals = get("Faces NormalUnitVector and Length")
            faces = group["Faces FacePoint Indexes"].shape[0] if "Faces FacePoint Indexes" in group else (
                len(face_cells) if face_cells is not None else 0)
            if face_cells is not None:  # a ghost cell (no bed of its own) takes its real neighbour's
                ghost = face_cells[:, 1] >= count
                bed[face_cells[ghost, 1]] = np.where(np.isfinite(bed[face_cells[ghost, 1]]),
                                                     bed[face_cells[ghost, 1]], bed[face_cells[ghost, 0]])
            finite = np.isfinite(bed)
            bed = np.where(finite, bed, float(np.mean(bed[finite])) if finite.any() else 100.0)
            manning = float(row["Mann"]) if "Mann" in table.dtype.names and np.isfinite(row["Mann"]) else 0.06
            meshes.append(Mesh(name, count, len(bed), faces, bed, xy=xy, face_cells=face_cells,
                               face_normals=None if normals is None else normals[:, :2].astype("float64"),
                               face_lengths=None if normals is None else normals[:, 2].astype("float64"),
                               manning=manning))
    return meshes


def grid_shape(cells: int) -> tuple[int, int]:
    """``(nx, ny)`` with ``nx * ny == cells``, as square as the number allows, longer west to east."""
    ny = max(d for d in range(1, int(cells ** 0.5) + 1) if cells % d == 0)
    return cells // ny, ny


def big_mesh(cells: int) -> tuple[Mesh, list[BoundaryLine]]:
    """A regular mesh of exactly ``cells`` cells with the demo's valley for terrain, and its
    upstream and downstream boundary lines (benchmarks: ``--cells``)."""
    from .examples import grid_boundary_lines, grid_mesh

    nx, ny = grid_shape(cells)
    geometry = grid_mesh(nx, ny, name="Big Mesh")
    d = geometry.datasets
    bed = d["Cells Minimum Elevation"].astype("float64")
    face_cells = d["Faces Cell Indexes"]
    ghost = face_cells[:, 1] >= cells
    bed[face_cells[ghost, 1]] = bed[face_cells[ghost, 0]]
    normals = d["Faces NormalUnitVector and Length"]
    outline = grid_boundary_lines(geometry, nx, ny)
    mesh = Mesh(geometry.name, cells, len(bed), len(face_cells), bed, xy=d["Cells Center Coordinate"],
                face_cells=face_cells, face_normals=normals[:, :2].astype("float64"),
                face_lengths=normals[:, 2].astype("float64"), geometry=(geometry, outline))
    return mesh, [BoundaryLine(line.name, line.mesh, line.type, line.faces) for line in outline]


def read_boundary_lines(geometry_hdf: Path) -> list[BoundaryLine]:
    """The geometry's boundary-condition lines with their faces (``External Faces``, ``Internal Faces``)."""
    if not geometry_hdf.is_file():
        return []
    with h5py.File(geometry_hdf, "r") as g:
        base = "Geometry/Boundary Condition Lines"
        if f"{base}/Attributes" not in g:
            return []
        table = g[f"{base}/Attributes"][()]
        names = table.dtype.names
        mesh_field = next((f for f in ("SA-2D", "SA/2D") if f in names), None)
        faces = [g[f"{base}/{t}"][()] for t in ("External Faces", "Internal Faces") if f"{base}/{t}" in g]
        out = []
        for i, row in enumerate(table):
            ids = [rows["Face Index"][rows["BC Line ID"] == i] for rows in faces]
            out.append(BoundaryLine(row["Name"].decode(errors="replace").strip(),
                                    row[mesh_field].decode(errors="replace").strip() if mesh_field else "",
                                    row["Type"].decode(errors="replace").strip() if "Type" in names else "External",
                                    np.concatenate(ids).astype("int64") if ids else np.empty(0, "int64")))
        return out


def read_flow_boundaries(flow_text: str) -> list[FlowBoundary]:
    """The boundary blocks of an unsteady flow file, with their flow hydrographs (tables of
    8-character fields, 10 to a line)."""
    from .project import parse_interval

    out: list[FlowBoundary] = []
    lines = flow_text.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        k += 1
        if line.startswith("Boundary Location="):
            fields = [f.strip() for f in line.split("=", 1)[1].split(",")] + [""] * 9
            out.append(FlowBoundary(fields[0], fields[1], fields[2], fields[5], fields[7]))
        elif out and line.startswith("Interval="):
            out[-1].interval = parse_interval(line.split("=", 1)[1])
        elif out and line.startswith("Flow Hydrograph="):
            try:
                count = int(line.split("=", 1)[1].split()[0])
            except (IndexError, ValueError):
                continue
            values: list[float] = []
            while len(values) < count and k < len(lines) and "=" not in lines[k]:
                row = lines[k]
                values += [float(row[i:i + 8]) for i in range(0, len(row), 8) if row[i:i + 8].strip()]
                k += 1
            out[-1].flow = np.array(values[:count], dtype="float64")
    return out


ADDITIONAL_OUTPUT_KEY = "HDF Additional Output Variable"
ADDITIONAL_OUTPUT = ("Cell Velocity", "Cell Hydraulic Depth", "Face Shear Stress")  # the ones the fake writes


def additional_outputs(plan_text: str) -> list[str]:
    """The extra 2D time series a plan asks for: HEC-RAS 6.x writes one
    ``HDF Additional Output Variable=<name>`` line per variable into the ``.pNN``."""
    from .project import key_values

    asked = [v.strip() for k, v in key_values(plan_text) if k == ADDITIONAL_OUTPUT_KEY]
    return [v for v in ADDITIONAL_OUTPUT if v in asked]


def read_cross_sections(geometry_text: str) -> list[tuple[str, str, str]]:
    """(river, reach, station) of each cross section in the geometry text file."""
    xs, river, reach = [], "", ""
    for line in geometry_text.splitlines():
        if line.startswith("River Reach="):
            parts = line.split("=", 1)[1].split(",")
            river, reach = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")
        elif line.startswith("Type RM Length L Ch R"):
            fields = [f.strip() for f in line.split("=", 1)[1].split(",")]
            if fields and fields[0] == "1" and len(fields) > 1:
                xs.append((river, reach, fields[1]))
    return xs


def read_reference(geometry_hdf: Path, kind: str) -> list[tuple[str, str, int]]:
    """(name, mesh, cell index or -1) of the geometry's reference lines or points."""
    if not geometry_hdf.is_file():
        return []
    with h5py.File(geometry_hdf, "r") as g:
        path = f"Geometry/{kind}/Attributes"
        if path not in g:
            return []
        table = g[path][()]
        names = table.dtype.names
        mesh_field = next((f for f in ("SA-2D", "SA/2D") if f in names), None)
        return [
            (r["Name"].decode().strip(), r[mesh_field].decode().strip() if mesh_field else "",
             int(r["Cell Index"]) if "Cell Index" in names else -1)
            for r in table
        ]


def profile_names(flow_text: str) -> list[str]:
    for line in flow_text.splitlines():
        if line.startswith("Profile Names="):
            return [p.strip() for p in line.split("=", 1)[1].split(",") if p.strip()]
    return ["PF 1"]


# --------------------------------------------------------------------------- the water

G = 9.81
FT = 0.3048  # metres per foot
CFS = FT ** 3  # m3/s per cfs
CELERITY = 1.0  # m/s: how fast the flood travels down a mesh
DEPTH_PER_FLOW = 0.019  # m per (m3/s)^0.6: the channel's depth at a flow (2,500 m3/s → 2.1 m)


class Storm:
    """The plan's storm: the total inflow (flow units) against seconds from the start, the
    channel depth it raises and, in a dam-break plan, the breach wave's timing.

    The inflow is the flow file's hydrographs summed, or a storm of 1000 passing when it has
    none; the depth follows it Manning-like (``D ∝ Q^0.6``), deeper in a rougher plan
    (``roughness`` 1.2 for "Roughness +20%").
    """

    def __init__(self, boundaries: list[FlowBoundary], span: float, si: bool, roughness: float = 1.0,
                 dam_break: bool = False):
        self.span, self.si, self.roughness, self.dam_break = span, si, roughness, dam_break
        series = []
        for b in boundaries:
            if b.flow is not None and len(b.flow):
                step = (b.interval or timedelta(hours=1)).total_seconds()
                series.append((np.arange(len(b.flow)) * step, b.flow))
        if not series:
            t = np.linspace(0.0, max(self.span, 1.0), 49)
            x = t / max(self.span, 1.0)
            series = [(t, 1000.0 * (np.sin(np.pi * np.clip(x * 1.3, 0, 1)) ** 2 * 0.95 + 0.05))]
        grid = np.unique(np.concatenate([t for t, _ in series]))
        self.inflow_t = grid
        self.inflow_q = np.maximum(sum(np.interp(grid, t, q) for t, q in series), 0.0)
        self.peak = float(self.storm_depth(self.inflow_t[[int(np.argmax(self.inflow_q))]])[0])  # depth scale

    def inflow(self, seconds) -> np.ndarray:
        return np.interp(seconds, self.inflow_t, self.inflow_q)

    def depth_of_flow(self, flow) -> np.ndarray:
        """The channel's depth (length units) at a flow (flow units), Manning-like: D ∝ Q^0.6."""
        q = np.maximum(np.asarray(flow, dtype="float64"), 0.0) * (1.0 if self.si else CFS)
        d = DEPTH_PER_FLOW * q ** 0.6 * self.roughness ** 0.6
        return d if self.si else d / FT

    def flow_of_depth(self, depth) -> np.ndarray:
        d = np.maximum(np.asarray(depth, dtype="float64"), 0.0) * (1.0 if self.si else FT)
        q = (d / (DEPTH_PER_FLOW * self.roughness ** 0.6)) ** (1 / 0.6)
        return q if self.si else q / CFS

    def storm_depth(self, seconds) -> np.ndarray:
        return self.depth_of_flow(self.inflow(seconds))

    def breach_wave(self, seconds) -> np.ndarray:
        """0 → 1 → 0: the breach opens 15 % into the run, peaks 5 % later, recedes over 25 %."""
        x = np.asarray(seconds, dtype="float64") - 0.15 * self.span
        rise, fall = 0.05 * self.span, 0.25 * self.span
        return np.where(x < 0, 0.0, np.where(x < rise, x / max(rise, 1e-9), np.exp(-(x - rise) / max(fall, 1e-9))))


class MeshFlow:
    """The water on one mesh: a flood level sloping down the valley, rising with the inflow.

    The valley is the plane fitted to the cells' bed; what lies above it is each cell's height
    above the channel (``relief``, 0 in the channel). At time ``t`` a cell at ``s`` metres
    downstream holds ``max(D(t - s / CELERITY) - relief, 0)`` of water, ``D`` being the channel's
    depth (from the inflow, plus a breach wave in a dam-break plan). Dry cells keep their water
    surface at the bed, as HEC-RAS writes them. Velocities follow Manning on the valley slope.
    """

    def __init__(self, mesh: Mesh, storm: Storm):
        self.mesh, self.storm = mesh, storm
        real = slice(0, mesh.cell_count)
        bed = mesh.bed
        to_m = 1.0 if storm.si else FT
        if mesh.xy is not None and mesh.cell_count >= 3:
            xy = np.asarray(mesh.xy, dtype="float64")
            centre = xy[real].mean(axis=0)
            local = xy - centre
            a = np.column_stack([np.ones(mesh.cell_count), local[real]])
            coef = np.linalg.lstsq(a, bed[real], rcond=None)[0]
            trend = coef[0] + local @ coef[1:]
            gradient = coef[1:]
            slope = float(np.hypot(*gradient))
            self.direction = -gradient / slope if slope > 0 else np.array([1.0, 0.0])
            s = local @ self.direction
            distance = (s - s[real].min()) * to_m
        else:
            trend, slope, self.direction = np.zeros_like(bed), 0.001, np.array([1.0, 0.0])
            distance = np.zeros_like(bed)
        self.slope = float(np.clip(slope, 1e-4, 0.02))
        relief = bed - trend
        self.relief = np.maximum(relief - relief[real].min(), 0.0)
        self.lag = distance / CELERITY  # seconds
        self.breach = 0.0
        if storm.dam_break:  # a wave that floods nearly all of the mesh
            self.breach = 1.1 * float(np.percentile(self.relief[real], 95)) + 0.5 / to_m
        normals = mesh.face_normals
        if normals is None and mesh.face_cells is not None and mesh.xy is not None:
            d = mesh.xy[mesh.face_cells[:, 1]] - mesh.xy[mesh.face_cells[:, 0]]
            normals = d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        self.face_flow_share = None if normals is None else normals @ self.direction  # (faces,)

    def channel_depth(self, seconds: np.ndarray) -> np.ndarray:
        """``D``: the channel's depth (length units) at times ``seconds`` after the start."""
        return self.storm.storm_depth(seconds) + self.breach * self.storm.breach_wave(seconds)

    def channel_flow(self, seconds: np.ndarray) -> np.ndarray:
        """The flow carried at depth :meth:`channel_depth` (the inflow, plus the breach's)."""
        storm = self.storm
        if not self.breach:
            return storm.inflow(seconds)
        extra = storm.flow_of_depth(self.channel_depth(seconds)) - storm.flow_of_depth(storm.storm_depth(seconds))
        return storm.inflow(seconds) + np.maximum(extra, 0.0)

    def depth(self, seconds: np.ndarray, cells=slice(None)) -> np.ndarray:
        """(times, cells) water depth."""
        t = np.asarray(seconds, dtype="float64")[:, None] - self.lag[cells][None, :]
        return np.maximum(self.channel_depth(t) - self.relief[cells][None, :], 0.0)

    def speed(self, depth: np.ndarray) -> np.ndarray:
        """Manning's velocity at a depth on the valley slope (velocity units)."""
        si = self.storm.si
        h = depth * (1.0 if si else FT)
        v = np.power(h, 2.0 / 3.0) * np.sqrt(self.slope) / self.mesh.manning
        return v if si else v / FT

    def face_depth(self, depth: np.ndarray) -> np.ndarray:
        c = self.mesh.face_cells
        return 0.5 * (depth[:, c[:, 0]] + depth[:, c[:, 1]])

    def face_velocity(self, depth: np.ndarray) -> np.ndarray:
        """Velocity normal to each face (positive from cell 0 to cell 1)."""
        return self.speed(self.face_depth(depth)) * self.face_flow_share[None, :]

    def shear_stress(self, depth: np.ndarray) -> np.ndarray:
        """Bed shear stress on each face, rho g n² V² / h^(1/3) (N/m² or lb/ft²)."""
        h = self.face_depth(depth) * (1.0 if self.storm.si else FT)
        v = self.speed(self.face_depth(depth)) * (1.0 if self.storm.si else FT)
        tau = 1000.0 * G * self.mesh.manning ** 2 * v ** 2 / np.cbrt(np.maximum(h, 1e-6))
        tau = np.where(h > 0, tau, 0.0)
        return tau if self.storm.si else tau * 0.020885434
