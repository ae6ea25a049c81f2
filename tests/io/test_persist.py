"""Persistence: fit.save / hb.load round-trip the posterior, spec, priors, design, options and
timing; writes are atomic; files from another version or of another kind are refused clearly.

The fits here carry fake posteriors (``az.from_dict``) on real designs: saving and loading
do not depend on how the draws were made. A real fit is saved and reloaded in
``tests/test_reproducible.py``.
"""

from __future__ import annotations

import os
import warnings

import arviz as az
import h5netcdf
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierbayes as hb
from hierbayes.io import persist
from hierbayes.sampling.nuts import SamplerOptions

FORMULA = "y ~ time + trt + x + (1 + time | id)"


def _data(seed: int = 0, n_ids: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"person {k}" for k in rng.permutation(n_ids)], 4)
    df = pd.DataFrame(
        {
            "id": ids,
            "time": np.tile([0, 1, 3, 4], n_ids),
            "trt": pd.Categorical(np.repeat(rng.choice(["ctl", "drug"], n_ids), 4),
                                  categories=["drug", "ctl"]),  # non-alphabetical reference
            "x": rng.normal(size=4 * n_ids),
            "unused": "left out of the file",
        }
    )
    df["y"] = 0.3 + 0.5 * df["time"] + rng.normal(size=len(df))
    df.loc[[5, 17], "x"] = np.nan  # dropped rows must survive the round trip
    return df.sample(frac=1.0, random_state=3).set_index(rng.permutation(len(df)) + 100)


def _fake_fit(model: hb.Model, seed: int = 0) -> hb.Fit:
    """A Fit with random draws of the right names, dims and coords on a real design."""
    rng = np.random.default_rng(seed)
    d = model.design
    g = d.groups[0]
    nc, nd = 2, 30
    post = {
        "beta": rng.normal(size=(nc, nd, d.p)),
        "sigma": rng.gamma(5.0, 0.2, size=(nc, nd)),
        "phi": rng.uniform(0, 0.9, size=(nc, nd)),
        f"sd_{g.name}": rng.gamma(5.0, 0.1, size=(nc, nd, g.q)),
        f"b_{g.name}": rng.normal(size=(nc, nd, g.n_levels, g.q)),
    }
    tdim = f"{g.name}__term"
    order = np.argsort(d.rows)
    idata = az.from_dict(
        posterior=post,
        sample_stats={"diverging": rng.random((nc, nd)) < 0.05, "tree_depth": rng.integers(1, 6, (nc, nd))},
        observed_data={"y": d.y[order]},
        coords={"coef": list(d.fixed_names), tdim: list(g.terms), g.name: list(g.levels),
                "obs": d.rows[order]},
        dims={"beta": ["coef"], f"sd_{g.name}": [tdim], f"b_{g.name}": [g.name, tdim], "y": ["obs"]},
    )
    opts = SamplerOptions(draws=nd, tune=50, chains=nc, seed=seed, target_accept=0.9,
                          extra={"store_unconstrained": False})
    timing = {"compile_s": 1.5, "sampling_s": 2.25, "cache_hit": False, "seed": seed, "total_s": 4.0}
    return hb.Fit(idata, d, model.priors, model.backend, model.layout, opts, timing)


@pytest.fixture(scope="module")
def model() -> hb.Model:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two dropped rows
        return hb.Model(FORMULA, _data(), correlation=hb.AR1(time="time", group="id"),
                        priors={"sigma": hb.Prior("HalfNormal", sigma=2.0),
                                "sd_id": hb.Prior("HalfNormal", sigma=hb.Prior("Gamma", alpha=2, beta=1))})


def test_round_trip(model, tmp_path):
    fit = _fake_fit(model)
    fit.log_likelihood()  # an extra group, written and read like the others
    path = fit.save(tmp_path / "fit.nc")
    assert path == tmp_path / "fit.nc" and path.exists()
    again = hb.load(path)
    from hierbayes.criticism.loglik import log_likelihood

    xr.testing.assert_allclose(log_likelihood(again), fit.idata.log_likelihood, rtol=1e-12)
    for group in fit.idata.groups():
        xr.testing.assert_identical(fit.idata[group], again.idata[group])
    assert set(again.idata.groups()) == set(fit.idata.groups())
    # spec, priors, backend, options, timing
    assert again.spec.formula == FORMULA and again.spec.family == fit.spec.family
    assert again.spec.correlation == hb.AR1(time="time", group="id")
    assert again.spec.priors == fit.spec.priors
    assert again.priors == fit.priors and list(again.priors) == list(fit.priors)
    assert (again.backend, again.layout) == (fit.backend, fit.layout)
    assert again.options == fit.options and again.timing == fit.timing
    # the design: arrays, encodings, levels, the map back to the user's rows
    d0, d1 = fit.design, again.design
    for attr in ("y", "X", "rows", "time", "cluster"):
        np.testing.assert_array_equal(getattr(d0, attr), getattr(d1, attr))
    assert d1.fixed_names == d0.fixed_names and len(d0.fixed_names) == 4
    assert (d1.n_input_rows, d1.n_dropped, d1.cluster_levels) == (d0.n_input_rows, 2, d0.cluster_levels)
    for g0, g1 in zip(d0.groups, d1.groups):
        assert (g0.name, g0.levels, g0.terms) == (g1.name, g1.levels, g1.terms)
        np.testing.assert_array_equal(g0.index, g1.index)
        np.testing.assert_array_equal(g0.Z, g1.Z)
    np.testing.assert_array_equal(d0.layout.pos, d1.layout.pos)
    np.testing.assert_array_equal(d0.layout.lag, d1.layout.lag)
    pd.testing.assert_frame_equal(d0.source, d1.source)
    assert "unused" not in d1.source.columns
    # new data go through the same categorical encoding (what prediction needs)
    new = pd.DataFrame({"time": [2, 5], "trt": ["ctl", "drug"], "x": [0.1, -0.2], "y": [0.0, 0.0],
                        "id": ["person 1", "person 2"]})
    np.testing.assert_array_equal(
        np.asarray(d0.common_terms.evaluate_new_data(new).design_matrix),
        np.asarray(d1.common_terms.evaluate_new_data(new).design_matrix),
    )
    # what users call on a fit gives the same answers
    pd.testing.assert_frame_equal(fit.summary().table, again.summary().table)
    assert str(fit.summary()) == str(again.summary())
    pd.testing.assert_frame_equal(fit.shrinkage(), again.shrinkage())
    pd.testing.assert_frame_equal(fit.cluster_coefficients(), again.cluster_coefficients())
    np.testing.assert_array_equal(fit.posterior_predictive(10, seed=1), again.posterior_predictive(10, seed=1))
    assert persist.read_metadata(path)["hierbayes_version"] == hb.__version__
    plain = hb.load(fit.save(tmp_path / "plain.nc", compress=False))
    xr.testing.assert_identical(plain.posterior, fit.posterior)


