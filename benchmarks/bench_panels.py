"""Unbalanced panels with irregular times: today's per-cluster dense kernel against the
whitened one, per gradient, next to a floor, in the same process (issue 20).

Cases (simulated as a clinical or registry panel would be):

- P1: CAR(1), ``y ~ t + trt + (1 + t | id)``, 1-8 visits per id at irregular times, 25,000 ids;
- P2: the same with 250,000 ids;
- P3: AR(1) in integer time with gaps, 2-12 visits per id, 25,000 ids.

Per case it prints the rows, the per-gradient time of the native kernel's ``direct_dense``
layout (dense n x n algebra per cluster: what unbalanced data got before), of its
``direct`` layout (whitening + Woodbury, linear in the rows: what they get now), and of a
*floor*: a numba loop that only reads the data once and computes the whitened residuals
(the least any exact gradient must do), with the ratios. ``--fit`` also fits the case at the
defaults (4 x 1,000 + 1,000 tune) with the new kernel and reports the time, convergence and
peak memory; ``--fit-dense`` fits with the dense kernel too (slow: minutes to tens of
minutes).

    python benchmarks/bench_panels.py                       # per-gradient, P1 and P3
    python benchmarks/bench_panels.py --cases P1 P2 P3 --fit
"""

from __future__ import annotations

import argparse
import resource
import time

import numba
import numpy as np
import pandas as pd

CASES = {
    "P1": dict(n_ids=25_000, visits=(1, 8), kind="car1"),
    "P2": dict(n_ids=250_000, visits=(1, 8), kind="car1"),
    "P3": dict(n_ids=25_000, visits=(2, 12), kind="ar1"),
}
TRUE = {"beta": {"Intercept": 0.2, "t": 0.5, "trt": -0.5}, "sigma": 1.0,
        "sd_id": [0.5, 0.25], "corr_id": [[1.0, 0.2], [0.2, 1.0]], "phi": 0.6}
FORMULA = "y ~ t + trt + (1 + t | id)"


def simulated(n_ids: int, visits: tuple[int, int], kind: str, seed: int = 1):
    """A panel of ``n_ids`` ids with ``visits`` (min, max) visits each: CAR(1) at irregular
    times (exponential gaps, mean 0.5) or AR(1) in integer time with gaps of 1-3."""
    import hierbayes as hb

    rng = np.random.default_rng(seed)
    n = rng.integers(visits[0], visits[1] + 1, size=n_ids)
    ids = np.repeat(np.arange(n_ids), n)
    first = np.r_[0, np.cumsum(n)[:-1]]
    if kind == "car1":
        gaps = rng.exponential(0.5, size=ids.size) + 0.01
    else:
        gaps = rng.integers(1, 4, size=ids.size).astype(float)
    gaps[first] = 0.0
    t = np.cumsum(gaps)
    t -= np.repeat(t[first], n)  # each id's first visit at 0
    trt = (rng.random(n_ids) < 0.5).astype(float)[ids]
    layout = pd.DataFrame({"id": ids, "t": t, "trt": trt})
    corr = hb.CAR1(time="t", group="id") if kind == "car1" else hb.AR1(time="t", group="id")
    return hb.simulate(FORMULA, layout, TRUE, correlation=corr, seed=seed), corr


@numba.njit(cache=True)
def _floor(buf, off_w, off_t, off_n, C, T, m, u, phi):
    """Read every row once and whiten its residual: the least an exact gradient does."""
    total = 0.0
    for g in range(C):
        n = int(buf[off_n + g])
        prev = 0.0
        for s in range(n):
            e = 0.0
            for i in range(m):
                e += buf[off_w + (g * T + s) * m + i] * u[i]
            if s > 0:
                a = phi ** (buf[off_t + g * T + s] - buf[off_t + g * T + s - 1])
                total += (e - a * prev) ** 2 / (1.0 - a * a)
            else:
                total += e * e
            prev = e
    return total


def _time(fn, min_seconds: float = 1.0) -> float:
    fn()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps


