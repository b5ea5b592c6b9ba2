"""The HEC-RAS page's map: the maximum depth of the plan picked in the table, or the envelope of
the plans landed so far (the deepest of each cell, and which plan set it), on the mesh.

The landed results are read in a thread, never on the scheduler's event loop: a 250,000-cell
summary takes a fraction of a second to read, which would stall every worker's heartbeat. The
envelope reads only each newly landed plan's maximum depth (one array from its summary) and then
sends the browser only the changed values, not the mesh again.
Meshes up to ``MAX_POLYGONS`` cells are drawn as cell polygons, bigger ones as cell centres
(a browser does not want a quarter of a million polygons).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_POLYGONS = 50_000
DRY = 0.01  # depth below which a cell is drawn as dry (blank)
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hecras-map")


def read_depth(folder: str | Path) -> dict:
    """What the map draws of one landed plan: cell outlines (or centres) and maximum depth."""
    from . import geometry, records
    from .summary import summarise

    here = records.current_folder(Path(folder))
    hdfs = sorted(here.glob("*.p[0-9][0-9].hdf"))
    if not hdfs:
        raise FileNotFoundError(f"no results HDF in {here}")
    ds = summarise(hdfs[0], time_series=False)
    if "max_depth" not in ds:
        raise ValueError(f"{hdfs[0].name} has no 2D mesh with bed elevations: no depth to map")
    depth = ds["max_depth"].values.astype("float64")
    value = np.where(depth > DRY, depth, np.nan)
    units = ds["max_depth"].attrs.get("units", "")
    if depth.size <= MAX_POLYGONS:  # outlines as one flat array of points and each cell's slice of it
        coords, cell = geometry.cell_rings(hdfs[0])
        bounds = np.searchsorted(cell, np.arange(depth.size + 1))
        return {"shape": "polygons", "x": coords[:, 0], "y": coords[:, 1], "start": bounds[:-1],
                "stop": bounds[1:], "value": value, "units": units}
    return {"shape": "points", "x": ds["x"].values, "y": ds["y"].values, "value": value, "units": units}


def _summary_depth(folder: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One landed plan's maximum depth and cell centres' x (to tell meshes apart), from its summary."""
    import h5py

    from . import records

    with h5py.File(records.current_folder(Path(folder)) / "summary.nc", "r") as f:
        return f["max_depth"][()].astype("float64"), f["x"][()] if "x" in f else None


class Envelope:
    """The deepest water of each cell over the landed plans of one mesh, folded in as they land."""

    def __init__(self, folder: str, label: str):
        self.mesh = read_depth(folder)  # outlines (or centres) drawn once
        self.depth, self.x = _summary_depth(folder)
        self.depth = np.where(np.isfinite(self.depth), self.depth, -np.inf)
        self.by = np.zeros(self.depth.size, "int32")
        self.labels, self.folded, self.other_meshes = [label], {folder}, 0

    def fold(self, landed: list[tuple[str, str]]) -> None:
        """Add the plans not yet folded in; plans of another mesh are counted, not drawn."""
        for folder, label in landed:
            if folder in self.folded:
                continue
            self.folded.add(folder)
            depth, x = _summary_depth(folder)
            if depth.shape != self.depth.shape or not np.array_equal(x, self.x):  # another mesh
                self.other_meshes += 1
                continue
            deeper = np.isfinite(depth) & (depth > self.depth)
            self.depth[deeper] = depth[deeper]
            self.by[deeper] = len(self.labels)
            self.labels.append(label)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """Each cell's deepest water (NaN where dry) and the index in ``labels`` of the plan that set it."""
        value = np.where(self.depth > DRY, self.depth, np.nan)
        return value, np.where(np.isnan(value), -1, self.by).astype("int32")


