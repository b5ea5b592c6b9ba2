"""Statistics over a study's plans, on the fake engine's results of the demo storms."""

from __future__ import annotations

import os

import dask.array
import numpy as np
import pytest

from dask_hecras import combine, ensemble, summarise

from .test_fake_ras import fake

PLANS = ("p01", "p02", "p04", "p05")  # 10-year, 50-year, 500-year storms; a dam break


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from dask_hecras.examples import make_project

    prj = make_project(tmp_path_factory.mktemp("study") / "project", n_plans=5)
    for p in PLANS:
        assert fake(prj, p).returncode == 0
    return combine([summarise(prj.with_suffix(f".{p}.hdf"), time_series=False) for p in PLANS])


def test_envelope_is_the_highest_water_and_names_its_plan(study):
    env = ensemble.envelope(study)
    ws = study["max_water_surface"].values
    np.testing.assert_array_equal(env["envelope"].values, ws.max(axis=0))
    np.testing.assert_array_equal(env["envelope_plan"].values, np.array(PLANS)[ws.argmax(axis=0)])
    assert (env["envelope_plan"] == "p05").mean() > 0.9  # the dam break sets most of it
    assert env["envelope"].attrs["units"] == "m"


def test_exceedance_weights_and_annual_rates(study):
    depth = study["max_depth"].values
    p = ensemble.exceedance(study, 0.5)
    np.testing.assert_allclose(p.values, (depth > 0.5).mean(axis=0))
    w = {"p01": 0.5, "p02": 0.3, "p04": 0.15, "p05": 0.05}
    pw = ensemble.exceedance(study, 0.5, weights=w)
    np.testing.assert_allclose(pw.values, ((depth > 0.5) * np.array(list(w.values()))[:, None]).sum(0))
    rates = [0.1, 0.02, 0.002, 0.0001]
    aep = ensemble.exceedance(study, 0.5, rates=rates)
    np.testing.assert_allclose(aep.values, 1 - np.exp(-((depth > 0.5) * np.array(rates)[:, None]).sum(0)))
    assert float(aep.max()) == pytest.approx(1 - np.exp(-sum(rates))) and aep.attrs["units"] == "1"  # deep in every event
    with pytest.raises(ValueError, match="no value for plan"):
        ensemble.exceedance(study, 0.5, weights={"p01": 1})


def test_percentiles_differences_and_flooded_area(study):
    q = ensemble.percentile(study, [50, 90])
    np.testing.assert_allclose(q.sel(percentile=50).values, np.median(study["max_depth"].values, axis=0))
    d = ensemble.difference(study, "p01")
    assert float(abs(d.sel(plan="p01")).max()) == 0
    assert (d.sel(plan="p04") >= 0).all()  # the 500-year storm is never lower than the 10-year
    f = ensemble.flooded(study)
    area = f["flooded_area"].values
    assert list(area) == sorted(area) and area[-1] == pytest.approx(float(study["cell_area"].isel(plan=0).sum()))
    assert f["flooded_area"].attrs["units"] == "m2" and f["flooded_volume"].attrs["units"] == "m3"
    wet = study["max_depth"].values > 0.01
    np.testing.assert_allclose(f["flooded_volume"].values,
                               (study["max_depth"].values * study["cell_area"].values * wet).sum(1), rtol=1e-5)


def test_a_chunked_study_stays_lazy_until_asked(study):
    big = study.chunk({"cell": 100, "plan": 1})
    results = [ensemble.envelope(big)["envelope"], ensemble.envelope(big)["envelope_plan"],
               ensemble.exceedance(big, 0.5), ensemble.percentile(big, [50]), ensemble.difference(big, "p01"),
               ensemble.flooded(big)["flooded_area"]]
    assert all(isinstance(r.data, dask.array.Array) for r in results)
    np.testing.assert_array_equal(results[1].values, ensemble.envelope(study)["envelope_plan"].values)
    np.testing.assert_allclose(results[2].values, ensemble.exceedance(study, 0.5).values)


def test_plans_keep_their_own_time_axis_unless_a_common_one_is_asked(tmp_path):
    """The 10-year storm writes every 30 min over 1 day, the 500-year every hour over 2: stacked
    on the union of their times the hourly plan would be NaN every other step."""
    from dask_hecras.examples import make_project

    prj = make_project(tmp_path / "project", n_plans=4)
    for p in ("p01", "p04"):
        assert fake(prj, p).returncode == 0
    parts = [summarise(prj.with_suffix(f".{p}.hdf")) for p in ("p01", "p04")]
    ds = combine(parts)
    assert "step" in ds["bc_flow"].dims and ds["time"].dims == ("plan", "step")
    hourly = ds["bc_flow"].sel(plan="p04", bc_line="Upstream").dropna("step")
    assert hourly.sizes["step"] == parts[1].sizes["time"]  # all of its own steps, no gap between
    np.testing.assert_array_equal(hourly["time"].values, parts[1]["time"].values)
    np.testing.assert_array_equal(hourly.values, parts[1]["bc_flow"].sel(bc_line="Upstream").values)
    assert isinstance(ds["water_surface"].data, dask.array.Array)  # big series stay lazy
    common = combine(parts, time="common")
    union = np.union1d(parts[0]["time"].values, parts[1]["time"].values)
    np.testing.assert_array_equal(common["time"].values, union)
    inside = common["bc_flow"].sel(plan="p04", bc_line="Upstream")
    window = (union >= parts[1]["time"].values[0]) & (union <= parts[1]["time"].values[-1])
    assert inside.values[window].size and not np.isnan(inside.values[window]).any()  # no gap inside its window
    np.testing.assert_allclose(inside.sel(time=parts[1]["time"].values).values,  # its own values at its own times
                               parts[1]["bc_flow"].sel(bc_line="Upstream").values, rtol=1e-6)
    short = common["bc_flow"].sel(plan="p01", bc_line="Upstream")  # one day of a two-day axis
    after = union > parts[0]["time"].values[-1]
    assert after.any() and np.isnan(short.values[after]).all() and not np.isnan(short.values[~after]).any()
    assert inside.dtype == np.float32
    with pytest.raises(ValueError, match="'own'"):
        combine(parts, time="union")


