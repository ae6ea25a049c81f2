"""Prior sweeps through executors: a local process pool and a dask LocalCluster give the
same table for the same seed; a failed fit is a row, not an exception."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.studies.parallel import run_all, task_seeds
from hierbayes.studies.sweep import expand_settings, setting_label

FORMULA = "y ~ time + (1 | id)"


@pytest.fixture(scope="module")
def model():
    ids = np.repeat(np.arange(20), 4)
    layout = pd.DataFrame({"id": ids, "time": np.tile(np.arange(4), 20)})
    sim = hb.simulate(FORMULA, layout, {"beta": {"Intercept": 0.2, "time": 0.5}, "sigma": 1.0,
                                        "sd_id": [0.6]}, seed=1)
    return hb.Model(FORMULA, sim, priors={"time": hb.Prior("Normal", mu=0, sigma=5)})


GRID = {"sd_id": [hb.Prior("HalfNormal", sigma=0.05), hb.Prior("HalfNormal", sigma=3.0),
                  hb.Prior("NoSuchDistribution", sigma=1.0)]}


def _check_table(table: pd.DataFrame):
    assert list(table.setting_id.unique()) == [0, 1, 2]
    ok = table[table.error.isna()]
    assert set(ok.parameter) == {"Intercept", "time", "sd(Intercept | id)", "sigma (residual sd)"}
    assert len(ok) == 8
    failed = table[table.setting_id == 2]
    assert len(failed) == 1 and "NoSuchDistribution" in failed.error.iloc[0]
    assert table.loc[0, "sd_id"] == "HalfNormal(sigma=0.05)"
    # a tight prior on the intercept sd pulls it down against a wide one
    sd = ok[ok.parameter == "sd(Intercept | id)"].set_index("setting_id")["mean"]
    assert sd[0] < 0.1 < sd[1]
    for col in ("mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "divergences", "seed"):
        assert col in table.columns


def test_sweep_same_table_on_process_pool_and_dask(model):
    distributed = pytest.importorskip("distributed")
    kw = dict(seed=7, draws=100, tune=100, chains=2)
    local = hb.prior_sweep(model, GRID, max_workers=2, **kw)
    _check_table(local)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = hb.prior_sweep(model, GRID, executor=client, **kw)
    pd.testing.assert_frame_equal(local, remote)
    assert local.seed.tolist() == remote.seed.tolist()
    fig = hb.plot_prior_sweep(local)
    assert len([a for a in fig.axes if a.get_visible()]) == 4


def test_settings_grid_and_labels():
    a, b = hb.Prior("HalfNormal", sigma=1), hb.Prior("HalfNormal", sigma=2)
    c = hb.Prior("Normal", mu=0, sigma=1)
    s = expand_settings({"sd_id": [a, b], "beta": [c]})
    assert s == [{"sd_id": a, "beta": c}, {"sd_id": b, "beta": c}]
    assert expand_settings([{"sd_id": a}]) == [{"sd_id": a}]
    assert setting_label(s[0]) == "sd_id=HalfNormal(sigma=1); beta=Normal(mu=0, sigma=1)"
    with pytest.raises(TypeError, match=r"grid\['sd_id'\] must be a list"):
        expand_settings({"sd_id": a})
    with pytest.raises(ValueError, match="empty"):
        expand_settings({})


def test_sweep_rejects_unknown_parameter(model):
    with pytest.raises(KeyError, match="no parameter named 'sd_school'"):
        hb.prior_sweep(model, {"sd_school": [hb.Prior("HalfNormal", sigma=1)]})


def _half(x):
    if x == 3:
        raise ZeroDivisionError("three is bad")
    return x / 2


def test_run_all_keeps_order_and_reports_errors():
    with ThreadPoolExecutor(2) as ex:
        out = run_all(_half, [4, 3, 2], executor=ex)
    assert out[0] == {"ok": True, "value": 2.0} and out[2] == {"ok": True, "value": 1.0}
    assert out[1]["ok"] is False and "ZeroDivisionError: three is bad" in out[1]["error"]
    assert task_seeds(1, 3) == task_seeds(1, 3) and len(set(task_seeds(1, 3))) == 3
    with pytest.raises(TypeError, match="Executor or a dask"):
        run_all(_half, [1], executor=object())
