"""Speed and sampling efficiency on the acceptance model, with baselines in the same process.

Runs (4 chains x DRAWS draws + TUNE tune each; cores = 2 by default):

1. hierbayes marginal backend, AR(1) model            (the product: native numba kernel)
2. the same marginal AR(1) model refitted with new y   (compiled-model cache: no recompile)
3. the same marginal AR(1) model through JAX           (baseline: the PyMC graph compiled by
                                                        nutpie's JAX backend)
4. hierbayes latent backend, same AR(1) model         (baseline: non-centred PyMC model)
5. hierbayes marginal backend, model WITHOUT AR(1)     (to compare with bambi)
6. bambi + nutpie, model without AR(1)                 (baseline; bambi has no AR residuals)

The native kernel is compiled once per installation (numba's on-disk cache); ``--cold``
also times that one-off compile in a subprocess with an empty cache directory.

and prints wall time (build + compile + sampling [+ recovery]), min bulk ESS over the
hyperparameters, min ESS per second, divergences, leapfrog steps per draw, time per
gradient, and ratios against the baselines. Usage:

    python benchmarks/bench_acceptance.py            # all
    python benchmarks/bench_acceptance.py --skip-latent --skip-bambi
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np

import hierbayes as hb

HYPER = ["beta", "sigma", "phi", "sd_id", "corr_id"]


def min_ess(idata) -> float:
    names = [v for v in HYPER if v in idata.posterior]
    ess = az.ess(idata.posterior[names])
    vals = []
    for v in names:
        arr = np.asarray(ess[v].values, dtype=float).ravel()
        if v.startswith("corr"):
            arr = arr[np.isfinite(arr) & (arr < 0.99 * ess[v].size * 1e9)]
            q = int(np.sqrt(ess[v].size))
            arr = np.asarray(ess[v].values)[np.triu_indices(q, 1)] if q > 1 else arr
        vals.append(np.nanmin(arr))
    return float(np.nanmin(vals))


def row(name, fit_time, idata, compile_s=float("nan")):
    ss = idata.sample_stats
    steps = float(ss["n_steps"].mean())
    n_grad = float(ss["n_steps"].sum())
    e = min_ess(idata)
    return {
        "run": name,
        "wall_s": fit_time,
        "compile_s": compile_s,
        "min_bulk_ess": e,
        "ess_per_s": e / fit_time,
        "divergences": int(ss["diverging"].sum()),
        "steps_per_draw": steps,
        "n_grad_kept": n_grad,
    }


def run_hierbayes(name, formula, data, correlation, backend, args, seed=1, priors=None,
                  compiler="auto"):
    t0 = time.perf_counter()
    model = hb.Model(formula, data, correlation=correlation, backend=backend, priors=priors)
    fit = model.fit(draws=args.draws, tune=args.tune, chains=4, cores=args.cores, seed=seed,
                    progressbar=False, compiler=compiler)
    wall = time.perf_counter() - t0
    r = row(name, wall, fit.idata, fit.timing.get("compile_s", float("nan")))
    r["sampling_s"] = fit.timing["sampling_s"]
    r["recover_s"] = fit.timing.get("recover_s", 0.0)
    r["compiler"] = fit.timing.get("compiler")
    # time per gradient: sampling time / gradients (tuning included), serial-equivalent
    ss = fit.idata.sample_stats
    r["us_per_grad"] = fit.timing["sampling_s"] * min(args.cores, 4) / (2 * float(ss["n_steps"].sum())) * 1e6
    return r, fit


def run_bambi(data, args):
    import bambi as bmb

    t0 = time.perf_counter()
    m = bmb.Model("y ~ time + treatment + (1 + time | id)", data)
    idata = m.fit(draws=args.draws, tune=args.tune, chains=4, cores=args.cores, inference_method="nutpie",
                  random_seed=1, progressbar=False)
    wall = time.perf_counter() - t0
    # bambi names: Intercept, time, treatment, sigma, 1|id_sigma, time|id_sigma, ...
    post = idata.posterior
    names = [v for v in post.data_vars if not v.endswith("_offset") and "|id" not in v.replace("_sigma", "")]
    names = [v for v in post.data_vars if v in ("Intercept", "time", "treatment", "sigma") or v.endswith("|id_sigma")]
    ess = az.ess(post[names])
    e = float(min(np.nanmin(np.asarray(ess[v].values, float)) for v in names))
    ss = idata.sample_stats
    return {
        "run": "bambi+nutpie, no AR(1)",
        "wall_s": wall,
        "min_bulk_ess": e,
        "ess_per_s": e / wall,
        "divergences": int(ss["diverging"].sum()),
        "steps_per_draw": float(ss["n_steps"].mean()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--skip-latent", action="store_true")
    ap.add_argument("--skip-bambi", action="store_true")
    ap.add_argument("--skip-jax", action="store_true")
    ap.add_argument("--cold", action="store_true", help="time the one-off kernel compile")
    args = ap.parse_args()
    data = hb.datasets.load("clark_ar1")
    ar = hb.AR1(time="time", group="id")
    f = "y ~ time + treatment + (1 + time | id)"
    rows = []
    cold = cold_compile() if args.cold else None
    r, fit = run_hierbayes("hierbayes marginal, AR(1)", f, data, ar, "auto", args)
    rows.append(r)
    base = r
    new = data.assign(y=data["y"] + np.random.default_rng(0).normal(0, 0.1, len(data)))
    # same priors as the first fit (defaults are scaled to the data, so new y would change
    # them): only the data values change and the compiled model is reused
    r2, fit2 = run_hierbayes("marginal, AR(1), refit new y (cached)", f, new, ar, "auto", args, seed=2,
                             priors=fit.priors)
    r2["cache_hit"] = fit2.timing["cache_hit"]
    rows.append(r2)
    if not args.skip_jax:
        rows.append(run_hierbayes("marginal, AR(1), JAX compiler", f, data, ar, "auto", args,
                                  compiler="jax")[0])
    if not args.skip_latent:
        rows.append(run_hierbayes("hierbayes latent, AR(1)", f, data, ar, "latent", args)[0])
    rows.append(run_hierbayes("hierbayes marginal, no AR(1)", f, data, None, "auto", args)[0])
    if not args.skip_bambi:
        try:
            rows.append(run_bambi(data, args))
        except ImportError:
            print("bambi not installed: pip install -e '.[compare]'")
    import pandas as pd

    df = pd.DataFrame(rows).set_index("run")
    df["ess_per_s_vs_marginal"] = df["ess_per_s"] / base["ess_per_s"]
    pd.set_option("display.width", 200)
    print(df.round(3).to_string())
    print()
    if "marginal, AR(1), JAX compiler" in df.index:
        j = df.loc["marginal, AR(1), JAX compiler"]
        print(f"native kernel vs JAX (AR(1)): wall time {j['wall_s'] / base['wall_s']:.1f}x faster, "
              f"time per gradient {j['us_per_grad'] / base['us_per_grad']:.0f}x faster, "
              f"ESS/s {base['ess_per_s'] / j['ess_per_s']:.1f}x")
    if "hierbayes latent, AR(1)" in df.index:
        print(f"ESS/s ratio marginal / latent (AR(1)): {base['ess_per_s'] / df.loc['hierbayes latent, AR(1)', 'ess_per_s']:.1f}x")
    if "bambi+nutpie, no AR(1)" in df.index:
        m = df.loc["hierbayes marginal, no AR(1)"]
        b = df.loc["bambi+nutpie, no AR(1)"]
        print(f"no-AR(1) model: ESS/s hierbayes / bambi = {m['ess_per_s'] / b['ess_per_s']:.1f}x; "
              f"wall time bambi / hierbayes = {b['wall_s'] / m['wall_s']:.1f}x")
    print(f"acceptance model wall time: {base['wall_s']:.1f} s (compile {base['compile_s']:.1f} s, "
          f"sampling {base['sampling_s']:.1f} s, recovery {base['recover_s']:.1f} s; "
          f"{base['steps_per_draw']:.1f} leapfrog steps per draw, ~{base['us_per_grad']:.0f} us per gradient)")
    if cold is not None:
        print(f"one-off compile of the native kernel (empty numba cache, once per installation): "
              f"{cold:.1f} s")


def cold_compile() -> float:
    """Seconds to compile the native kernel with an empty numba cache (a subprocess)."""
    import os
    import subprocess
    import sys
    import tempfile

    code = ("import time; from hierbayes.backend import kernel; t = time.perf_counter(); "
            "kernel.cfuncs(); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "NUMBA_CACHE_DIR": d}, check=True)
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
