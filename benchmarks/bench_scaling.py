"""Scaling of the acceptance model with the number of individuals (4 occasions each).

Simulates the seed's data-generating process at several sizes, fits the marginal backend
(4 chains x DRAWS + TUNE) and prints, per size: rows, time to build the design, compile,
sample, recover the random effects, cost per gradient, and peak resident memory of the
process. Each size runs in a fresh subprocess so peak memory is per fit.

    python benchmarks/bench_scaling.py --ids 2500 25000 250000
    python benchmarks/bench_scaling.py --ids 2500 25000 250000 --per-gradient

``--per-gradient`` skips sampling and times one log-density + gradient of the native kernel
at each size in both of its layouts: ``pooled`` (clusters sharing times and design share
one set of cross-products: cost independent of the number of rows) and ``direct`` (one
cluster at a time, what unbalanced or irregular data get: cost linear in the rows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

TRUE = {
    "beta": {"Intercept": 0.2, "time": 0.5, "treatment[treatment]": -0.5},
    "sigma": 1.0,
    "sd_id": [0.5, 0.25],
    "phi": 0.7,
}


def simulated(n_ids: int):
    """The seed's data-generating process at ``n_ids`` ids x 4 occasions: formula,
    correlation and data."""
    import numpy as np
    import pandas as pd

    import hierbayes as hb

    rng = np.random.default_rng(n_ids)
    ids = np.repeat(np.arange(n_ids), 4)
    trt = np.where(rng.random(n_ids) < 0.5, "control", "treatment")[ids]
    layout = pd.DataFrame({"id": ids, "time": np.tile(np.arange(4), n_ids), "treatment": trt})
    ar = hb.AR1(time="time", group="id")
    f = "y ~ time + treatment + (1 + time | id)"
    return f, ar, hb.simulate(f, layout, TRUE, correlation=ar, seed=1)


def one(n_ids: int, draws: int, tune: int, recover: bool) -> dict:
    import hierbayes as hb

    f, ar, data = simulated(n_ids)
    t0 = time.perf_counter()
    model = hb.Model(f, data, correlation=ar)
    t_design = time.perf_counter() - t0
    fit = model.fit(draws=draws, tune=tune, chains=4, cores=2, seed=1, progressbar=False,
                    recover_random_effects=recover)
    total = time.perf_counter() - t0
    ss = fit.idata.sample_stats
    n_grad = 2 * float(ss["n_steps"].sum())  # tuning draws cost about as much as kept ones
    return {
        "ids": n_ids,
        "rows": int(model.design.n),
        "layout": model.layout,
        "design_s": round(t_design, 2),
        "compile_s": round(fit.timing["compile_s"], 2),
        "sampling_s": round(fit.timing["sampling_s"], 2),
        "recover_s": round(fit.timing.get("recover_s", 0.0), 2),
        "total_s": round(total, 2),
        "us_per_grad": round(fit.timing["sampling_s"] * 2 / n_grad * 1e6, 1),
        "divergences": fit.n_divergences(),
        "sd_intercept_mean": round(float(fit.posterior["sd_id"].sel(id__term="Intercept").mean()), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def per_gradient(n_ids: int) -> dict:
    import numpy as np

    import hierbayes as hb
    from hierbayes.backend.native import bridge as native

    f, ar, data = simulated(n_ids)
    model = hb.Model(f, data, correlation=ar)
    _, slices = native.initial_point_fn(model.build())
    out = {"ids": n_ids, "rows": int(model.design.n)}
    for lay in ("pooled", "direct"):
        buf, info = native.pack(model.design, model.priors, slices, layout=lay)
        x = np.random.default_rng(0).normal(size=info["n_dim"]) * 0.3
        native.logp_and_grad(buf, x)
        reps = 2000 if lay == "pooled" else max(3, int(2e5 // n_ids))
        t0 = time.perf_counter()
        for _ in range(reps):
            native.logp_and_grad(buf, x)
        out[f"{lay}_us_per_grad"] = round((time.perf_counter() - t0) / reps * 1e6, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, nargs="+", default=[2500, 25000, 250000])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--recover-max-ids", type=int, default=25000,
                    help="recover random effects only up to this many ids (memory: draws x ids x q)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--per-gradient", action="store_true",
                    help="time the kernel's gradient in both layouts instead of fitting")
    args = ap.parse_args()
    if args.per_gradient:
        for n in args.ids:
            print(per_gradient(n), flush=True)
        return
    if args.child:
        print(json.dumps(one(args.child, args.draws, args.tune, args.child <= args.recover_max_ids)))
        return
    rows = []
    for n in args.ids:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--draws", str(args.draws), "--tune", str(args.tune),
             "--recover-max-ids", str(args.recover_max_ids)],
            capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import pandas as pd

    df = pd.DataFrame(rows).set_index("ids")
    df["total_ratio_vs_first"] = df["total_s"] / df["total_s"].iloc[0]
    df["rows_ratio_vs_first"] = df["rows"] / df["rows"].iloc[0]
    print(df.to_string())


if __name__ == "__main__":
    main()