def per_gradient(name: str) -> dict:
    import hierbayes as hb
    from hierbayes.backend.native import bridge as native
    from hierbayes.backend.native import kernel

    data, corr = simulated(**CASES[name])
    model = hb.Model(FORMULA, data, correlation=corr)
    _, slices = native.initial_point_fn(model.build())
    out = {"case": name, "ids": CASES[name]["n_ids"], "rows": int(model.design.n),
           "auto_layout": None}
    x = np.random.default_rng(0).normal(size=sum(s for _, s in slices.values())) * 0.3
    values = {}
    for lay in ("direct_dense", "direct"):
        buf, _ = native.pack(model.design, model.priors, slices, layout=lay)
        values[lay] = native.logp_and_grad(buf, x)
        out[f"{lay}_ms"] = round(_time(lambda: native.logp_and_grad(buf, x)) * 1e3, 3)
    auto, _ = native.pack(model.design, model.priors, slices)
    out["auto_layout"] = {kernel.POOLED: "pooled", kernel.DIRECT_DENSE: "direct_dense",
                          kernel.DIRECT_WHITENED: "direct"}[int(auto[kernel.H_DIRECT])]
    (v0, g0), (v1, g1) = values["direct_dense"], values["direct"]
    out["max_rel_diff"] = float(max(abs(v1 - v0) / abs(v0), np.max(np.abs(g1 - g0)) / np.max(np.abs(g0))))
    buf = auto
    C, T = int(buf[kernel.H_G]), int(buf[kernel.H_T])
    m = 1 + int(buf[kernel.H_P])
    u = np.r_[1.0, -np.ones(m - 1) * 0.1]
    args = (buf, int(buf[kernel.O_K]), int(buf[kernel.O_TT]), int(buf[kernel.O_NOBS]), C, T, m, u, 0.6)
    out["floor_ms"] = round(_time(lambda: _floor(*args)) * 1e3, 3)
    out["speedup_vs_dense"] = round(out["direct_dense_ms"] / out["direct_ms"], 1)
    out["x_floor"] = round(out["direct_ms"] / out["floor_ms"], 1)
    return out


def fit(name: str, layout: str = "direct", thin: int = 1, mass_matrix: str | None = None,
        n_ids: int | None = None) -> dict:
    import hierbayes as hb
    from hierbayes.backend.native import bridge as native

    case = dict(CASES[name], **({"n_ids": n_ids} if n_ids else {}))
    data, corr = simulated(**case)
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    model = hb.Model(FORMULA, data, correlation=corr)
    original = native.pack
    if layout != "auto":  # force the layout for this fit (the benchmark's only reach-in)
        native.pack = lambda d, p, s, layout_=layout, **kw: original(d, p, s, layout=layout_)
    try:
        f = model.fit(seed=1, cores=2, progressbar=False, recover_thin=thin, mass_matrix=mass_matrix)
    finally:
        native.pack = original
    total = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime  # robust to other load
    diag = f.diagnose().set_index("check")
    ss = f.idata.sample_stats
    return {
        "case": name, "ids": case["n_ids"], "layout": layout, "cpu_s": round(cpu, 1),
        "mass_matrix": f.options.mass_matrix,
        "thin": thin, "total_s": round(total, 1),
        "compile_s": round(f.timing.get("compile_s", 0.0), 1),
        "sampling_s": round(f.timing["sampling_s"], 1),
        "recover_s": round(f.timing.get("recover_s", 0.0), 1),
        "steps_per_draw": round(float(ss["n_steps"].mean()), 1),
        "divergences": f.n_divergences(),
        "max_rhat": round(float(diag.loc["R-hat", "value"]), 4),
        "min_bulk_ess": int(diag.loc["bulk ESS", "value"]),
        "grads_per_s_cpu": round(float(ss["n_steps"].sum()) / max(cpu, 1e-9)),
        "phi_mean": round(float(f.posterior["phi"].mean()), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=["P1", "P3"], choices=list(CASES))
    ap.add_argument("--fit", action="store_true", help="also fit each case with the new kernel")
    ap.add_argument("--fit-dense", action="store_true", help="and with the dense one (slow)")
    ap.add_argument("--thin", type=int, default=1, help="recover_thin of the fits (P2: 10)")
    ap.add_argument("--mass-matrix", nargs="+", default=[None], choices=["diag", "low_rank"],
                    help="nutpie's metric of the fits (default: the model's)")
    ap.add_argument("--ids", type=int, default=None, help="fit this many ids instead (quick runs)")
    ap.add_argument("--no-gradient", action="store_true", help="skip the per-gradient table")
    args = ap.parse_args()
    if not args.no_gradient:
        rows = [per_gradient(c) for c in args.cases]
        print(pd.DataFrame(rows).set_index("case").to_string(), flush=True)
    if args.fit or args.fit_dense:
        fits = []
        for c in args.cases:
            for mm in args.mass_matrix:
                fits.append(fit(c, "direct", args.thin, mm, args.ids))
                print(fits[-1], flush=True)
            if args.fit_dense:
                fits.append(fit(c, "direct_dense", args.thin, None, args.ids))
                print(fits[-1], flush=True)
        print(pd.DataFrame(fits).to_string())


if __name__ == "__main__":
    main()
