"""Size and speed of fit.save / hb.load on the acceptance model (2,500 ids x 4 occasions).

The posterior is a stand-in of the real one's shape (4 chains x 1,000 draws of beta, sigma,
phi, sd_id, corr_id and the recovered b_id[2500, 2]): saving does not depend on how the
draws were made, and no sampling is needed. Prints the file size, the part taken by the
stored data columns (what the design is rebuilt from), and save / load wall times.

    python benchmarks/bench_persist.py [--chains 4 --draws 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import arviz as az
import numpy as np

import hierbayes as hb
from hierbayes.io import persist
from hierbayes.sampling.nuts import SamplerOptions


def fake_fit(chains: int, draws: int) -> hb.Fit:
    data = hb.datasets.load("clark_ar1")
    model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
                     correlation=hb.AR1(time="time", group="id"))
    d, g = model.design, model.design.groups[0]
    rng = np.random.default_rng(0)
    shape = (chains, draws)
    corr = np.broadcast_to(np.eye(2), shape + (2, 2)).copy()
    corr[..., 0, 1] = corr[..., 1, 0] = rng.uniform(-0.5, 0.5, shape)
    idata = az.from_dict(
        posterior={
            "beta": rng.normal(size=shape + (d.p,)), "sigma": rng.gamma(50, 0.02, shape),
            "phi": rng.uniform(0.6, 0.8, shape), "sd_id": rng.gamma(20, 0.02, shape + (2,)),
            "corr_id": corr, "b_id": rng.normal(size=shape + (g.n_levels, 2)),
        },
        sample_stats={"diverging": np.zeros(shape, bool), "tree_depth": rng.integers(3, 6, shape)},
        observed_data={"y": d.y[np.argsort(d.rows)]},
        coords={"coef": list(d.fixed_names), "id__term": list(g.terms), "id__term_bis": list(g.terms),
                "id": list(g.levels), "obs": np.sort(d.rows)},
        dims={"beta": ["coef"], "sd_id": ["id__term"], "corr_id": ["id__term", "id__term_bis"],
              "b_id": ["id", "id__term"], "y": ["obs"]},
    )
    opts = SamplerOptions(draws=draws, chains=chains, seed=1)
    return hb.Fit(idata, d, model.priors, model.backend, model.layout, opts, {"seed": 1})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args()
    fit = fake_fit(args.chains, args.draws)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fit.nc")
        t0 = time.perf_counter()
        fit.save(path, compress=False)
        t_plain = time.perf_counter() - t0
        size_plain = os.path.getsize(path)
        t0 = time.perf_counter()
        fit.save(path)
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = hb.load(path)
        t_load = time.perf_counter() - t0
        size = os.path.getsize(path)
        data_path = os.path.join(tmp, "data.nc")
        ds, _ = persist._data_dataset(fit.design.source)
        ds.to_netcdf(data_path, engine="h5netcdf")
        data_size = os.path.getsize(data_path)
    b_mb = fit.posterior["b_id"].nbytes / 1e6
    assert again.posterior["b_id"].shape == fit.posterior["b_id"].shape
    print(f"rows {fit.design.n_input_rows}, posterior b_id in memory {b_mb:.1f} MB")
    print(f"file {size / 1e6:.1f} MB, of which data columns ~{data_size / 1e6:.2f} MB")
    print(f"save {t_save:.2f} s, load (incl. design rebuild) {t_load:.2f} s")
    print(f"save(compress=False) {t_plain:.2f} s, file {size_plain / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
