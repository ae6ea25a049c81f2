"""Slope recovery under 30% right-censoring: censored likelihood vs bounds taken as observed.

Run from the repository root: PYTHONPATH=$PWD python benchmarks/censoring_recovery.py (~30 s).
"""
import sys

import numpy as np

import hierbayes as hb

sys.path.insert(0, "tests/design")
from test_censoring import _frame
for seed in (4, 11):
    df = _frame(seed)
    out = {}
    for label, formula in (("censored", "y | cens(c) ~ x + (1 | g)"), ("naive", "y ~ x + (1 | g)")):
        fit = hb.Model(formula, df).fit(draws=200, tune=200, chains=2, seed=3, progressbar=False)
        b = fit.idata.posterior["beta"].sel(coef="x").values.ravel()
        s = fit.idata.posterior["sigma"].values.ravel()
        out[label] = (b.mean(), b.std(), s.mean())
    print(f"seed {seed}: right-censored {np.mean(df.c == 'right'):.0%}; true slope 1.0, sigma 1.0")
    for k, (m, sd, s) in out.items():
        print(f"  {k:9s} slope {m:.3f} (sd {sd:.3f}), |error| {abs(m - 1):.3f}; sigma {s:.3f}")
