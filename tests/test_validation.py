"""validate() on real HEC-RAS files and on damaged copies of them."""

from __future__ import annotations

import shutil

import h5py

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
