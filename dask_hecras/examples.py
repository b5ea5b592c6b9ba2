"""A synthetic, well-formed HEC-RAS project to try dask-hecras without HEC-RAS.

Generated from scratch (no USACE files are copied): a ``.prj``, plans, a geometry
text file and its HDF with one 2D mesh (ghost cells included, as HEC-RAS stores
them), unsteady flow files, a ``.rasmap`` and a terrain (``.hdf``, ``.vrt`` and a
real float32 GeoTIFF-style raster).
"""

from __future__ import annotations

import json
import struct
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
            "DSS File=dss",
        ])
    _write_geometry(folder, name, nx, ny)
    for flow in flows:
        _write_flow(folder / f"{name}.{flow}", flow, PEAKS[flow])
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


def _write_flow(path: Path, flow_id: str, peak: float) -> None:
    t = np.linspace(0, 1, 25)
    hydrograph = 50 + peak * np.sin(np.pi * t) ** 2
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


def _grid_mesh(nx: int, ny: int, dx: float = 50.0):
    """A rectangular mesh stored as HEC-RAS stores one: real cells first, then one
    ghost cell per perimeter face."""
    xs = (np.arange(nx) + 0.5) * dx
    ys = (np.arange(ny) + 0.5) * dx
    cx, cy = np.meshgrid(xs, ys)
    centres = np.column_stack([cx.ravel(), cy.ravel()])
    real = nx * ny
    # Bed: a valley sloping downstream (x) with a channel in the middle (y).
    bed = 100.0 - 0.002 * centres[:, 0] + 0.02 * np.abs(centres[:, 1] - ny * dx / 2)
    cell = lambda i, j: j * nx + i
    faces, ghosts = [], []
    for j in range(ny):
        for i in range(nx - 1):
            faces.append((cell(i, j), cell(i + 1, j)))
    for j in range(ny - 1):
        for i in range(nx):
            faces.append((cell(i, j), cell(i, j + 1)))
    perimeter = [(cell(0, j), (-dx / 2, 0)) for j in range(ny)] + [(cell(nx - 1, j), (dx / 2, 0)) for j in range(ny)]
    perimeter += [(cell(i, 0), (0, -dx / 2)) for i in range(nx)] + [(cell(i, ny - 1), (0, dx / 2)) for i in range(nx)]
    for k, (c, (ox, oy)) in enumerate(perimeter):
        g = real + k
        faces.append((c, g))
        ghosts.append(centres[c] + (ox, oy))
    all_centres = np.vstack([centres, np.array(ghosts)])
    all_bed = np.concatenate([bed, np.full(len(ghosts), np.nan)])
    return all_centres, all_bed.astype("float32"), np.array(faces, dtype="int32"), real


def _write_geometry(folder: Path, name: str, nx: int, ny: int) -> None:
    mesh = "Floodplain"
    centres, bed, faces, real = _grid_mesh(nx, ny)
    _write_text(folder / f"{name}.g01", [
        "Geom Title=Demo floodplain (2D)",
        "Program Version=6.60",
        f"Viewing Rectangle= 0 , {nx * 50} , {ny * 50} , 0 ",
        "",
        f"Storage Area={mesh:<16},,",
        "Storage Area Surface Line= 4 ",
        f"{0:16.2f}{0:16.2f}",
        f"{nx * 50:16.2f}{0:16.2f}",
        f"{nx * 50:16.2f}{ny * 50:16.2f}",
        f"{0:16.2f}{ny * 50:16.2f}",
        "Storage Area Is2D=-1",
        "Storage Area Point Generation Data=,,50,50",
        "",
        "LCMann Time=Jan/01/2026 00:00:00",
    ])
    with h5py.File(folder / f"{name}.g01.hdf", "w") as f:
        f.attrs["File Type"] = np.bytes_(b"HEC-RAS Geometry")
        f.attrs["File Version"] = np.bytes_(b"HEC-RAS 6.6 September 2024")
        f.attrs["Units System"] = np.bytes_(b"SI Units")
        g = f.create_group("Geometry")
        g.attrs["Title"] = np.bytes_(b"Demo floodplain (2D)")
        g.attrs["Terrain Filename"] = np.bytes_(b".\\Terrain\\Terrain.hdf")
        g.attrs["SI Units"] = np.bytes_(b"True")
        dt = np.dtype([("Name", "S16"), ("Mann", "<f4"), ("Cell Vol Tol", "<f4"), ("Spacing dx", "<f4"),
                       ("Spacing dy", "<f4"), ("Cell Count", "<i4")])
        g.create_dataset("2D Flow Areas/Attributes", data=np.array([(mesh.encode(), 0.06, 0.01, 50, 50, real)], dtype=dt))
        m = g.create_group(f"2D Flow Areas/{mesh}")
        m.create_dataset("Cells Center Coordinate", data=centres)
        m.create_dataset("Cells Minimum Elevation", data=bed)
        m.create_dataset("Faces Cell Indexes", data=faces)
        m.create_dataset("Faces FacePoint Indexes", data=np.zeros_like(faces))
        rl = np.dtype([("Name", "S32"), ("SA-2D", "S32")])
        g.create_dataset("Reference Lines/Attributes", data=np.array([(b"Bridge Road", mesh.encode())], dtype=rl))
        rp = np.dtype([("Name", "S32"), ("SA/2D", "S32"), ("Cell Index", "<i4")])
        g.create_dataset("Reference Points/Attributes", data=np.array(
            [(b"Village gauge", mesh.encode(), real // 2), (b"Farm", mesh.encode(), real // 3)], dtype=rp))


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
    (folder / "Projection.prj").write_text(
        'PROJCS["ETRS_1989_UTM_Zone_32N",GEOGCS["GCS_ETRS_1989",DATUM["D_ETRS_1989",'
        'SPHEROID["GRS_1980",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
        'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
        'PARAMETER["Central_Meridian",9.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],'
        'UNIT["Meter",1.0]]'
    )
    width = 1000
    height = max(10, int(terrain_mb * 1024 * 1024 / (4 * width)))
    x = np.arange(width) * (nx * 50.0 / width)
    write_float_tiff(folder / "Terrain.demo.tif", width, height,
                     lambda j: 100.0 - 0.002 * x + 0.02 * abs(j * ny * 50.0 / height - ny * 25.0))
    (folder / "Terrain.vrt").write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        '  <VRTRasterBand dataType="Float32" band="1">\n'
        '    <SimpleSource><SourceFilename relativeToVRT="1">Terrain.demo.tif</SourceFilename></SimpleSource>\n'
        '  </VRTRasterBand>\n</VRTDataset>\n'
    )
    with h5py.File(folder / "Terrain.hdf", "w") as f:
        t = f.create_group("Terrain")
        t.attrs["Version"] = np.bytes_(b"2.0")
        layer = t.create_group("Terrain.demo")
        layer.attrs["File"] = np.bytes_(b".\\Terrain.demo.tif")