def test_maps_draw_each_cell_with_its_value(study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dask_hecras.maps import plot_map, plot_maps

    one = study.sel(plan="p02")
    fig, ax = plt.subplots()
    polys = plot_map(one["max_depth"], geometry_from=one)
    depth = one["max_depth"].values
    drawn = polys.get_array()
    assert len(polys.get_paths()) == study.sizes["cell"]
    np.testing.assert_array_equal(drawn.mask, depth <= 0.01)  # dry cells left blank
    np.testing.assert_allclose(drawn.compressed(), depth[depth > 0.01])
    assert polys.get_cmap().name == "Blues" and polys.get_clim()[0] == 0
    assert "ETRS_1989_UTM_Zone_32N" in ax.get_xlabel() and "[m]" in ax.get_xlabel()
    x0, x1 = ax.get_xlim()  # the demo mesh sits at UTM 480000 E
    assert x0 < float(study["x"].min()) < float(study["x"].max()) < x1 and x0 > 470_000
    plt.close(fig)
    fig, ax = plt.subplots()
    diff = ensemble.difference(study, "p01", "max_water_surface").sel(plan="p04")
    polys = plot_map(diff, geometry_from=study)
    lo, hi = polys.get_clim()
    assert polys.get_cmap().name == "RdBu_r" and lo == -hi and hi > 0
    plt.close(fig)
    fig = plot_maps(study)
    shown = [a for a in fig.axes if a.get_label() != "<colorbar>" and a.collections]
    assert len(shown) == len(PLANS) and {c.collections[0].get_clim() for c in shown} == {shown[0].collections[0].get_clim()}
    fig.savefig(tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 20_000
    plt.close(fig)


def test_a_study_opens_straight_from_its_files_and_equals_the_general_path(tmp_path):
    """Summaries of one layout stack lazily, read plan by plan; a different layout (another
    project's mesh, other output times) is joined as combine joins it; the values are the same."""
    from dask_hecras import Project, open_results, run_plan
    from dask_hecras.examples import make_project
    from dask_hecras.results import summary_files

    results = tmp_path / "results"
    demo = Project(make_project(tmp_path / "demo", n_plans=4))
    small = Project(make_project(tmp_path / "small", n_plans=1, name="Small", cells=(6, 4)))
    for plan in demo.plans + small.plans:
        assert run_plan(plan, engine="fake", results_dir=results).ok
    from dask_hecras.results import _open_fast

    assert _open_fast(summary_files(results)) is not None  # every summary carries its layout key
    fast = open_results(results)
    general = combine(summary_files(results))
    assert isinstance(fast["max_depth"].data, dask.array.Array)  # nothing read yet but layouts
    assert sorted(fast["plan"].values) == sorted(general["plan"].values)
    fast, general = fast.sortby("plan").load(), general.sortby("plan")
    assert set(fast.data_vars) == set(general.data_vars)
    for v in ("max_depth", "max_water_surface", "max_water_surface_time", "bc_flow", "x"):
        np.testing.assert_array_equal(fast[v].values, general[v].transpose(*fast[v].dims).values, err_msg=v)
    for c in ("project", "plan_name", "run_seconds", "source_file"):
        np.testing.assert_array_equal(fast[c].values, general[c].values, err_msg=c)
    assert fast["max_depth"].attrs["units"] == "m" and int(fast["max_depth"].notnull().sum()) == 4 * 600 + 24
    # neither path holds a summary open (on Windows that would stop the next landing replacing it)
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [h for h in held if h.endswith("summary.nc")], held


def test_a_landed_plan_without_its_summary_yet_is_named_not_silently_left_out(tmp_path):
    """Between a landing and its summary (a re-landing replaces the folder, summary and all; the
    summary follows), the study cannot show the plan: open_results says which plans."""
    from dask_hecras import Project, open_results, run_plan
    from dask_hecras.examples import make_project

    results = tmp_path / "results"
    for plan in Project(make_project(tmp_path / "demo", n_plans=2)).plans:
        assert run_plan(plan, engine="fake", results_dir=results).ok
    (results / "Demo" / "p02" / "summary.nc").unlink()
    with pytest.warns(UserWarning, match=r"1 landed plan\(s\) have no summary yet.*Demo/p02"):
        study = open_results(results)
    assert list(study["plan"].values) == ["p01"]
