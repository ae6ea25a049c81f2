"""Sampling quality of the acceptance model over seeds (issue 3's convergence criterion).

Fits the acceptance model once per seed and prints, per run, the max rank-normalised split
R-hat and min bulk ESS over the hyperparameters (beta, sigma, phi, sd_id, the intercept-slope
correlation), divergences and leapfrog steps per draw, then how many runs meet R-hat <= 1.01
and bulk ESS >= 400.

    python benchmarks/bench_seeds.py                       # defaults: 4 x 1,000 draws, seeds 1-16
    python benchmarks/bench_seeds.py --draws 2000 --seeds 1 2 3 4 5 6 7 8
"""

from __future__ import annotations

import argparse

import arviz as az
import numpy as np

import hierbayes as hb

HYPER = ["beta", "sigma", "phi", "sd_id", "corr_id"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 17)))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    args = ap.parse_args()
    data = hb.datasets.load("clark_ar1")
    model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
                     correlation=hb.AR1(time="time", group="id"))
    ok = 0
    for seed in args.seeds:
        fit = model.fit(draws=args.draws, tune=args.tune, seed=seed, progressbar=False,
                        recover_random_effects=False)
        post = fit.idata.posterior[HYPER]
        post = post.assign(corr_id=post["corr_id"].sel(id__term="Intercept", id__term_bis="time"))
        rhat = az.rhat(post, method="rank")
        ess = az.ess(post, method="bulk")
        r = max(float(np.nanmax(rhat[v].values)) for v in HYPER)
        e = min(float(np.nanmin(ess[v].values)) for v in HYPER)
        ss = fit.idata.sample_stats
        good = r <= 1.01 and e >= 400
        ok += good
        print(f"seed {seed:3d}: max R-hat {r:.4f}, min bulk ESS {e:6.0f}, divergences "
              f"{int(ss['diverging'].sum())}, steps/draw {float(ss['n_steps'].mean()):.1f}, "
              f"sampling {fit.timing['sampling_s']:.1f} s{'' if good else '  <- misses'}",
              flush=True)
    print(f"{ok} of {len(args.seeds)} runs meet R-hat <= 1.01 and bulk ESS >= 400 "
          f"({args.draws} draws + {args.tune} tune x 4 chains)")


if __name__ == "__main__":
    main()
