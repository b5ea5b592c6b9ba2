"""The HEC-RAS page's map: the maximum depth of the plan picked in the table, on its mesh.

The landed results are read in a thread, never on the scheduler's event loop: a 250,000-cell
summary takes a fraction of a second to read, which would stall every worker's heartbeat.
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
    if depth.size <= MAX_POLYGONS:
        coords, cell = geometry.cell_rings(hdfs[0])
        bounds = np.searchsorted(cell, np.arange(depth.size + 1))
        xs = [coords[a:b, 0] for a, b in zip(bounds[:-1], bounds[1:])]
        ys = [coords[a:b, 1] for a, b in zip(bounds[:-1], bounds[1:])]
        return {"shape": "polygons", "xs": xs, "ys": ys, "value": value, "units": units}
    return {"shape": "points", "x": ds["x"].values, "y": ds["y"].values, "value": value, "units": units}


class PlanMap:
    """A figure on the page showing one plan's maximum depth; ``show(folder, label)`` picks it."""

    def __init__(self, doc):
        from bokeh.models import ColorBar, ColumnDataSource, Div, LinearColorMapper, NumeralTickFormatter
        from bokeh.palettes import Blues256
        from bokeh.plotting import figure

        self.doc = doc
        self.shown: str | None = None
        self.mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0, high=1, nan_color=(0, 0, 0, 0))
        self.cells = ColumnDataSource({"xs": [], "ys": [], "value": []}, name="hecras-map-cells")
        self.points = ColumnDataSource({"x": [], "y": [], "value": []}, name="hecras-map-points")
        self.figure = figure(height=380, sizing_mode="stretch_width", match_aspect=True, name="hecras-map",
                             title="Maximum depth: pick a succeeded plan in the table",
                             tools="pan,wheel_zoom,box_zoom,reset,hover", tooltips=[("max depth", "@value")])
        self.figure.patches(xs="xs", ys="ys", source=self.cells, line_color=None,
                            fill_color={"field": "value", "transform": self.mapper})
        self.figure.scatter(x="x", y="y", source=self.points, size=3, line_color=None,
                            fill_color={"field": "value", "transform": self.mapper})
        self.figure.add_layout(ColorBar(color_mapper=self.mapper, title="max depth"), "right")
        for axis in (self.figure.xaxis, self.figure.yaxis):
            axis.formatter = NumeralTickFormatter(format="0")  # map coordinates in full
        self.note = Div(text="", css_classes=["hecras-map-note"])

    def show(self, folder: str, label: str) -> None:
        """Read the plan's landed results in a thread, then draw them."""
        if not folder or folder == self.shown:
            return
        self.shown = folder
        future = _READER.submit(read_depth, folder)
        future.add_done_callback(lambda f: self.doc.add_next_tick_callback(partial(self._draw, f, label)))

    def _draw(self, future, label: str) -> None:
        try:
            data = future.result()
        except Exception as e:  # nothing landed there, or no mesh: say so on the page
            self.note.text = f"No map for {label}: {e}"
            return
        finite = data["value"][np.isfinite(data["value"])]
        self.mapper.high = float(finite.max()) if finite.size else 1.0
        if data["shape"] == "polygons":
            self.cells.data = {"xs": data["xs"], "ys": data["ys"], "value": data["value"]}
            self.points.data = {"x": [], "y": [], "value": []}
        else:
            self.points.data = {"x": data["x"], "y": data["y"], "value": data["value"]}
            self.cells.data = {"xs": [], "ys": [], "value": []}
        self.figure.title.text = f"Maximum depth [{data['units']}]: {label}"
        self.note.text = ""
