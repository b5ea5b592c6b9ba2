"""A synthetic, well-formed HEC-RAS project to try dask-hecras without HEC-RAS.

Generated from scratch (no USACE files are copied): a ``.prj``, plans, a geometry
text file and its HDF with one complete 2D mesh laid out as HEC-RAS lays one out (face
points, faces, cell rings, ghost cells, boundary-condition lines; see :func:`grid_mesh`),
unsteady flow files whose boundary lines it names, a ``.rasmap`` and a georeferenced
terrain (``.hdf``, ``.vrt`` and a real float32 GeoTIFF-style raster) in ETRS89 / UTM 32N.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

STORMS = [
    # title, short id, flow, days, computation interval, output interval
    ("10-year storm", "10yr", "u01", 1, "20SEC", "30MIN"),
    ("50-year storm", "50yr", "u02", 1, "20SEC", "30MIN"),
    ("100-year storm", "100yr", "u03", 2, "20SEC", "1HOUR"),
    ("500-year storm", "500yr", "u04", 2, "10SEC", "1HOUR"),
    ("Dam break, fair weather", "DB-fair", "u01", 1, "5SEC", "15MIN"),
    ("Dam break, PMF", "DB-PMF", "u04", 3, "5SEC", "1HOUR"),
    ("Roughness +20%", "n+20", "u03", 2, "20SEC", "1HOUR"),
    ("Roughness -20%", "n-20", "u03", 2, "20SEC", "1HOUR"),
]
PEAKS = {"u01": 2500, "u02": 4000, "u03": 5200, "u04": 8100}
# Additional 2D output asked for in a plan, as HEC-RAS 6.x writes it into the .pNN (one line per
# variable; see fake_hydraulics.ADDITIONAL_OUTPUT): the 100-year plan maps velocity and hazard.
ADDITIONAL_OUTPUT = {"100yr": ["Cell Velocity", "Cell Hydraulic Depth", "Face Shear Stress"]}
CRLF = "\r\n"


def _write_text(path: Path, lines: list[str]) -> None:
    path.write_bytes((CRLF.join(lines) + CRLF).encode("cp1252"))


def make_project(
    folder: str | Path,
    n_plans: int = 8,
    *,
    name: str = "Demo",
    cells: tuple[int, int] = (30, 20),
    terrain_mb: float = 0.05,
    behaviour: dict | None = None,
) -> Path:
    """Write a demo project into ``folder`` and return the path of its ``.prj``.

    ``behaviour`` is written as ``fake-ras.json`` (per-plan seconds and outcome for
    the fake engine); ``terrain_mb`` sizes the terrain raster (benchmarks of staging).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not 1 <= n_plans <= 99:
        raise ValueError("n_plans must be between 1 and 99 (HEC-RAS numbers plans p01..p99)")
    nx, ny = cells
    plans = []
    for i in range(n_plans):
        title, short, flow, days, dt, out = STORMS[i % len(STORMS)]
        if i >= len(STORMS):
            title, short = f"{title} ({i + 1})", f"{short}-{i + 1}"
        plans.append((f"p{i + 1:02d}", title, short, flow, days, dt, out))
    flows = sorted({p[3] for p in plans})

    prj = folder / f"{name}.prj"
    _write_text(prj, [
        f"Proj Title=Demo river and floodplain ({n_plans} plans)",
        "Current Plan=p01",
        "Default Exp/Contr=0.3,0.1",
        "SI Units",
        "Geom File=g01",
        *[f"Unsteady File={u}" for u in flows],
        *[f"Plan File={p[0]}" for p in plans],
        f"RASMap Filename={name}.rasmap",
        "Y Axis Title=Elevation",
        "X Axis Title(PF)=Main Channel Distance",
        "DSS Start Date=",
        "DSS End Date=",
    ])
    for pid, title, short, flow, days, dt, out in plans:
        end_day = 1 + days
        _write_text(folder / f"{name}.{pid}", [
            f"Plan Title={title}",
            "Program Version=6.60",
            f"Short Identifier={short}",
            f"Simulation Date=01JAN2026,0000,{end_day:02d}JAN2026,0000",
            "Geom File=g01",
            f"Flow File={flow}",
            "Subcritical Flow",
            f"Computation Interval={dt}",
            f"Output Interval={out}",
            "Instantaneous Interval=1HOUR",
            f"Mapping Interval={out}",
            "Run HTab=-1",
            "Run UNet=-1",
            "Run PostProcess=-1",
            "Run RASMapper=0",
            "UNET D1 Cores=0",
            "UNET D2 Cores=0",
            "PS Cores=0",
            "Write Detailed= 0 ",
            *[f"HDF Additional Output Variable={v}" for v in ADDITIONAL_OUTPUT.get(short.split("-")[0], [])],
            "DSS File=dss",
        ])
    _write_geometry(folder, name, nx, ny)
    for flow in flows:
        days = max(p[4] for p in plans if p[3] == flow)  # the hydrograph covers every plan using it
        _write_flow(folder / f"{name}.{flow}", flow, PEAKS[flow], hours=24 * days)
    _write_rasmap(folder / f"{name}.rasmap", name)
    _write_terrain(folder / "Terrain", nx, ny, terrain_mb)
    if behaviour:
        (folder / "fake-ras.json").write_text(json.dumps(behaviour, indent=2))
    return prj


