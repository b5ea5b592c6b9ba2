"""Where the results are: 2D mesh geometry, boundary lines and the CRS, read from a HEC-RAS HDF.

Plain readers over ``h5py`` returning numpy arrays (polygons as shapely geometries, on demand):
the summaries put them beside the values, ``to_geodataframe`` turns them into a map layer.
A plan HDF normally carries its geometry; when it does not, the geometry HDF it names
(``Plan Data/Plan Information: Geometry Filename``, ``NAME.g01`` → ``NAME.g01.hdf``) beside it is
read instead. Layout (HEC-RAS 6.x, checked on real files):

- ``Geometry/2D Flow Areas/Attributes``: ``Name``, ``Cell Count`` (real cells) per mesh;
  ``Cell Info`` (start, count) and ``Cell Points``: the real cells' centres, all meshes;
- per mesh ``Geometry/2D Flow Areas/<mesh>/``: ``Cells Center Coordinate`` and ``Cells Minimum
  Elevation`` (ghost cells after the real ones), ``FacePoints Coordinate``, ``Faces FacePoint
  Indexes`` (A, B), ``Faces Perimeter Info``/``Values`` (the inner points of curved faces, A to B),
  ``Cells Face and Orientation Info``/``Values`` (each cell's faces in ring order; orientation 1
  walks a face A to B, -1 B to A);
- ``Geometry/Boundary Condition Lines/Attributes``: ``Name``, ``SA-2D`` (mesh), ``Type``;
- the CRS: the root attribute ``Projection`` (ESRI WKT), else the project's projection file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import hdf

AREAS = "Geometry/2D Flow Areas"
BC_LINES = "Geometry/Boundary Condition Lines"


def length_unit(f: h5py.File) -> str:
    """``ft`` or ``m``, from the file's units system."""
    system = hdf.text(f.attrs.get("Units System", b"")).strip().lower()
    if not system:
        system = "si" if hdf.attr(f, "Geometry", "SI Units").lower() == "true" else ""
    return "m" if system.startswith("si") else "ft" if system else ""


def has_mesh_geometry(f: h5py.File) -> bool:
    names = [n for n, _ in hdf.meshes(f)]
    return bool(names) and (f"{AREAS}/Cell Points" in f or f"{AREAS}/{names[0]}/Cells Center Coordinate" in f)


def geometry_file_beside(results: Path, f: h5py.File) -> Path | None:
    """The geometry HDF a plan HDF names, when it sits beside it."""
    name = hdf.plan_information(f).get("Geometry Filename", "")
    if not name:
        return None
    candidate = Path(results).with_name(re.split(r"[\\/]", name)[-1] + ".hdf")
    return candidate if candidate.is_file() else None


def crs_wkt(f: h5py.File, path: Path | None = None) -> str:
    """The coordinate reference system as WKT: the file's ``Projection`` attribute, else the
    projection file the project's ``.rasmap`` names, else ``""``."""
    wkt = hdf.text(f.attrs.get("Projection", b"")).strip()
    if wkt or path is None:
        return wkt
    folder = Path(path).parent
    for rasmap in sorted(folder.glob("*.rasmap")):
        m = re.search(r'<RASProjectionFilename\s+Filename="([^"]+)"', rasmap.read_text(errors="replace"))
        if m:
            candidate = folder.joinpath(*re.split(r"[\\/]", m.group(1).lstrip(".\\/")))
            if candidate.is_file():
                return candidate.read_text(errors="replace").strip()
    return ""


@dataclass
class Mesh:
    """One 2D flow area's real cells and its faces."""

    name: str
    cell_count: int
    x: np.ndarray  # cell centres, real cells only
    y: np.ndarray
    bed: np.ndarray | None  # cell minimum elevation
    area: np.ndarray | None  # cell plan area (HEC-RAS's ``Cells Surface Area``)
    face_ends: np.ndarray | None  # (faces, 4): x and y of end A, x and y of end B


def _mesh_index(f: h5py.File, name: str) -> int:
    return [n for n, _ in hdf.meshes(f)].index(name)


def cell_centres(f: h5py.File, name: str, count: int) -> np.ndarray | None:
    """(count, 2) centres of a mesh's real cells: ``Cell Points`` (as RAS Mapper and rashdf
    read them), else the first rows of ``Cells Center Coordinate``."""
    points, info = f.get(f"{AREAS}/Cell Points"), f.get(f"{AREAS}/Cell Info")
    if points is not None and info is not None:
        start, n = (int(v) for v in info[_mesh_index(f, name)])
        if n == count:
            return points[start:start + n]
    centres = f.get(f"{AREAS}/{name}/Cells Center Coordinate")
    return None if centres is None else centres[:count]


def read_meshes(f: h5py.File) -> list[Mesh]:
    """Every mesh's real cells (centres, bed elevation, area) and face end points."""
    out = []
    for name, count in hdf.meshes(f):
        xy = cell_centres(f, name, count)
        if xy is None:
            continue
        group = f[f"{AREAS}/{name}"]
        bed = group["Cells Minimum Elevation"][:count] if "Cells Minimum Elevation" in group else None
        area = group["Cells Surface Area"][:count] if "Cells Surface Area" in group else None
        ends = None
        if "Faces FacePoint Indexes" in group and "FacePoints Coordinate" in group:
            points = group["FacePoints Coordinate"][()]
            ab = group["Faces FacePoint Indexes"][()]
            ends = np.empty((len(ab), 4))
            ends[:, :2], ends[:, 2:] = points[ab[:, 0]], points[ab[:, 1]]
        out.append(Mesh(name, count, xy[:, 0], xy[:, 1], bed, area, ends))
    return out


