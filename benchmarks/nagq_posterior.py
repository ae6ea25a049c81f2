"""The effect of the node rule on a GLMM's posterior, from one Laplace fit: its draws are
reweighted to each rule by ``exp(ll_rule(theta) - ll_laplace(theta))`` (Pareto-smoothed
importance sampling), and the shift of every hyperparameter's posterior mean is printed in
posterior sds, with the ratio of the posterior sds and the Pareto k. The shifts between two
rules (e.g. 5 x 5 against 7 x 7) are the differences of their lines. This is what
``DEFAULT_NAGQ[2]`` in :mod:`hierbayes.likelihood.quadrature` is chosen from.

    python benchmarks/nagq_posterior.py                  # B1, rules 3, 5, 7, 11
    python benchmarks/nagq_posterior.py --case B1 --rules 3 5 7
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np

import hierbayes as hb
from bench_glmm import CASES, simulated
from hierbayes.backend import glmm


def draws(fit, group) -> dict:
    """The hyperparameters per draw, flat: ``beta`` (D, p), ``sd`` (D, q), ``corr`` (D, q, q)."""
    post = fit.posterior
    out = {"beta": post["beta"].values.reshape(-1, post["beta"].shape[-1]),
           "sd": post[f"sd_{group.name}"].values.reshape(-1, group.q)}
    cname = f"corr_{group.name}"
    out["corr"] = post[cname].values.reshape(-1, group.q, group.q) if cname in post else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="B1", choices=list(CASES))
    ap.add_argument("--rules", nargs="+", type=int, default=[3, 5, 7, 11])
    args = ap.parse_args()
    c = CASES[args.case]
    model = hb.Model(c["formula"], simulated(args.case), family=c["family"], backend="marginal", nagq=1)
    fit = model.fit(seed=1, progressbar=False, recover_random_effects=False)
    g = model.design.groups[0]
    d = draws(fit, g)
    L = glmm.kernel_factors(g, d["sd"], d["corr"])
    cols = [d["beta"], d["sd"]] + ([d["corr"][:, 1:, 0]] if d["corr"] is not None else [])
    labels = ([f"beta[{n}]" for n in model.design.fixed_names] + [f"sd[{j}]" for j in range(g.q)]
              + ([f"corr[{j}, 0]" for j in range(1, g.q)] if d["corr"] is not None else []))
    theta = np.concatenate(cols, axis=1)
    mean, sd = theta.mean(0), theta.std(0)
    ll = {}
    for r in [1] + args.rules:
        mg = glmm.likelihood(model.design, nagq=r)
        t0 = time.process_time()
        ll[r] = np.array([mg.value_and_grad(d["beta"][i], L[i], grad=False)["ll"] for i in range(len(L))])
        print(f"nagq {r}: {time.process_time() - t0:.1f} s CPU for {len(L)} evaluations")
    for r in args.rules:
        lw = ll[r] - ll[1]
        lw_s, k = az.psislw(lw - lw.max())
        w = np.exp(lw_s - lw_s.max())
        w /= w.sum()
        wm = w @ theta
        wsd = np.sqrt(w @ (theta - wm) ** 2)
        print(f"Laplace -> nagq {r}: Pareto k {float(k):.2f}, importance ESS {1 / np.sum(w**2):.0f} of {len(w)}")
        print("  mean shift / posterior sd: " + ", ".join(f"{n} {s:+.3f}" for n, s in zip(labels, (wm - mean) / sd)))
        print("  posterior sd ratio:        " + ", ".join(f"{n} {s:.3f}" for n, s in zip(labels, wsd / sd)))


if __name__ == "__main__":
    main()