def _flow_lines(values: np.ndarray) -> list[str]:
    """HEC-RAS tables: 8 characters per value, 10 values per line."""
    out = []
    for i in range(0, len(values), 10):
        out.append("".join(f"{v:8.2f}"[-8:] for v in values[i:i + 10]))
    return out


def _write_flow(path: Path, flow_id: str, peak: float, hours: int = 24) -> None:
    """Hourly inflow at the floodplain's upstream line: a storm peaking after 12 hours, back to
    the 50 m3/s base flow after a day, then base flow to the end of the longest plan."""
    t = np.arange(max(hours, 24) + 1) / 24.0
    hydrograph = 50 + peak * np.where(t <= 1, np.sin(np.pi * np.minimum(t, 1)) ** 2, 0.0)
    _write_text(path, [
        f"Flow Title=Inflow {flow_id} (peak {peak:g} m3/s)",
        "Program Version=6.60",
        "Use Restart= 0 ",
        "Boundary Location=                ,                ,        ,        ,                ,Floodplain      ,                ,Upstream                        ,                                ",
        "Interval=1HOUR",
        f"Flow Hydrograph= {len(hydrograph)} ",
        *_flow_lines(hydrograph),
        "Stage Hydrograph TW Check=0",
        "DSS Path=",
        "Use DSS=False",
        "Use Fixed Start Time=False",
        "Fixed Start Date/Time=,",
        "Is Critical Boundary=False",
        "Critical Boundary Flow=",
        "Boundary Location=                ,                ,        ,        ,                ,Floodplain      ,                ,Downstream                      ,                                ",
        "Friction Slope=0.001,0",
        "Precipitation Mode=Disable",
        "Wind Mode=No Wind Forces",
    ])


# --------------------------------------------------------------------------- 2D geometry

ORIGIN = (480_000.0, 5_530_000.0)  # the floodplain's south-west corner in UTM zone 32N (ETRS89), on land near Darmstadt
SPACING = 50.0  # cell size, metres
MANNING = 0.06
MESH = "Floodplain"


def terrain(x, y, height: float):
    """The demo terrain at local coordinates (metres from the floodplain's south-west corner): a
    valley falling 2 m per km to the east (downstream), its banks rising 2 % on both sides of a
    channel along ``y = height / 2``, with gentle hummocks (±0.3 m) away from the channel."""
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    off = np.abs(y - height / 2)
    hummocks = 0.3 * np.sin(2 * np.pi * x / 600.0) * np.sin(2 * np.pi * y / 420.0) * np.minimum(1.0, off / 100.0)
    return 100.0 - 0.002 * x + 0.02 * off + hummocks


def _lowest(ax, ay, bx, by, height: float, across: float = 0.0, n: int = 5) -> np.ndarray:
    """The terrain's lowest point, sampled ``n`` times along segments ``a``–``b`` (and, with
    ``across``, over the boxes they sweep northwards that far), in blocks (big meshes)."""
    out = np.empty(len(ax))
    k = np.linspace(0.0, 1.0, n)
    for lo in range(0, len(ax), 1 << 15):
        sl = slice(lo, lo + (1 << 15))
        x = ax[sl, None] + (bx[sl] - ax[sl])[:, None] * k[None, :]
        y = ay[sl, None] + (by[sl] - ay[sl])[:, None] * k[None, :]
        if across:
            x = np.repeat(x, n, axis=1)
            y = (y[:, :, None] + across * k[None, None, :]).reshape(len(x), -1)
        out[sl] = terrain(x, y, height).min(axis=1)
    return out


@dataclass
class MeshGeometry:
    """One 2D flow area as HEC-RAS stores it: ``datasets`` are the arrays under
    ``Geometry/2D Flow Areas/<name>/`` (real cells first, then one ghost cell per perimeter face)."""

    name: str
    cell_count: int
    spacing: float
    datasets: dict = field(default_factory=dict)


@dataclass
class BoundaryLine:
    """A boundary-condition line: its polyline and the mesh faces it covers, in line order
    (rows of ``External Faces``: face, face points at the start and end, stations along the line)."""

    name: str
    mesh: str
    points: np.ndarray  # (k, 2)
    faces: np.ndarray  # (n,) face indexes
    fp_start: np.ndarray
    fp_end: np.ndarray
    station_start: np.ndarray
    station_end: np.ndarray
    type: str = "External"