class PlanMap:
    """A figure on the page showing one plan's maximum depth (``show(folder, label)``) or the
    envelope of the plans landed so far (``landed(...)`` each refresh, when chosen)."""

    def __init__(self, doc):
        from bokeh.models import (ColorBar, ColumnDataSource, CustomJS, Div, LinearColorMapper, NumeralTickFormatter,
                                  RadioButtonGroup)
        from bokeh.palettes import Blues256
        from bokeh.plotting import figure

        self.doc = doc
        self.shown: str | None = None
        self.envelope: Envelope | None = None
        self.reading = False  # one read at a time; the next refresh picks up what landed meanwhile
        self.mode = RadioButtonGroup(labels=["Plan picked", "Envelope so far"], active=0, name="hecras-map-mode")
        self.mode.on_change("active", lambda attr, old, new: self._mode_changed())
        self._landed: list[tuple[str, str]] = []
        self.mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0, high=1, nan_color=(0, 0, 0, 0))
        # What the server sends: flat arrays (one binary buffer each, whatever the mesh size). A
        # list of 50,000 small outline arrays took Bokeh 3 s to serialise on the scheduler's event
        # loop; the browser cuts the outlines out of the flat arrays itself (``_UNPACK``).
        self.mesh = ColumnDataSource({"x": [], "y": []}, name="hecras-map-mesh", tags=["", 0])
        self.values = ColumnDataSource({"value": [], "code": [], "start": [], "stop": []},
                                       name="hecras-map-values", tags=[0])
        self.labels = ColumnDataSource({"label": []}, name="hecras-map-labels")
        # what is drawn, filled in the browser only (never sent back to the server)
        self.cells = ColumnDataSource({"xs": [], "ys": [], "value": [], "plan": []}, name="hecras-map-cells",
                                      syncable=False)
        self.points = ColumnDataSource({"x": [], "y": [], "value": [], "plan": []}, name="hecras-map-points",
                                       syncable=False)
        unpack = CustomJS(args={"mesh": self.mesh, "vals": self.values, "labels": self.labels,
                                "cells": self.cells, "points": self.points}, code=_UNPACK)
        for source in (self.mesh, self.values, self.labels):
            source.js_on_change("data", unpack)
        # The flat sources reach the page's document only through a drawn model's references:
        # hang the same callback on the drawn cells (their tags never change).
        self.cells.js_on_change("tags", unpack)
        self._version = 0
        self.figure = figure(height=380, sizing_mode="stretch_width", match_aspect=True, name="hecras-map",
                             title="Maximum depth: pick a succeeded plan in the table",
                             tools="pan,wheel_zoom,box_zoom,reset,hover", tooltips=[("max depth", "@value"), ("plan", "@plan")])
        self.figure.patches(xs="xs", ys="ys", source=self.cells, line_color=None,
                            fill_color={"field": "value", "transform": self.mapper})
        self.figure.scatter(x="x", y="y", source=self.points, size=3, line_color=None,
                            fill_color={"field": "value", "transform": self.mapper})
        self.figure.add_layout(ColorBar(color_mapper=self.mapper, title="max depth"), "right")
        for axis in (self.figure.xaxis, self.figure.yaxis):
            axis.formatter = NumeralTickFormatter(format="0")  # map coordinates in full
        self.note = Div(text="", css_classes=["hecras-map-note"])

    def show(self, folder: str, label: str) -> None:
        """Read the plan's landed results in a thread, then draw them (unless the envelope is shown)."""
        if not folder or folder == self.shown:
            return
        self.shown = folder
        if self.mode.active == 0:
            self._read(read_depth, folder, then=partial(self._draw, label=label))

    def landed(self, plans: list[tuple[str, str]]) -> None:
        """The succeeded plans' (folder, label), oldest first, given each refresh: cheap unless the
        envelope is shown and a plan landed since it was last read."""
        self._landed = plans
        if self.mode.active != 1 or self.reading or not plans:
            return
        if self.envelope is not None and {f for f, _ in plans} <= self.envelope.folded:
            return
        def fold(envelope: Envelope | None) -> Envelope:
            envelope = envelope or Envelope(*plans[-1] if self.shown is None else self._shown_plan(plans))
            envelope.fold(plans)
            return envelope
        self._read(fold, self.envelope, then=self._draw_envelope)

    def _shown_plan(self, plans):
        return next(((f, label) for f, label in plans if f == self.shown), plans[-1])

    def _mode_changed(self) -> None:
        if self.mode.active == 1:
            self.landed(self._landed)
        elif self.shown:
            folder, self.shown = self.shown, None
            self.show(folder, dict(self._landed).get(folder, folder))

    def _read(self, read, *args, then) -> None:
        self.reading = True
        future = _READER.submit(read, *args)

        def done(f):
            self.doc.add_next_tick_callback(partial(self._done, then, f))
        future.add_done_callback(done)

    def _done(self, then, future) -> None:
        self.reading = False
        try:
            data = future.result()
        except Exception as e:  # nothing landed there, or no mesh: say so on the page
            self.note.text = f"No map: {e}"
            return
        then(data)

    def _draw(self, data: dict, label: str) -> None:
        if self.mode.active != 0:
            return
        self._put(data, data["value"], np.zeros(len(data["value"]), "int32"), [label])
        self.figure.title.text = f"Maximum depth [{data['units']}]: {label}"

    def _draw_envelope(self, envelope: Envelope) -> None:
        if self.mode.active != 1:
            return
        value, code = envelope.values()
        self._put(None if envelope is self.envelope else envelope.mesh, value, code, envelope.labels)
        self.envelope = envelope
        n, other = len(envelope.labels), envelope.other_meshes
        self.figure.title.text = (f"Maximum depth [{envelope.mesh['units']}]: envelope of {n} landed plan"
                                  f"{'s' if n != 1 else ''}" + (f" ({other} of other meshes left out)" if other else ""))
        self.landed(self._landed)  # plans that landed while this was read

    def _put(self, mesh: dict | None, value: np.ndarray, code: np.ndarray, labels: list[str]) -> None:
        """Send the browser the values (and the mesh, unless ``None``: the one it has)."""
        finite = value[np.isfinite(value)]
        self.mapper.high = float(finite.max()) if finite.size else 1.0
        self.labels.data = {"label": list(labels)}
        if mesh is not None:
            self._version += 1
            none = np.zeros(len(value), "int32")  # (points: every column as long as the others)
            self._bounds = (mesh["start"], mesh["stop"]) if mesh["shape"] == "polygons" else (none, none)
            self.mesh.tags = [mesh["shape"], self._version]
            self.mesh.data = {"x": mesh["x"], "y": mesh["y"]}
        self.values.tags = [self._version]
        self.values.data = {"value": value, "code": code, "start": self._bounds[0], "stop": self._bounds[1]}
        self.note.text = ""


# In the browser: cut each cell's outline out of the flat arrays (or take the centres), and name
# the plan of each cell from its code; only when the values belong to the mesh it holds.
_UNPACK = """
const shape = mesh.tags[0], x = mesh.data.x, y = mesh.data.y;
const v = vals.data.value, code = vals.data.code, a = vals.data.start, b = vals.data.stop;
if (mesh.tags[1] !== vals.tags[0] || v.length === 0) return;
const names = labels.data.label;
const plan = Array.from(code, c => (c >= 0 && c < names.length) ? names[c] : "");
if (shape === "polygons") {
    const xs = new Array(v.length), ys = new Array(v.length);
    for (let i = 0; i < v.length; i++) { xs[i] = x.slice(a[i], b[i]); ys[i] = y.slice(a[i], b[i]); }
    cells.data = {xs: xs, ys: ys, value: v, plan: plan};
    points.data = {x: [], y: [], value: [], plan: []};
} else {
    points.data = {x: x, y: y, value: v, plan: plan};
    cells.data = {xs: [], ys: [], value: [], plan: []};
}
"""
