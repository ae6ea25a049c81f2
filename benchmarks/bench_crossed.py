"""Crossed and nested designs (issue 16's shapes): hierbayes at its defaults against its
previous paths (every sampled factor non-centred; the log-density through PyMC + JAX
instead of the native hybrid kernel) and bambi + nutpie, in the same process.

    python benchmarks/bench_crossed.py                      # C2-C4, every tool
    python benchmarks/bench_crossed.py --cases C1 --tools default bambi

Per case and tool: wall time of the fit (compile included; each tool's compile cache is
warmed by a discarded first fit, as a user's second fit would find it), divergences, max
R-hat and min bulk ESS over the hyperparameters, min bulk ESS per second, leapfrog steps per
draw, the peak of the numbers Python allocated during the fit (``tracemalloc``: numpy
arrays, the trace, the recovery of the collapsed factor's effects; not JAX's or numba's own
buffers), the peak resident memory of the process so far (``getrusage``), and the ESS/s
ratios against the previous path and bambi. Defaults everywhere: 4 chains x 1,000 draws +
1,000 tune.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from bench_glmm import _hyper, _stats

CASES = {
    "C1": dict(family="gaussian", formula="y ~ x + (1 | s) + (1 | d)"),
    "C2": dict(family="gaussian", formula="y ~ c + (1 + c | subject) + (1 + c | item)"),
    "C3": dict(family="gaussian", formula="y ~ x + (1 | school / klass)"),
    "C4": dict(family="bernoulli", formula="y ~ c + (1 + c | subject) + (1 | item)"),
}


def simulated(case: str, seed: int = 1) -> pd.DataFrame:
    """C1: 3,000 x 1,100 levels, 70,000 rows, unbalanced (level sizes from a gamma);
    C2/C4: 60 subjects x 40 items fully crossed, c a two-level condition (-0.5/0.5) within
    both; C3: 200 schools x 5 classes x 20 pupils."""
    rng = np.random.default_rng(seed)
    if case == "C1":
        n = 70_000
        ps = rng.gamma(0.8, size=3000)
        pd_ = rng.gamma(0.8, size=1100)
        df = pd.DataFrame({"s": rng.choice(3000, n, p=ps / ps.sum()),
                           "d": rng.choice(1100, n, p=pd_ / pd_.sum()), "x": rng.normal(size=n)})
        df["y"] = (0.3 + 0.5 * df.x + rng.normal(0, 0.6, 3000)[df.s] + rng.normal(0, 0.4, 1100)[df.d]
                   + rng.normal(0, 1.0, n))
        return df
    if case == "C3":
        school = np.repeat(np.arange(200), 100)
        klass = np.repeat(np.arange(1000), 20)
        df = pd.DataFrame({"school": school, "klass": klass % 5, "x": rng.normal(size=20_000)})
        df["y"] = (0.3 + 0.5 * df.x + rng.normal(0, 0.5, 200)[school] + rng.normal(0, 0.3, 1000)[klass]
                   + rng.normal(0, 1.0, 20_000))
        return df
    S, I = 60, 40
    df = pd.DataFrame({"subject": np.repeat(np.arange(S), I), "item": np.tile(np.arange(I), S)})
    df["c"] = np.where(rng.random(S * I) < 0.5, -0.5, 0.5)
    bs = rng.multivariate_normal([0, 0], [[0.64, 0.1], [0.1, 0.16]], S)
    bi = rng.multivariate_normal([0, 0], [[0.36, -0.05], [-0.05, 0.09]], I)
    eta = (0.2 + 0.5 * df.c + bs[df.subject, 0] + bs[df.subject, 1] * df.c + bi[df.item, 0]
           + (bi[df.item, 1] * df.c if case == "C2" else 0.0))
    if case == "C2":
        df["y"] = eta + rng.normal(0, 1.0, S * I)
    else:
        df["y"] = (rng.random(S * I) < 1 / (1 + np.exp(-eta))).astype(int)
    return df


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def fit_hierbayes(case: str, centered: str, compiler: str = "auto") -> dict:
    import hierbayes as hb

    c = CASES[case]
    df = simulated(case)
    tracemalloc.start()
    t0 = time.perf_counter()
    model = hb.Model(c["formula"], df, family=c["family"])
    if centered == "none":  # the previous path: every sampled factor non-centred
        model = hb.Model(c["formula"], df, family=c["family"],
                         centered={k: False for k in model.centering})
    fit = model.fit(seed=1, progressbar=False, compiler=compiler)
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    label = (f"hierbayes {model.backend} {fit.timing.get('compiler')}"
             + (" non-centred" if centered == "none" else ""))
    out = {"case": case, "tool": label, **_stats(fit.idata, seconds, _hyper(fit.posterior))}
    out["centering"] = "; ".join(f"{k}: {v.describe()}" for k, v in model.centering.items())
    out["traced_gb"] = round(traced / 1e9, 2)
    out["peak_gb"] = round(peak_gb(), 2)
    return out


def fit_bambi(case: str) -> dict:
    import bambi as bmb

    c = CASES[case]
    df = simulated(case)
    formula = c["formula"].replace("school / klass", "school / klass")
    t0 = time.perf_counter()
    model = bmb.Model(formula, df, family=c["family"])
    idata = model.fit(inference_method="nutpie", random_seed=1, chains=4, progressbar=False)
    seconds = time.perf_counter() - t0
    names = [v for v in idata.posterior.data_vars if not v.endswith("_offset") and v not in ("mu", "p")
             and ("|" not in v or v.endswith("_sigma"))]
    return {"case": case, "tool": "bambi + nutpie", **_stats(idata, seconds, names),
            "peak_gb": round(peak_gb(), 2)}


TOOLS = {"default": lambda c: fit_hierbayes(c, "auto"),
         "jax": lambda c: fit_hierbayes(c, "auto", compiler="jax"),
         "noncentred": lambda c: fit_hierbayes(c, "none"),
         "bambi": fit_bambi}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=["C2", "C3", "C4"], choices=list(CASES))
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    ap.add_argument("--no-warm", action="store_true", help="skip the discarded warm-up fit")
    args = ap.parse_args()
    rows = []
    for case in args.cases:
        for tool in args.tools:
            if not args.no_warm:
                TOOLS[tool](case)  # warm every compile cache; discarded
            rows.append(TOOLS[tool](case))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    prev = df[df.tool.str.endswith("non-centred")].set_index("case")["ess_per_s"]
    jax = df[df.tool.str.endswith(" jax")].set_index("case")["ess_per_s"]
    bam = df[df.tool == "bambi + nutpie"].set_index("case")["ess_per_s"]
    for base, label in ((prev, "x_previous"), (jax, "x_jax"), (bam, "x_bambi")):
        df[label] = [round(r.ess_per_s / base[r.case], 1) if r.case in base else None for r in df.itertuples()]
    print(df.drop(columns=["centering"], errors="ignore").to_string(index=False))
    if "centering" in df:
        for r in df.dropna(subset=["centering"]).itertuples():
            print(f"{r.case} {r.tool}: {r.centering}")


if __name__ == "__main__":
    main()