def grid_mesh(nx: int, ny: int, dx: float = SPACING, origin: tuple[float, float] = ORIGIN,
              name: str = MESH) -> MeshGeometry:
    """A rectangular mesh of ``nx × ny`` square cells laid out as HEC-RAS lays out a mesh,
    built with numpy alone (fast for benchmark meshes of hundreds of thousands of cells).

    Conventions read off a real HEC-RAS geometry (Muncie): each face goes from face point A to
    B with its ``Cell 0`` on the left and ``Cell 1`` (a ghost cell on the perimeter) on the right,
    its normal pointing from cell 0 to cell 1; each cell lists its faces as a counter-clockwise
    ring, orientation 1 when it is the face's cell 0 (walked A to B), -1 when it is cell 1 (B to
    A); ``Cells FacePoint Indexes`` holds the ring's vertices (as wide as the largest ring, -1
    padded); a ghost cell lists its one face (orientation -1) and the face's A and B.
    """
    ox, oy = origin
    width, height = nx * dx, ny * dx
    real = nx * ny
    ar = lambda n: np.arange(n, dtype="int32")  # noqa: E731  (index arrays stay int32, as stored: big meshes)
    ci, cj = (a.ravel() for a in np.meshgrid(ar(nx), ar(ny)))  # cell c = j * nx + i

    def point(i, j):
        return j * (nx + 1) + i

    pi, pj = (a.ravel() for a in np.meshgrid(ar(nx + 1), ar(ny + 1)))
    points = np.column_stack([ox + pi * dx, oy + pj * dx])
    on_perimeter = (pi == 0) | (pi == nx) | (pj == 0) | (pj == ny)

    # Faces: between east-west neighbours, between south-north neighbours, then the perimeter
    # (west, east, south, north edges), whose faces' ghost cells follow the real cells in that order.
    xi, xj = (a.ravel() for a in np.meshgrid(ar(nx - 1), ar(ny)))
    yi, yj = (a.ravel() for a in np.meshgrid(ar(nx), ar(ny - 1)))
    jj, ii = ar(ny), ar(nx)
    n_x, n_y = len(xi), len(yi)
    first_perimeter = n_x + n_y
    parts = [  # (cell 0, face point A, face point B, normal)
        (xj * nx + xi, point(xi + 1, xj), point(xi + 1, xj + 1), (1.0, 0.0)),
        (yj * nx + yi, point(yi + 1, yj + 1), point(yi, yj + 1), (0.0, 1.0)),
        (jj * nx, point(0, jj + 1), point(0, jj), (-1.0, 0.0)),
        (jj * nx + nx - 1, point(nx, jj), point(nx, jj + 1), (1.0, 0.0)),
        (ii, point(ii, 0), point(ii + 1, 0), (0.0, -1.0)),
        ((ny - 1) * nx + ii, point(ii + 1, ny), point(ii, ny), (0.0, 1.0)),
    ]
    cell0 = np.concatenate([p[0] for p in parts])
    fp_a = np.concatenate([p[1] for p in parts])
    fp_b = np.concatenate([p[2] for p in parts])
    normal = np.concatenate([np.tile(np.array(p[3], "float32"), (len(p[0]), 1)) for p in parts])
    del parts
    n_faces = len(cell0)
    n_ghost = n_faces - first_perimeter
    ghosts = real + ar(n_ghost)
    cell1 = np.concatenate([xj * nx + xi + 1, (yj + 1) * nx + yi, ghosts])

    # Each real cell's ring, counter-clockwise from its south-west corner: south, east, north, west.
    def fx(i, j):
        return j * (nx - 1) + i

    def fy(i, j):
        return n_x + j * nx + i

    ring_faces = np.column_stack([
        np.where(cj > 0, fy(ci, cj - 1), first_perimeter + 2 * ny + ci),
        np.where(ci < nx - 1, fx(ci, cj), first_perimeter + ny + cj),
        np.where(cj < ny - 1, fy(ci, cj), first_perimeter + 2 * ny + nx + ci),
        np.where(ci > 0, fx(ci - 1, cj), first_perimeter + cj),
    ])
    ring_orientation = np.column_stack([np.where(cj > 0, -1, 1), np.ones(real, "int32"), np.ones(real, "int32"),
                                        np.where(ci > 0, -1, 1)])
    perimeter_faces = first_perimeter + ar(n_ghost)
    face_values = np.vstack([
        np.column_stack([ring_faces.ravel(), ring_orientation.ravel()]),
        np.column_stack([perimeter_faces, -np.ones(n_ghost, "int32")]),
    ]).astype("int32")
    face_info = np.vstack([
        np.column_stack([4 * ar(real), np.full(real, 4, "int32")]),
        np.column_stack([4 * real + ar(n_ghost), np.ones(n_ghost, "int32")]),
    ]).astype("int32")
    ring_points = np.vstack([
        np.column_stack([point(ci, cj), point(ci + 1, cj), point(ci + 1, cj + 1), point(ci, cj + 1)]),
        np.column_stack([fp_a[perimeter_faces], fp_b[perimeter_faces], -np.ones((n_ghost, 2), "int32")]),
    ]).astype("int32")

    centres = np.vstack([
        np.column_stack([ox + (ci + 0.5) * dx, oy + (cj + 0.5) * dx]),
        (points[fp_a[perimeter_faces]] + points[fp_b[perimeter_faces]]) / 2,  # ghosts: the face's middle
    ])
    local = points - (ox, oy)
    a, b = local[fp_a], local[fp_b]
    face_bed = _lowest(a[:, 0], a[:, 1], b[:, 0], b[:, 1], height)  # the same samples as the cells' edges
    cell_bed = _lowest(ci * dx, cj * dx, (ci + 1) * dx, cj * dx, height, across=dx)
    total = real + n_ghost
    datasets = {
        "Cells Center Coordinate": centres,
        "Cells Center Manning's n": np.full(total, MANNING, "float32"),
        "Cells Face and Orientation Info": face_info,
        "Cells Face and Orientation Values": face_values,
        "Cells FacePoint Indexes": ring_points,
        "Cells Minimum Elevation": np.concatenate([cell_bed, np.full(n_ghost, np.nan)]).astype("float32"),
        "Cells Surface Area": np.concatenate([np.full(real, dx * dx), np.zeros(n_ghost)]).astype("float32"),
        "FacePoints Coordinate": points,
        "FacePoints Is Perimeter": np.where(on_perimeter, -1, 0).astype("int32"),
        "Faces Cell Indexes": np.column_stack([cell0, cell1]).astype("int32"),
        "Faces FacePoint Indexes": np.column_stack([fp_a, fp_b]).astype("int32"),
        "Faces Minimum Elevation": face_bed.astype("float32"),
        "Faces NormalUnitVector and Length": np.column_stack([normal, np.full(n_faces, dx)]).astype("float32"),
        "Faces Perimeter Info": np.zeros((n_faces, 2), "int32"),  # straight faces: no inner points
        "Faces Perimeter Values": np.zeros((0, 2)),
        "Perimeter": np.array([(ox, oy), (ox + width, oy), (ox + width, oy + height), (ox, oy + height), (ox, oy)]),
    }
    return MeshGeometry(name, real, dx, datasets)


