"""Both notebooks run top to bottom on the demo project with the fake engine."""

from __future__ import annotations

import os
import time

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO

NOTEBOOKS = ["01-run-plans.ipynb", "02-results.ipynb"]


def run(name: str, cwd, env: dict) -> nbformat.NotebookNode:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this environment
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return nb


def outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_notebooks_run_in_order(tmp_path):
    env = {"HECRAS_RESULTS": str(tmp_path / "results"), "DASK_HECRAS__SCRATCH": str(tmp_path / "scratch")}
    started = time.monotonic()
    first = run(NOTEBOOKS[0], tmp_path, env)
    text = outputs(first)
    assert "/hecras" in text and "plans succeeded" in text
    assert "went unstable" in text  # the demo's unstable plan shows as failed, with its reason
    second = run(NOTEBOOKS[1], tmp_path, env)
    images = [o for c in second.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 5  # maximum depth per plan, a difference, the envelope, exceedance, hydrographs
    assert "higher than" in outputs(second)
    assert time.monotonic() - started < 180


def test_results_notebook_alone_makes_its_own_results(tmp_path):
    env = {"HECRAS_RESULTS": str(tmp_path / "fresh"), "DASK_HECRAS__SCRATCH": str(tmp_path / "scratch")}
    nb = run(NOTEBOOKS[1], tmp_path, env)
    assert len(list((tmp_path / "fresh" / "Demo").glob("p0*/summary.nc"))) == 5
    assert "higher than" in outputs(nb)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
