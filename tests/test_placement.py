"""Which worker may run which plan: its engine, and a version that opens the plan."""

from __future__ import annotations

from dask_hecras.placement import can_run, why_not

WINDOWS = {"ras": ["6.5", "6.6"], "linux": []}
LINUX = {"ras": [], "linux": ["6.6"]}
OLD_LINUX = {"ras": [], "linux": ["6.4.1"]}


def test_ras_plans_go_to_ras_with_a_version_that_opens_them():
    assert can_run("ras", "6.6", False, WINDOWS) and can_run("ras", "6.5.0", True, WINDOWS)
    assert not can_run("ras", "6.7", False, WINDOWS)  # written by a newer HEC-RAS than any here
    assert not can_run("ras", "6.6", True, LINUX)
    assert can_run("ras", None, False, WINDOWS)  # a plan of unknown version: any will try
    assert can_run("ras", "6.6", False, {"ras": ["missing"]})  # a configured Ras.exe of unknown version


def test_linux_plans_need_preparing_and_a_linux_engine():
    assert can_run("linux", "6.6", True, LINUX) and not can_run("linux", "6.6", False, LINUX)
    assert not can_run("linux", "6.6", True, OLD_LINUX) and not can_run("linux", "6.6", True, WINDOWS)


def test_auto_takes_whichever_the_worker_has():
    assert can_run("auto", "6.6", False, WINDOWS) and can_run("auto", "6.6", True, LINUX)
    assert not can_run("auto", "6.6", False, LINUX)  # not prepared: only Ras.exe can run it


def test_the_fake_and_workers_that_never_reported_are_not_judged():
    assert can_run("fake", "9.9", False, {"ras": [], "linux": []})
    assert can_run("ras", "9.9", False, None)


def test_the_reason_names_the_engine_the_version_and_what_workers_have():
    text = why_not("auto", "6.7", True, {"pc1": WINDOWS, "node1": LINUX})
    assert text.startswith("no worker has HEC-RAS (Ras.exe) 6.7 or newer or HEC-RAS's Linux engine (RasUnsteady) 6.7")
    assert "node1: linux 6.6" in text and "pc1: ras 6.5 6.6" in text
    assert "prepared for HEC-RAS's Linux engine" in why_not("linux", "6.6", False, {"node1": LINUX})
    assert "pc2: no HEC-RAS" in why_not("ras", "6.6", False, {"pc2": {"ras": [], "linux": []}})