def grid_boundary_lines(mesh: MeshGeometry, nx: int, ny: int) -> list[BoundaryLine]:
    """An inflow line along the mesh's west edge (``Upstream``, drawn north to south) and an
    outflow line along its east edge (``Downstream``, drawn south to north), on the faces of
    :func:`grid_mesh`'s layout."""
    dx = mesh.spacing
    (ox, oy), height = mesh.datasets["Perimeter"][0], ny * dx
    first_perimeter = (nx - 1) * ny + nx * (ny - 1)
    down = np.arange(ny)[::-1]
    up = np.arange(ny)
    return [
        BoundaryLine("Upstream", mesh.name, np.array([(ox, oy + height), (ox, oy)]),
                     faces=first_perimeter + down, fp_start=(down + 1) * (nx + 1), fp_end=down * (nx + 1),
                     station_start=height - (down + 1) * dx, station_end=height - down * dx),
        BoundaryLine("Downstream", mesh.name, np.array([(ox + nx * dx, oy), (ox + nx * dx, oy + height)]),
                     faces=first_perimeter + ny + up, fp_start=up * (nx + 1) + nx, fp_end=(up + 1) * (nx + 1) + nx,
                     station_start=up * dx, station_end=(up + 1) * dx),
    ]


_COLUMNS = {  # dataset: (Column, Row), as HEC-RAS labels them
    "Cells Center Coordinate": ([b"X", b"Y"], b"Cell"),
    "Cells Center Manning's n": ([b"Index"], b"Cell"),
    "Cells Face and Orientation Info": ([b"Starting Index", b"Count"], b"Cell"),
    "Cells Face and Orientation Values": ([b"Face Index", b"Orientation"], b"row"),
    "Cells FacePoint Indexes": ([b"Face Point Indexes"], b"Cell"),
    "Cells Minimum Elevation": ([b"Minimum Elevation"], b"Cell"),
    "Cells Surface Area": ([b"Surface Area"], b"Cell"),
    "FacePoints Coordinate": ([b"X", b"Y"], b"Face Point"),
    "FacePoints Is Perimeter": ([b"Is On Perimeter"], b"Face Point"),
    "Faces Cell Indexes": ([b"Cell 0", b"Cell 1"], b"Face"),
    "Faces FacePoint Indexes": ([b"Face Point A", b"Face Point B"], b"Face"),
    "Faces Minimum Elevation": ([b"Minimum Elevation"], b"Face"),
    "Faces NormalUnitVector and Length": ([b"X Component", b"Y Component", b"Face Length"], b"Face"),
    "Faces Perimeter Info": ([b"Start Index", b"Count"], b"Face"),
    "Faces Perimeter Values": ([b"X", b"Y"], b"row"),
    "Perimeter": ([b"X", b"Y"], b"Points"),
}