def _ring_coordinates(group: h5py.Group, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each real cell's ring as coordinates plus the cell each belongs to, walked face by face
    (curved faces' inner points included), all in numpy."""
    info = group["Cells Face and Orientation Info"][:count].astype("int64")
    values = group["Cells Face and Orientation Values"][()]
    points = group["FacePoints Coordinate"][()]
    ab = group["Faces FacePoint Indexes"][()]
    if "Faces Perimeter Info" in group:
        p_info = group["Faces Perimeter Info"][()]
        p_values = group["Faces Perimeter Values"][()]
    else:
        p_info, p_values = np.zeros((len(ab), 2), "int64"), np.zeros((0, 2))
    starts, counts = info[:, 0], info[:, 1]
    if len(starts) and (np.diff(starts) == counts[:-1]).all():
        entries = slice(int(starts[0]), int(starts[0] + counts.sum()))  # stored in cell order: no gather
        face, forward = values[entries, 0], values[entries, 1] >= 0
    else:
        entry = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        face, forward = values[entry, 0], values[entry, 1] >= 0
    # each face's first point as walked: A forwards, B backwards (one gather from the flat pairs)
    vertex = ab.ravel()[face.astype("int64") * 2 + ~forward]
    cell = np.repeat(np.arange(count), counts)
    if not p_info[:, 1].any():  # straight faces only: one point per face
        return points[vertex], cell
    inner = p_info[face, 1].astype("int64")
    per_entry = 1 + inner  # else the first point, then the curved face's inner points
    first = np.concatenate([[0], np.cumsum(per_entry)[:-1]])
    owner = np.repeat(np.arange(len(face)), per_entry)
    k = np.arange(per_entry.sum()) - first[owner] - 1  # -1: the face's first point
    fwd = forward[owner]
    inner_index = p_info[face[owner], 0].astype("int64") + np.where(fwd, k, inner[owner] - 1 - k)
    coords = np.where((k < 0)[:, None], points[vertex[owner]], p_values[np.clip(inner_index, 0, len(p_values) - 1)])
    cell = cell[owner]
    return coords, cell


def cell_rings(path: str | Path, mesh: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every real cell's outline as plain arrays: ring coordinates (n, 2), not closed, and the
    cell (in the order of a summary's ``cell`` dimension, restarting per mesh when ``mesh`` is
    given) each point belongs to. No shapely needed; ``cell_polygons`` builds on it."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        source = f
        if not _has_faces(f):
            beside = geometry_file_beside(path, f)
            if beside is None:
                raise ValueError(f"{path.name} holds no cell faces and names no geometry HDF beside it")
            source = h5py.File(beside, "r")
        try:
            coords, cells, offset, found = [], [], 0, False
            for name, count in hdf.meshes(source):
                if mesh is not None and name != mesh:
                    continue
                found = True
                ring, cell = _ring_coordinates(source[f"{AREAS}/{name}"], count)
                coords.append(ring)
                cells.append(cell + offset)
                offset += count
        finally:
            if source is not f:
                source.close()
    if mesh is not None and not found:
        raise KeyError(f"{path.name} has no 2D flow area {mesh!r}")
    if not coords:
        return np.zeros((0, 2)), np.zeros(0, "int64")
    return np.concatenate(coords), np.concatenate(cells)


def cell_polygons(path: str | Path, mesh: str | None = None):
    """The real cells of every mesh (or one) as shapely polygons, in the order of a summary's
    ``cell`` dimension. Needs shapely (``pip install dask-hecras[geo]``)."""
    try:
        import shapely
    except ImportError as e:
        raise ImportError("cell polygons need shapely: pip install dask-hecras[geo]") from e
    coords, cell = cell_rings(path, mesh)
    if not len(cell):
        return np.empty(0, dtype=object)
    return shapely.polygons(shapely.linearrings(coords, indices=cell))


def _has_faces(f: h5py.File) -> bool:
    return all(f"{AREAS}/{name}/Cells Face and Orientation Info" in f for name, _ in hdf.meshes(f))


def boundary_lines(f: h5py.File) -> list[dict]:
    """Name, mesh and type (``External``/``Internal``) of each boundary-condition line."""
    table = f.get(f"{BC_LINES}/Attributes")
    if table is None:
        return []
    rows = table[()]
    names = rows.dtype.names
    mesh_field = next((n for n in ("SA-2D", "SA/2D") if n in names), None)
    return [{"id": i, "name": hdf.text(r["Name"]).strip(),
             "mesh": hdf.text(r[mesh_field]).strip() if mesh_field else "",
             "type": hdf.text(r["Type"]).strip() if "Type" in names else ""}
            for i, r in enumerate(rows)]


def boundary_faces(f: h5py.File, line_id: int) -> np.ndarray:
    """The face indexes of one boundary line, from the geometry's ``External Faces`` and
    ``Internal Faces`` tables (the per-face outputs' own ``Faces`` attribute is not reliable)."""
    found = []
    for table in ("External Faces", "Internal Faces"):
        d = f.get(f"{BC_LINES}/{table}")
        if d is not None and d.dtype.names and "BC Line ID" in d.dtype.names:
            rows = d[()]
            found.append(rows["Face Index"][rows["BC Line ID"] == line_id])
    return np.concatenate(found).astype("int64") if found else np.empty(0, "int64")