def test_to_netcdf_still_writes_plain_inference_data(model, tmp_path):
    fit = _fake_fit(model)
    fit.to_netcdf(tmp_path / "idata.nc")
    back = az.from_netcdf(tmp_path / "idata.nc")
    xr.testing.assert_identical(back.posterior.load(), fit.idata.posterior)
    with pytest.raises(ValueError, match=r"not a saved hierbayes fit.*arviz.from_netcdf"):
        hb.load(tmp_path / "idata.nc")


def test_crash_mid_write_keeps_the_previous_file(model, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    first = _fake_fit(model, seed=1)
    first.save(path)
    before = path.read_bytes()

    def crashing_write(tmp, idata, data, meta_json, compress):
        with open(tmp, "wb") as fh:  # half a file, then the process dies
            fh.write(before[: len(before) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(persist, "_write", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        _fake_fit(model, seed=2).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["fit.nc"]  # no temporary file left behind
    monkeypatch.undo()
    loaded = hb.load(path)
    xr.testing.assert_identical(loaded.posterior, first.posterior)
    # a successful save replaces it
    second = _fake_fit(model, seed=2)
    second.save(path)
    xr.testing.assert_identical(hb.load(path).posterior, second.posterior)
    assert os.listdir(tmp_path) == ["fit.nc"]
    # the usual file mode, not the temporary file's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def _set_meta(path, **changes):
    meta = persist.read_metadata(path)
    meta.update(changes)
    import json

    with h5netcdf.File(path, mode="a") as fh:
        fh.attrs[persist.META] = json.dumps(meta)


def test_other_package_version_is_refused_clearly(model, tmp_path):
    path = _fake_fit(model).save(tmp_path / "fit.nc")
    _set_meta(path, hierbayes_version="0.0.9")
    with pytest.raises(persist.VersionMismatchError,
                       match=rf"written by hierbayes 0\.0\.9, this is hierbayes {hb.__version__}.*"
                             r"allow_version_mismatch=True"):
        hb.load(path)
    with pytest.warns(UserWarning, match="written by hierbayes 0.0.9"):
        fit = hb.load(path, allow_version_mismatch=True)
    assert fit.design.fixed_names == model.design.fixed_names
    _set_meta(path, format_version=99, hierbayes_version="7.0")
    with pytest.raises(persist.VersionMismatchError, match="file format 99.*install hierbayes 7.0"):
        hb.load(path, allow_version_mismatch=True)


def test_tampered_file_is_refused(model, tmp_path):
    path = _fake_fit(model).save(tmp_path / "fit.nc")
    meta = persist.read_metadata(path)
    meta["design"]["groups"][0]["levels"][0] = "someone else"
    _set_meta(path, design=meta["design"])
    with pytest.raises(ValueError, match="rebuild a design whose groups differs"):
        hb.load(path)


def test_bad_paths_and_files(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved fit"):
        hb.load(tmp_path / "nope.nc")
    (tmp_path / "junk.nc").write_text("not a netCDF file")
    with pytest.raises(ValueError, match="not a hierbayes fit file"):
        hb.load(tmp_path / "junk.nc")
    with pytest.raises(IsADirectoryError, match="directory"):
        _fake_fit(model).save(tmp_path)


def test_data_columns_of_every_kind_round_trip():
    frame = pd.DataFrame(
        {
            "f": [0.5, np.nan, 2.0, -1.0],
            "i": np.array([3, 1, 2, 10], dtype=np.int64),
            "b": [True, False, True, True],
            "s": ["a b", None, "c", "a b"],
            "ni": pd.array([1, None, 3, 4], dtype="Int64"),
            "cat": pd.Categorical([2, 10, 2, None], categories=[10, 2], ordered=True),
            "scat": pd.Categorical(["x y", "z", "z", "x y"]),
        }
    )
    ds, cols = persist.data_dataset(frame)
    back = persist.data_frame(ds, cols, len(frame))
    pd.testing.assert_frame_equal(back, frame)


def test_mixed_type_column_names_the_column():
    frame = pd.DataFrame({"g": ["a", 1, 2.5, "b"]})
    with pytest.raises(TypeError, match=r"column 'g' holds values of mixed.*astype\(str\)"):
        persist.data_dataset(frame)
