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
