"""validate() on real HEC-RAS files and on damaged copies of them."""

from __future__ import annotations

import shutil

import dask.config
import h5py
import numpy as np
import pytest

from dask_hecras import validate


def test_real_baxter_succeeded(realdata):
    v = validate(realdata / "results" / "Baxter.p01.hdf")
    assert v.status == "succeeded" and v.ok and not v.retryable
    assert v.version == "6.5"
    assert abs(v.run_seconds - (2266 + 625) / 1000) < 1e-9  # the Compute Processes rows
    assert "Complete Process" in v.messages


def test_damaged_copies(realdata, tmp_path):
    src = realdata / "results" / "Baxter.p01.hdf"
    flag = tmp_path / "flag" / "Baxter.p01.hdf"
    flag.parent.mkdir()
    shutil.copy(src, flag)
    with h5py.File(flag, "a") as f:
        f["Event Conditions"].attrs["Completed Successfully"] = b"False"
    v = validate(flag)
    assert v.status == "failed" and not v.retryable and "Completed Successfully = False" in v.reason

    cut = tmp_path / "cut" / "Baxter.p01.hdf"
    cut.parent.mkdir()
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    v = validate(cut)
    assert v.status == "corrupt" and v.retryable and "Baxter.p01.hdf" in v.reason

    gone = tmp_path / "gone" / "Baxter.p01.hdf"
    gone.parent.mkdir()
    assert validate(gone).status == "missing"
    (gone.parent / "Baxter.p01.tmp.hdf").write_bytes(b"")
    v = validate(gone)
    assert v.status == "incomplete" and v.retryable and "Baxter.p01.tmp.hdf" in v.reason

    beside = tmp_path / "beside" / "Baxter.p01.hdf"
    beside.parent.mkdir()
    shutil.copy(src, beside)
    (beside.parent / "Baxter.p01.tmp.hdf").write_bytes(b"")
    assert validate(beside).status == "incomplete"


def test_terminated_message_is_a_failure_with_the_line_quoted(realdata, tmp_path):
    hdf = tmp_path / "Baxter.p01.hdf"
    shutil.copy(realdata / "results" / "Baxter.p01.hdf", hdf)
    with h5py.File(hdf, "a") as f:
        text = f["Results/Summary/Compute Messages (text)"][0].decode()
        text = text.replace("Finished Steady Flow Simulation",
                            "ERROR: flow data missing for profile 'Big'\r\nSteady Flow Simulation Terminated")
        del f["Results/Summary/Compute Messages (text)"]
        f["Results/Summary/Compute Messages (text)"] = [text.encode()]
    v = validate(hdf)
    assert v.status == "failed" and not v.retryable and not v.ok
    assert any("Steady Flow Simulation Terminated" in r for r in v.reasons)
    assert any("flow data missing" in r for r in v.reasons)
    assert v.run_seconds is not None  # what can be read still is


def test_volume_error_above_the_limit_fails(demo, tmp_path):
    import subprocess
    import sys

    import dask.config

    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(demo), str(demo.with_suffix(".p01"))], check=True)
    hdf = demo.with_suffix(".p01.hdf")
    v = validate(hdf)
    assert v.ok and 0 < v.volume_error_percent < 0.05
    with dask.config.set({"hecras.max-volume-error-percent": 0.0001}):
        v = validate(hdf)
    assert v.status == "failed" and "volume accounting error" in v.reason


def test_results_of_another_plan_are_not_accepted(demo):
    import subprocess
    import sys

    from dask_hecras import Project

    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(demo), str(demo.with_suffix(".p01"))], check=True)
    v = validate(demo.with_suffix(".p01.hdf"), plan=Project(demo).plan("p02"))
    assert v.status == "corrupt" and "Demo.p01" in v.reason and "Demo.p02" in v.reason


