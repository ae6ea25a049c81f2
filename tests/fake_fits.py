"""Fits with fake posteriors (no sampling) for exact tests of prediction and comparison.

Imported by test modules (pytest puts ``tests/`` on the path); the fits are built from a
real :class:`hierbayes.Model` (its design and priors) and random or constant draws.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

import hierbayes as hb
from hierbayes.sampling.nuts import SamplerOptions


def frame(seed: int = 0, n_ids: int = 6, n_times: int = 4) -> pd.DataFrame:
    """Clusters ``id`` (labels ``s0``, ``s1``, ...) at times 0..n_times-1 (``s1`` with a gap),
    a numeric ``x``, a categorical ``arm`` (a/b) and a response ``y``; rows shuffled."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"s{k}" for k in range(n_ids)], n_times)
    t = np.tile(np.arange(n_times), n_ids).astype(float)
    df = pd.DataFrame({"id": ids, "time": t, "x": rng.normal(size=ids.size),
                       "arm": np.where(rng.random(ids.size) < 0.5, "a", "b")})
    df["y"] = 0.3 + 0.5 * df["x"] + rng.normal(size=ids.size)
    df.loc[df["id"] == "s1", "time"] = np.arange(n_times) + (np.arange(n_times) >= 2)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def fake_fit(model, seed: int = 0, fixed: dict | None = None, chains: int = 2, draws: int = 50,
             backend: str | None = None):
    """A Fit whose posterior holds random draws of every parameter of ``model`` (or, with
    ``fixed``, the given values at every draw), and observed_data as Model builds it."""
    rng = np.random.default_rng(seed)
    d = model.design
    g = d.groups[0]
    q, L = g.q, g.n_levels
    shape = (chains, draws)
    if fixed is None:
        post = {
            "beta": rng.normal(size=shape + (d.p,)),
            "sigma": rng.uniform(0.5, 1.5, size=shape),
            f"sd_{g.name}": rng.uniform(0.3, 1.0, size=shape + (q,)),
            f"b_{g.name}": rng.normal(size=shape + (L, q)),
        }
        if d.correlation is not None:
            lo = 0.05 if d.correlation.kind == "car1" else -0.9
            post["phi"] = rng.uniform(lo, 0.9, size=shape)
    else:
        post = {k: np.broadcast_to(np.asarray(v, dtype=float), shape + np.shape(v)).copy()
                for k, v in fixed.items()}
    tdim = f"{g.name}__term"
    dims = {"beta": ["coef"], f"sd_{g.name}": [tdim], f"b_{g.name}": [g.name, tdim],
            f"corr_{g.name}": [tdim, tdim + "_bis"], "y": ["obs"]}
    order = np.argsort(d.rows)
    coords = {"coef": list(d.fixed_names), g.name: list(g.levels), tdim: list(g.terms),
              tdim + "_bis": list(g.terms), "obs": d.rows[order]}
    idata = az.from_dict(posterior=post, observed_data={"y": d.y[order]}, dims=dims, coords=coords)
    return hb.Fit(idata, d, model.priors, backend or model.backend, model.layout,
                  SamplerOptions(chains=chains, draws=draws))
