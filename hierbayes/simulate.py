"""Simulate data from a model specification at given parameter values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .design import build_design
from .spec import parse


def simulate(
    formula: str,
    data: pd.DataFrame,
    params: dict,
    *,
    correlation=None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Draw the response of a Gaussian mixed model at given parameter values.

    Parameters
    ----------
    formula : str
        Model formula; its response column is (re)written.
    data : DataFrame
        Predictors, grouping and time columns (the layout); the response column may be absent.
    params : dict
        ``beta`` (dict label -> value, or array in design order), ``sigma``,
        ``sd_<g>`` (array per term), ``corr_<g>`` (q x q correlation, optional, default
        identity), ``phi`` (with a correlation).
    correlation : hb.AR1 or hb.CAR1, optional
    seed : int, optional

    Returns
    -------
    DataFrame
        A copy of ``data`` with the simulated response, in the same row order.

    Examples
    --------
    >>> import numpy as np, pandas as pd, hierbayes as hb
    >>> layout = pd.DataFrame({"id": np.repeat(np.arange(50), 4), "time": np.tile(np.arange(4), 50)})
    >>> sim = hb.simulate("y ~ time + (1 + time | id)", layout,
    ...                   {"beta": {"Intercept": 0.2, "time": 0.5}, "sigma": 1.0,
    ...                    "sd_id": [0.5, 0.25], "phi": 0.7},
    ...                   correlation=hb.AR1(time="time", group="id"), seed=1)
    >>> sim.shape
    (200, 3)
    """
    rng = np.random.default_rng(seed)
    spec = parse(formula, correlation=correlation)
    frame = data.copy().reset_index(drop=True)
    frame[spec.response] = 0.0
    # a placeholder response that is not constant, so the design checks pass
    frame[spec.response] = rng.standard_normal(len(frame))
    d = build_design(spec, frame, na_action="raise")
    beta = params.get("beta", {})
    if isinstance(beta, dict):
        unknown = set(beta) - set(d.fixed_names)
        if unknown:
            raise KeyError(f"beta has labels {sorted(unknown)} not in the model's {list(d.fixed_names)}.")
        beta = np.array([float(beta.get(n, 0.0)) for n in d.fixed_names])
    mu = d.X @ np.asarray(beta, dtype=float)
    for g in d.groups:
        sd = np.atleast_1d(np.asarray(params[f"sd_{g.name}"], dtype=float))
        corr = np.asarray(params.get(f"corr_{g.name}", np.eye(g.q)), dtype=float)
        cov = sd[:, None] * corr * sd[None, :]
        b = rng.multivariate_normal(np.zeros(g.q), cov, size=g.n_levels)
        mu = mu + (g.Z * b[g.index]).sum(axis=1)
    sigma = float(params["sigma"])
    eps = rng.standard_normal(d.n) * sigma
    if d.correlation is not None:
        phi = float(params["phi"])
        # AR(1) recursion along each cluster's sorted rows (lags from the time gaps)
        lay = d.layout
        e = np.zeros_like(lay.pos, dtype=float)
        for k in range(lay.width):
            col = lay.mask[:, k]
            innov = np.zeros(lay.n_clusters)
            innov[col] = eps[lay.pos[col, k]]
            if k == 0:
                e[:, 0] = innov
            else:
                a = np.where(col, phi ** lay.lag[:, k], 0.0)
                e[:, k] = a * e[:, k - 1] + np.sqrt(1 - a**2) * innov
        eps = np.zeros(d.n)
        eps[lay.pos[lay.mask]] = e[lay.mask]
    y = mu + eps
    out = data.copy()
    values = np.empty(len(frame))
    values[d.rows] = y
    out[spec.response] = values
    return out