def test_a_file_that_is_not_hdf_is_corrupt_not_an_exception(tmp_path):
    bad = tmp_path / "X.p01.hdf"
    bad.write_text("this is not HDF5")
    v = validate(bad)
    assert v.status == "corrupt" and v.retryable and "X.p01.hdf" in v.reason


def test_a_geometry_file_is_not_results_and_not_retryable(realdata, tmp_path):
    # HEC-RAS 6.5 stamps File Type "HEC-RAS Results" on this geometry HDF: only its content tells
    v = validate(realdata / "muncie" / "Muncie.g05.hdf")
    assert v.status == "not-results" and not v.ok and not v.retryable
    assert "Muncie.g05.hdf is a HEC-RAS geometry file" in v.reason and "running again cannot" in v.reason

    posing = tmp_path / "Muncie.p01.hdf"  # a geometry HDF where a plan's results should be
    shutil.copy(realdata / "muncie" / "Muncie.g05.hdf", posing)
    v = validate(posing)
    assert v.status == "not-results" and not v.retryable and "Muncie.p01.hdf" in v.reason


def _as_5_0_7(hdf, messages: str) -> None:
    """Rewrite a 6.5 results file the way HEC-RAS 5.0.7 writes one: its version, the File Type
    5.0.5+ puts on plan results (MDAL's HEC-RAS driver reads them as "HEC-RAS Geometry"), no
    Compute Processes table, no Computations Summary in the messages."""
    with h5py.File(hdf, "a") as f:
        f.attrs["File Version"] = b"HEC-RAS 5.0.7 March 2019"
        f.attrs["File Type"] = b"HEC-RAS Geometry"
        del f["Results/Summary/Compute Processes"]
        del f["Results/Summary/Compute Messages (text)"]
        f["Results/Summary/Compute Messages (text)"] = [messages.encode()]
        del f["Event Conditions"].attrs["Completed Successfully"]


_MESSAGES_5_0_7 = ("Plan: 'Steady Flows' (Baxter.p01)\r\nSimulation started at: 13Jun2019 03:02:12 PM\r\n\r\n"
                   "Writing Geometry...\r\nCompleted Writing Geometry\r\n\r\n"
                   "Steady Flow Simulation HEC-RAS 5.0.7 March 2019\r\n \r\n\r\n")


def test_hec_ras_5_0_results_judged_by_the_markers_5_0_writes(realdata, tmp_path):
    hdf = tmp_path / "Baxter.p01.hdf"
    shutil.copy(realdata / "results" / "Baxter.p01.hdf", hdf)
    _as_5_0_7(hdf, _MESSAGES_5_0_7 + "Finished Steady Flow Simulation\r\n")
    v = validate(hdf)
    assert v.status == "succeeded" and v.ok and v.version == "5.0.7"
    assert "Steady Finished Successfully" in v.reason and "Finished Steady Flow Simulation" in v.reason

    with h5py.File(hdf, "a") as f:  # 5.0 keeps the volume error as an attribute of the unsteady summary
        f.require_group("Results/Unsteady/Summary").attrs["Vol Accounting Error Percentage"] = np.float32(0.02)
    assert abs(validate(hdf).volume_error_percent - 0.02) < 1e-6
    with dask.config.set({"hecras.max-volume-error-percent": 0.01}):
        assert validate(hdf).status == "failed"

    with h5py.File(hdf, "a") as f:  # what 5.0 does say against the run still fails it
        del f["Results/Summary/Compute Messages (text)"]
        f["Results/Summary/Compute Messages (text)"] = [(_MESSAGES_5_0_7 + "Steady Flow Simulation Terminated").encode()]
    v = validate(hdf)
    assert v.status == "failed" and not v.retryable and "Terminated" in v.reason


