"""Shared fixtures: a fresh demo project, the real HEC-RAS files in ../shared, clean config."""

from __future__ import annotations

import copy
import gc
import hashlib
import shutil
import time
from pathlib import Path

import dask.config
import pytest

from dask_hecras.examples import make_project

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def try_client(address: str, **kwargs):
    """``Client(address, **kwargs)``, or the exception it raised.

    A Client that fails to connect is left in a reference cycle (its traceback holds it). When
    the garbage collector frees it, its ``__del__`` stops its loop runner, which takes the lock
    that ``LoopRunner.start`` holds for the whole class (distributed 2025.x): were it freed while
    the next Client starts, that thread would wait on itself forever. It is freed here instead.
    """
    from distributed import Client

    try:
        return Client(address, **kwargs)
    except Exception as e:  # noqa: BLE001 - handed back to the caller
        error = e.with_traceback(None)
    gc.collect()
    return error


def connect(address: str, *, within: float = 60.0, between=lambda: None, explain=lambda: "", **kwargs):
    """A Client to a scheduler that may still be starting (or restarting): tries for ``within``
    seconds, calling ``between`` after each refusal (it may fail the test early)."""
    deadline = time.monotonic() + within
    while True:
        client = try_client(address, **kwargs)
        if not isinstance(client, BaseException):
            return client
        if not isinstance(client, (OSError, TimeoutError)):
            raise client
        if time.monotonic() > deadline:
            raise AssertionError(f"no scheduler at {address}: {client}\n{explain()}")
        between()
        time.sleep(0.3)


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real HEC-RAS files not found at {REALDATA} (they live beside the repository, in ../shared)")
    return REALDATA


@pytest.fixture(autouse=True)
def _clean_config(tmp_path):
    """Each test gets its own scratch root and default settings, and leaves none behind (nor garbage Clients).

    Code under test may merge a settings file into the global config (``dask-hecras worker
    --config``); ``dask.config.set`` only undoes the keys it set itself, so the whole
    config is put back as it was.
    """
    saved = copy.deepcopy(dask.config.config)
    try:
        # HEC-RAS cannot run here: what a test runs without naming an engine is the fake one (a
        # user's default is ras; tests of that default run the CLI in a process of its own).
        with dask.config.set({"hecras.scratch": str(tmp_path / "scratch"), "hecras.allowed-roots": [],
                              "hecras.engine": "fake"}):
            yield
    finally:
        # A Client a test failed to start is freed now, not inside the next one's start (see
        # try_client); and before the config is put back: closing, it restores the settings it
        # replaced when it started (``scheduler: dask.distributed`` if another Client was open).
        gc.collect()
        dask.config.config.clear()
        dask.config.config.update(saved)
        for defaults in dask.config.defaults:  # of modules first imported during the test
            dask.config.update(dask.config.config, copy.deepcopy(defaults), priority="old")


@pytest.fixture
def demo(tmp_path) -> Path:
    """A demo project with four plans; returns its .prj."""
    return make_project(tmp_path / "project", n_plans=4)


@pytest.fixture
def results(tmp_path) -> Path:
    return tmp_path / "results"


def folder_digest(folder: Path) -> dict[str, str]:
    """Name → SHA-256 (and mtime) of every file under ``folder``: any write shows."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mtime_ns}"
    return out


def copy_muncie(realdata: Path, dest: Path) -> Path:
    """The real Muncie geometry and flow files with a .prj and plan written around them."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Muncie.g05", "Muncie.g05.hdf", "Muncie.u02", "projection.prj"):
        shutil.copy2(realdata / "muncie" / name, dest / name)
    (dest / "Muncie.prj").write_bytes(
        b"Proj Title=Muncie\r\nCurrent Plan=p01\r\nEnglish Units\r\nGeom File=g05\r\n"
        b"Unsteady File=u02\r\nPlan File=p01\r\nRASMap Filename=Muncie.rasmap\r\n"
    )
    (dest / "Muncie.p01").write_bytes(
        b"Plan Title=Unsteady Multi 9-SA run\r\nProgram Version=6.50\r\nShort Identifier=9-SAs\r\n"
        b"Simulation Date=02JAN1900,0000,02JAN1900,2400\r\nGeom File=g05\r\nFlow File=u02\r\n"
        b"Computation Interval=15SEC\r\nOutput Interval=1HOUR\r\nMapping Interval=1HOUR\r\n"
        b"Run HTab=-1\r\nRun UNet=-1\r\nUNET D2 Cores=0\r\n"
    )
    (dest / "Muncie.rasmap").write_bytes(
        b'<RASMapper>\r\n  <RASProjectionFilename Filename=".\\projection.prj" />\r\n</RASMapper>\r\n'
    )
    return dest / "Muncie.prj"
