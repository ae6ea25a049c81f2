"""Simulation-based calibration of a Gaussian AR(1) mixed model (the seed model's structure).

``y ~ time + treatment + (1 + time | id)`` with AR(1) residuals in ``time`` within ``id``,
on a layout of IDS ids x TIMES occasions; priors weakly informative on the seed's scale.
Each simulation draws the hyperparameters from the prior, simulates data with
``hb.simulate``, fits it (nutpie, marginal backend) and ranks the truth among ``n_ranks``
evenly spaced posterior draws. Prints the chi-square uniformity test per parameter, fit
diagnostics and timing, and writes the rank histograms (PNG) and ranks (CSV) to --out.

    python benchmarks/bench_sbc.py                      # 50 simulations, 2 workers
    python benchmarks/bench_sbc.py --sims 400 --workers 8
    python benchmarks/bench_sbc.py --phi-upper 1      # phi ~ Uniform(0, 1): ridge coordinates
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import hierbayes as hb

PRIORS = {
    "Intercept": hb.Prior("Normal", mu=0.0, sigma=1.0),
    "beta": hb.Prior("Normal", mu=0.0, sigma=1.0),
    "sigma": hb.Prior("HalfNormal", sigma=1.0),
    "sd_id": hb.Prior("HalfNormal", sigma=[0.6, 0.3]),
    "corr_id": hb.Prior("LKJ", eta=2.0),
    "phi": hb.Prior("Uniform", lower=0.0, upper=0.9),
}


def layout(n_ids: int, n_times: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), n_times)
    df = pd.DataFrame({
        "id": ids,
        "time": np.tile(np.arange(n_times), n_ids),
        "treatment": np.where(np.arange(n_ids) % 2 == 0, "control", "treatment")[ids],
    })
    df["y"] = rng.normal(size=len(df))  # replaced by every simulation
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=50)
    ap.add_argument("--ids", type=int, default=20)
    ap.add_argument("--times", type=int, default=5)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--n-ranks", type=int, default=49)
    ap.add_argument("--bins", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default="out/sbc")
    ap.add_argument("--phi-upper", type=float, default=0.9,
                    help="phi ~ Uniform(0, this); 1 samples in the ridge coordinates")
    args = ap.parse_args()
    priors = dict(PRIORS, phi=hb.Prior("Uniform", lower=0.0, upper=args.phi_upper))

    model = hb.Model("y ~ time + treatment + (1 + time | id)", layout(args.ids, args.times),
                     correlation=hb.AR1(time="time", group="id"), priors=priors)
    print(f"phi ~ Uniform(0, {args.phi_upper}); sampled in "
          f"{'ridge' if model.ridge_coordinates else 'PyMC default'} coordinates", flush=True)
    t0 = time.perf_counter()
    done = []

    def progress(i, result):
        done.append(i)
        status = "ok" if result["ok"] else "FAILED: " + result["error"][:80]
        print(f"  {len(done)}/{args.sims} done (simulation {i}, {time.perf_counter() - t0:.0f} s): {status}",
              flush=True)

    res = hb.sbc(model, args.sims, seed=args.seed, n_ranks=args.n_ranks, draws=args.draws,
                 tune=args.tune, chains=2, max_workers=args.workers, on_done=progress)
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.ranks.to_csv(out / "ranks.csv", index_label="sim")
    res.plot(bins=args.bins).savefig(out / "rank_histograms.png", dpi=110)
    test = res.uniformity(bins=args.bins)
    ok = res.fits.error.isna()
    print(f"{args.sims} simulations ({ok.sum()} fitted), {args.ids} ids x {args.times} occasions, "
          f"2 chains x {args.draws} draws (tune {args.tune}), ranks among {args.n_ranks} draws, "
          f"{args.workers} workers: {wall:.0f} s")
    print(f"fits with divergences: {(res.fits.divergences > 0).sum()}; median min bulk ESS "
          f"{res.fits.min_ess.median():.0f}")
    print("\n| parameter | simulations | chi-square (df {}) | p-value |".format(args.bins - 1))
    print("|---|---|---|---|")
    for name, row in test.iterrows():
        print(f"| {name} | {row.n} | {row.chi2:.1f} | {row.p_value:.3f} |")
    if (~ok).any():
        print("\nfailed fits:", res.fits.error[~ok].tolist())


if __name__ == "__main__":
    main()