def _dataset(group: h5py.Group, name: str, data: np.ndarray, column=None, row=None, can_plot: bool | None = False):
    data = np.asarray(data)
    if data.size:
        d = group.create_dataset(name, data=data, compression="gzip", compression_opts=1)
    else:
        d = group.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:], chunks=(4096,) + data.shape[1:])
    if can_plot is not None:
        d.attrs["Can Plot"] = np.bytes_(b"True" if can_plot else b"False")
    if column is not None:
        d.attrs["Column"] = np.array(column)
    if row is not None:
        d.attrs["Row"] = np.bytes_(row)
    return d


def write_2d_flow_areas(geometry: h5py.Group, meshes: list[MeshGeometry]) -> None:
    """``Geometry/2D Flow Areas``: the attribute table, the real cells' centres of all meshes
    (``Cell Info``, ``Cell Points``), the perimeters as polygons and each mesh's arrays."""
    areas = geometry.require_group("2D Flow Areas")
    dt = np.dtype([("Name", "S16"), ("Mann", "<f4"), ("Multiple Face Mann n", "u1"), ("Composite LC", "u1"),
                   ("Cell Vol Tol", "<f4"), ("Cell Min Area Fraction", "<f4"), ("Face Profile Tol", "<f4"),
                   ("Face Area Tol", "<f4"), ("Face Conv Ratio", "<f4"), ("Laminar Depth", "<f4"),
                   ("Spacing dx", "<f4"), ("Spacing dy", "<f4"), ("Shift dx", "<f4"), ("Shift dy", "<f4"),
                   ("Cell Count", "<i4")])
    rows = [(m.name.encode(), MANNING, 0, 0, 0.01, 0.01, 0.01, 0.01, 0.02, 0.2, m.spacing, m.spacing,
             np.nan, np.nan, m.cell_count) for m in meshes]
    _dataset(areas, "Attributes", np.array(rows, dtype=dt), can_plot=None)
    counts = np.array([m.cell_count for m in meshes])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    info = _dataset(areas, "Cell Info", np.column_stack([starts, counts]).astype("int32"),
                    [b"Point Starting Index", b"Point Count"], b"Feature", can_plot=None)
    info.attrs["Feature Type"] = np.bytes_(b"MultiPoint")
    _dataset(areas, "Cell Points", np.vstack([m.datasets["Cells Center Coordinate"][:m.cell_count] for m in meshes]),
             [b"X", b"Y"], b"Points", can_plot=None)
    _write_features(areas, "Polygon", [m.datasets["Perimeter"] for m in meshes])
    for m in meshes:
        g = areas.create_group(m.name)
        centres = m.datasets["Cells Center Coordinate"][:m.cell_count]
        g.attrs["Cell Average Size"] = np.float32(m.spacing * m.spacing)
        g.attrs["Cell Maximum Size"] = np.float32(m.spacing * m.spacing)
        g.attrs["Cell Minimum Size"] = np.float32(m.spacing * m.spacing)
        g.attrs["Cell Volume Tolerance"] = np.float32(0.01)
        g.attrs["Extents"] = np.array([centres[:, 0].min() - m.spacing / 2, centres[:, 0].max() + m.spacing / 2,
                                       centres[:, 1].min() - m.spacing / 2, centres[:, 1].max() + m.spacing / 2])
        g.attrs["Laminar Depth"] = np.float32(0.2)
        g.attrs["Manning's n"] = np.float32(MANNING)
        g.attrs["Terrain Filename"] = np.bytes_(b".\\Terrain\\Terrain.hdf")
        g.attrs["Version"] = np.bytes_(b"1.0")
        for name, data in m.datasets.items():
            column, row = _COLUMNS.get(name, (None, None))
            _dataset(g, name, data, column, row)