def test_hec_ras_5_0_results_without_those_markers_are_unjudged_not_corrupt(realdata, tmp_path):
    hdf = tmp_path / "Baxter.p01.hdf"
    shutil.copy(realdata / "results" / "Baxter.p01.hdf", hdf)
    _as_5_0_7(hdf, _MESSAGES_5_0_7)  # no 'Finished ... Flow Simulation'
    v = validate(hdf)
    assert v.status == "unjudged" and not v.ok and not v.retryable
    assert v.reason.startswith("HEC-RAS 5.0 files are read but not judged") and "Baxter.p01.hdf" in v.reason
    assert "'Finished ... Flow Simulation' line" in v.reason

    with h5py.File(hdf, "a") as f:  # the log's word alone, without the engine's, does not vouch either
        del f["Results/Summary/Compute Messages (text)"]
        f["Results/Summary/Compute Messages (text)"] = [(_MESSAGES_5_0_7 + "Finished Steady Flow Simulation").encode()]
        del f["Results/Steady/Summary"].attrs["Solution"]
    v = validate(hdf)
    assert v.status == "unjudged" and not v.retryable and "the engine's verdict" in v.reason


@pytest.mark.parametrize("name", ["Baxter", "Upper_Basin_Existing_Conditions_Levee_Breach_2024"])
def test_a_giant_error_line_gives_a_short_reason(realdata, tmp_path, name):
    hdf = tmp_path / f"{name}.p01.hdf"
    shutil.copy(realdata / "results" / "Baxter.p01.hdf", hdf)
    faces = ", ".join(str(n) for n in range(100000, 100000 + 2457))
    line = f"ERROR: the following faces have no elevation: {faces}"
    with h5py.File(hdf, "a") as f:
        text = f["Results/Summary/Compute Messages (text)"][0].decode()
        text = text.replace("Finished Steady Flow Simulation",
                            f"{line}\r\nERROR: flow data missing\r\nSteady Flow Simulation Terminated")
        del f["Results/Summary/Compute Messages (text)"]
        f["Results/Summary/Compute Messages (text)"] = [text.encode()]
    v = validate(hdf)
    assert v.status == "failed" and line in v.messages, "the whole text is kept"
    assert len(v.reason) < 600 and all(len(r) < 600 for r in v.reasons)
    quoted = v.reason.split("have no elevation: ", 1)[1].split("…", 1)[0]
    shown = len(quoted.split(", "))
    assert 10 < shown < 60, "a few hundred characters of the line are quoted"
    assert f"({2457 - shown:,} more numbers cut" in v.reason
    assert "1 more line like it" in v.reason
    assert f"{name}.p01.computeMsgs.txt" in v.reason and "Compute Messages" in v.reason


def test_a_linux_engine_run_is_vouched_for_by_its_own_markers(demo, tmp_path):
    """HEC-RAS's Linux engine is RasUnsteady alone, not Ras.exe: it may write no Computations
    Summary ('Complete Process'). Its run is judged by the engine's markers; the same file from
    Ras.exe stays unfinished, and a Linux run that did not finish is never vouched for."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "dask_hecras.fake_ras", "-c", str(demo), str(demo.with_suffix(".p01")),
                    "--seconds", "0"], check=True, capture_output=True)
    hdf = tmp_path / "Demo.p01.hdf"
    shutil.copy(demo.with_suffix(".p01.hdf"), hdf)

    def messages(edit) -> None:
        with h5py.File(hdf, "a") as f:
            text = edit(f["Results/Summary/Compute Messages (text)"][0].decode())
            del f["Results/Summary/Compute Messages (text)"]
            f["Results/Summary/Compute Messages (text)"] = [text.encode()]

    messages(lambda t: "\r\n".join(line for line in t.splitlines() if "Complete Process" not in line))
    assert validate(hdf).status == "incomplete"
    v = validate(hdf, engine="linux")
    assert v.ok and "Linux engine's own markers" in v.reason and "Finished Unsteady Flow Simulation" in v.reason
    messages(lambda t: t.replace("Finished Unsteady Flow Simulation", "Computing"))
    assert validate(hdf, engine="linux").status == "incomplete"