def _write_features(group: h5py.Group, kind: str, shapes: list[np.ndarray]) -> None:
    """HEC-RAS's one-part feature tables: ``<kind> Info`` (point start, count, part start, count),
    ``<kind> Parts`` and ``<kind> Points``, as it stores mesh outlines and boundary lines."""
    sizes = np.array([len(points) for points in shapes])
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    info = _dataset(group, f"{kind} Info", np.column_stack([first, sizes, np.arange(len(shapes)),
                                                            np.ones(len(shapes), int)]).astype("int32"),
                    [b"Point Starting Index", b"Point Count", b"Part Starting Index", b"Part Count"], b"Feature",
                    can_plot=None)
    info.attrs["Feature Type"] = np.bytes_(kind.encode())
    _dataset(group, f"{kind} Parts", np.column_stack([np.zeros(len(shapes), int), sizes]).astype("int32"),
             [b"Point Starting Index", b"Point Count"], b"Part", can_plot=None)
    _dataset(group, f"{kind} Points", np.vstack(shapes).astype("float64"), [b"X", b"Y"], b"Points", can_plot=None)


def write_boundary_lines(geometry: h5py.Group, lines: list[BoundaryLine]) -> None:
    """``Geometry/Boundary Condition Lines``: attribute table, external faces and polylines."""
    bc = geometry.require_group("Boundary Condition Lines")
    dt = np.dtype([("Name", "S32"), ("SA-2D", "S16"), ("Type", "S8"), ("Length", "<f4")])
    lengths = [float(np.sum(np.hypot(*np.diff(line.points, axis=0).T))) for line in lines]
    _dataset(bc, "Attributes", np.array([(line.name.encode(), line.mesh.encode(), line.type.encode(), length)
                                         for line, length in zip(lines, lengths)], dtype=dt), can_plot=None)
    ef = np.dtype([("BC Line ID", "<i4"), ("Face Index", "<i4"), ("FP Start Index", "<i4"), ("FP End Index", "<i4"),
                   ("Station Start", "<f4"), ("Station End", "<f4")])
    external = [line for line in lines if line.type == "External"]
    table = np.zeros(sum(len(line.faces) for line in external), dtype=ef)
    k = 0
    for line_id, line in enumerate(lines):
        if line.type != "External":
            continue
        n = len(line.faces)
        for field_name, values in (("BC Line ID", line_id), ("Face Index", line.faces), ("FP Start Index", line.fp_start),
                                   ("FP End Index", line.fp_end), ("Station Start", line.station_start),
                                   ("Station End", line.station_end)):
            table[field_name][k:k + n] = values
        k += n
    _dataset(bc, "External Faces", table, can_plot=None)
    _write_features(bc, "Polyline", [line.points for line in lines])


def projection_wkt() -> str:
    """The demo's coordinate system (ETRS89 / UTM zone 32N), as ESRI WKT."""
    return ('PROJCS["ETRS_1989_UTM_Zone_32N",GEOGCS["GCS_ETRS_1989",DATUM["D_ETRS_1989",'
            'SPHEROID["GRS_1980",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
            'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
            'PARAMETER["Central_Meridian",9.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],'
            'UNIT["Meter",1.0]]')


def _num(value: float) -> str:
    """A coordinate as HEC-RAS's text files write one: plain digits, no trailing zeros."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _write_geometry(folder: Path, name: str, nx: int, ny: int) -> None:
    mesh = grid_mesh(nx, ny)
    lines = grid_boundary_lines(mesh, nx, ny)
    (ox, oy), width, height = ORIGIN, nx * SPACING, ny * SPACING
    _write_text(folder / f"{name}.g01", [
        "Geom Title=Demo floodplain (2D)",
        "Program Version=6.60",
        f"Viewing Rectangle= {_num(ox)} , {_num(ox + width)} , {_num(oy + height)} , {_num(oy)} ",
        "",
        f"Storage Area={MESH:<16},,",
        "Storage Area Surface Line= 4 ",
        *[f"{x:16.2f}{y:16.2f}" for x, y in mesh.datasets["Perimeter"][:4]],
        "Storage Area Is2D=-1",
        f"Storage Area Point Generation Data=,,{SPACING:g},{SPACING:g}",
        "",
        *[row for line in lines for row in (
            f"BC Line Name={line.name:<32}",
            f"BC Line Storage Area={line.mesh}",
            f"BC Line Start Position= {_num(line.points[0][0])} , {_num(line.points[0][1])} ",
            f"BC Line Middle Position= {_num(line.points.mean(axis=0)[0])} , {_num(line.points.mean(axis=0)[1])} ",
            f"BC Line End Position= {_num(line.points[-1][0])} , {_num(line.points[-1][1])} ",
            f"BC Line Arc= {len(line.points)} ",
            "".join(f"{v:16.2f}" for v in line.points.ravel()),
            "BC Line Text Position= 1.79769313486232E+308 , 1.79769313486232E+308 ",
        )],
        "LCMann Time=Jan/01/2026 00:00:00",
    ])
    with h5py.File(folder / f"{name}.g01.hdf", "w") as f:
        f.attrs["File Type"] = np.bytes_(b"HEC-RAS Geometry")
        f.attrs["File Version"] = np.bytes_(b"HEC-RAS 6.6 September 2024")
        f.attrs["Projection"] = np.bytes_(projection_wkt().encode())
        f.attrs["Units System"] = np.bytes_(b"SI Units")
        g = f.create_group("Geometry")
        g.attrs["Complete Geometry"] = np.bytes_(b"True")
        g.attrs["Extents"] = np.array([ox, ox + width, oy, oy + height])
        g.attrs["Geometry Time"] = np.bytes_(b"01Jan2026 00:00:00")
        g.attrs["Title"] = np.bytes_(b"Demo floodplain (2D)")
        g.attrs["Terrain Filename"] = np.bytes_(b".\\Terrain\\Terrain.hdf")
        g.attrs["Terrain Layername"] = np.bytes_(b"Terrain")
        g.attrs["SI Units"] = np.bytes_(b"True")
        write_2d_flow_areas(g, [mesh])
        write_boundary_lines(g, lines)
        real = mesh.cell_count
        rl = np.dtype([("Name", "S32"), ("SA-2D", "S32")])
        g.create_dataset("Reference Lines/Attributes", data=np.array([(b"Bridge Road", MESH.encode())], dtype=rl))
        rp = np.dtype([("Name", "S32"), ("SA/2D", "S32"), ("Cell Index", "<i4")])
        g.create_dataset("Reference Points/Attributes", data=np.array(
            [(b"Village gauge", MESH.encode(), real // 2), (b"Farm", MESH.encode(), real // 3)], dtype=rp))


def _write_rasmap(path: Path, name: str) -> None:
    path.write_text(
        '<RASMapper>\r\n'
        '  <Version>2.0.0</Version>\r\n'
        '  <RASProjectionFilename Filename=".\\Terrain\\Projection.prj" />\r\n'
        '  <Geometries Checked="True" Expanded="True">\r\n'
        f'    <Layer Name="Demo floodplain" Type="RASGeometry" Checked="True" Filename=".\\{name}.g01.hdf" />\r\n'
        '  </Geometries>\r\n'
        '  <Terrains Checked="True" Expanded="True">\r\n'
        '    <Layer Name="Terrain" Type="TerrainLayer" Checked="True" Filename=".\\Terrain\\Terrain.hdf">\r\n'
        '      <ResampleMethod>near</ResampleMethod>\r\n'
        '    </Layer>\r\n'
        '  </Terrains>\r\n'
        '  <Units>Meters</Units>\r\n'
        '</RASMapper>\r\n',
        newline="",
    )


def write_float_tiff(path: Path, width: int, height: int, row) -> None:
    """A single-strip, uncompressed float32 TIFF, written row by row (big rasters stay out of memory)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, width * height * 4), (339, 3, 1, 3)]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    entries[5] = (273, 4, 1, data_offset)
    with open(path, "wb") as f:
        f.write(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
        for tag, typ, count, value in entries:
            packed = struct.pack("<H", value) + b"\x00\x00" if typ == 3 else struct.pack("<I", value)
            f.write(struct.pack("<HHI", tag, typ, count) + packed)
        f.write(struct.pack("<I", 0))
        for j in range(height):
            f.write(np.asarray(row(j), dtype="<f4").tobytes())


def _write_terrain(folder: Path, nx: int, ny: int, terrain_mb: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Projection.prj").write_text(projection_wkt())
    width = 1000
    height = max(10, int(terrain_mb * 1024 * 1024 / (4 * width)))
    extent_x, extent_y = nx * SPACING, ny * SPACING
    x = (np.arange(width) + 0.5) * (extent_x / width)
    write_float_tiff(folder / "Terrain.demo.tif", width, height,  # row 0 is the north edge
                     lambda j: terrain(x, extent_y - (j + 0.5) * extent_y / height, extent_y))
    (ox, oy) = ORIGIN
    (folder / "Terrain.vrt").write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f'  <SRS>{projection_wkt()}</SRS>\n'
        f'  <GeoTransform>{ox!r}, {extent_x / width!r}, 0.0, {oy + extent_y!r}, 0.0, {-extent_y / height!r}</GeoTransform>\n'
        '  <VRTRasterBand dataType="Float32" band="1">\n'
        '    <SimpleSource><SourceFilename relativeToVRT="1">Terrain.demo.tif</SourceFilename></SimpleSource>\n'
        '  </VRTRasterBand>\n</VRTDataset>\n'
    )
    with h5py.File(folder / "Terrain.hdf", "w") as f:
        t = f.create_group("Terrain")
        t.attrs["Version"] = np.bytes_(b"2.0")
        layer = t.create_group("Terrain.demo")
        layer.attrs["File"] = np.bytes_(b".\\Terrain.demo.tif")


# --------------------------------------------------------------------------- HEC-RAS's Linux engine


def make_linux_install(folder: str | Path, version: str = "6.6", *, geometry_preprocessor: bool = True) -> Path:
    """A stand-in of HEC-RAS's Linux engine at ``<folder>/<version>/``, laid out as the real one:
    ``RasUnsteady`` and ``RasGeomPreprocess`` (shell scripts running
    ``python -m dask_hecras.fake_linux <program> "$@"`` with this interpreter) and ``libs/``,
    ``libs/mkl``, ``libs/rhel_8`` holding stand-ins of the libraries the fake checks it can find
    on ``LD_LIBRARY_PATH``. List ``folder`` in ``hecras.linux-roots`` to use it. Returns
    ``<folder>/<version>``."""
    import shlex
    import stat
    import sys

    from .fake_linux import GEOMETRY_PREPROCESSOR, LIBRARIES, MARKER, UNSTEADY

    home = Path(folder) / version
    for sub, library in LIBRARIES.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        (home / sub / MARKER.format(library)).write_text(f"stand-in of {library} for dask_hecras.fake_linux\n")
    for program in (UNSTEADY, *([GEOMETRY_PREPROCESSOR] if geometry_preprocessor else [])):
        script = home / program
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m dask_hecras.fake_linux {program} "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return home


def prepare_for_linux(prj: str | Path, plan_id: str, *, hdf: str | None = "tmp", x_file: bool = True,
                      ic_file: bool = True) -> list[Path]:
    """Write what Windows HEC-RAS writes beside a plan when it computes it, and HEC-RAS's Linux
    engine reads: ``NAME.pPP.tmp.hdf`` (``hdf="tmp"``) or ``NAME.pPP.hdf`` (``hdf="plan"``; the
    same input groups, no results), laid out as HEC-RAS lays it out (root attributes ``File
    Type``, ``File Version``, ``Projection``, ``Units System``; groups ``Geometry``, ``Plan Data``,
    ``Event Conditions``); ``NAME.bPP`` (boundary conditions and run settings, naming the plan
    as the real file does); ``NAME.xGG`` and ``NAME.ic.oPP`` (stand-in contents). Returns the
    files written."""
    from .engines.linux import uses_restart
    from .fake_ras import Behaviour, Run, _interval_text
    from .project import Plan, first, key_values, read_text

    prj = Path(prj)
    plan = Plan.from_file(prj, plan_id.lower())
    name, pp, gg = plan.project_name, plan.id[1:], plan.geometry[1:]
    folder = plan.folder
    written = []
    if hdf is not None:
        if hdf not in ("tmp", "plan"):
            raise ValueError(f"hdf is 'tmp', 'plan' or None, not {hdf!r}")
        run = Run(prj, plan.file, Behaviour(seconds=0.0))
        run.write_start()  # what HEC-RAS has written into the tmp.hdf by the time its solver starts
        if hdf == "plan":
            run.tmp.replace(folder / plan.results_name)
        written.append(run.tmp if hdf == "tmp" else folder / plan.results_name)
    title = first(key_values(read_text(prj, prj)), "Proj Title", "") or ""
    start = plan.start.strftime("%d%b%Y %H%M") if plan.start else ""
    end = plan.end.strftime("%d%b%Y %H%M") if plan.end else ""
    b = folder / f"{name}.b{pp}"
    _write_text(b, [
        "HEC-RAS 6.6 September 2024 (stand-in written by dask_hecras.examples.prepare_for_linux)",
        "Project Title, Plan Title and Plan ShortID",
        title,
        plan.title,
        f"{plan.short_id:<64}",
        "Job Control Information",
        f"  Computation Interval  = {_interval_text(plan.computation_interval)}",
        f"  Hydrograph Interval   = {_interval_text(plan.output_interval)}",
        "  Write HDF5 File       =        T",
        "Computational Time Window",
        f"  Start Date/Time       = {start}",
        f"  End Date/Time         = {end}",
        "Initial Conditions (use restart file?)",
        f"       {'T' if uses_restart(plan) else 'F'}",
    ])
    written.append(b)
    if x_file:
        x = folder / f"{name}.x{gg}"
        x.write_bytes(f"stand-in geometry run file of {name}.g{gg} (dask_hecras.examples.prepare_for_linux)\r\n".encode())
        written.append(x)
    if ic_file:
        ic = folder / f"{name}.ic.o{pp}"
        ic.write_bytes(b"\x00" * 64)  # binary initial conditions, in the real file
        written.append(ic)
    return written

