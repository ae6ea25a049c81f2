"""Every notebook under notebooks/ runs top to bottom, and says what its text says.

Each notebook's claims are checked in its own kernel after its last cell, against the
variables it computed (a notebook that runs but whose numbers drift from its narrative
fails here); a notebook added without checks fails too.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: per notebook, code run after its last cell: the claims its markdown makes
CLAIMS = {
    "seed_analysis.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
assert fit.backend == "marginal"
assert convergence_verdict(fit.diagnose()).converged
assert "  Converged: every hyperparameter" in str(summary)
# the posterior means sit within 2 posterior sds of nlme's REML estimates
assert (table["z"].abs() < 2).all(), table
assert abs(summary.table.loc["phi (AR(1) correlation)", "mean"] - 0.6748) < 0.05
sh = fit.shrinkage()
assert len(sh) > 0
""",
    "prior_sensitivity.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
assert convergence_verdict(fit4.diagnose()).converged and convergence_verdict(fit10.diagnose()).converged
# "with these defaults no hyperparameter is flagged, at 4 or at 10 occasions; the prior
#  sensitivities are ... below the 0.05 threshold, the likelihood sensitivities above it"
for ps in (ps4, ps10):
    assert (ps["diagnosis"] == "✓").all(), ps
    assert (ps["prior"] < 0.05).all(), ps
# "at 4 occasions a tight prior on the random-effect sds moves the variance parameters by
#  one to three posterior sds ...; with 10 occasions about half as far; the fixed effects
#  move by a small fraction of their sd"
var = [i for i in shifts.index if i.startswith(("sd(", "sigma", "phi"))]
fixed = ["Intercept", "time", "treatment[treatment]"]
assert shifts.loc[var, "4 occasions"].abs().max() >= 1.0, shifts
assert shifts.loc[var, "10 occasions"].abs().mean() < shifts.loc[var, "4 occasions"].abs().mean(), shifts
assert (shifts.loc[fixed].abs() < 0.5).all().all(), shifts
""",
    "prediction_and_comparison.ipynb": """
# "the AR(1) model predicts a new id's four observations much better"
assert comparison.table.index[0] == "AR(1)"
assert comparison.table.loc["independent", "elpd_diff"] > 4 * comparison.table.loc["independent", "dse"]
assert (comparison.table["k > 0.7"] == 0).all()
# an unseen id's forecast is wider than a fitted id's
width = pred_ar.table["q97.5%"] - pred_ar.table["q2.5%"]
assert width.iloc[-1] > width.iloc[:-1].max(), pred_ar.table
assert np.allclose(mean_ar.draws.stack(s=("chain", "draw")).values.ravel(), by_hand)
assert "y" in fit_ar.idata.posterior_predictive
assert (fe.table["z"].abs() < 3).all()
""",    "random_slopes.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
assert fit.backend == "marginal"
assert convergence_verdict(fit.diagnose()).converged
# every hyperparameter within 2 posterior sds of the simulation's value
assert (table["z"].abs() < 2).all(), table
# "the intercepts barely move; the condition slopes are pulled about half way"
assert sh.loc["Intercept", "shrinkage"] < 0.15, sh
assert 0.3 < sh.loc["condition", "shrinkage"] < 0.7, sh
""",
    "logistic_glmm.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
assert model.backend == "quadrature" and fit.backend == "quadrature"
assert convergence_verdict(fit.diagnose()).converged
assert (table["z"].abs() < 2).all(), table
assert "b_school" in fit.posterior
""",
    "crossed_counts.ipynb": """
assert model.backend == "quadrature"  # the GLMM hybrid: site integrated out, year sampled
# the posterior means within 2 sds of the simulation's values
assert (table["z"].abs() < 2).all(), table
# the hybrid with its low-rank metric: every parameter mixes (bulk ESS ~1,400-1,800 of
# 1,000 draws, R-hat <= 1.01; the latent backend's intercept and cover had ~130-150)
assert table["ess_bulk"].min() > 400 and table["r_hat"].max() <= 1.01, table
""",
    "irregular_car1.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
assert convergence_verdict(fit.diagnose()).converged
assert (table["z"].abs() < 2).all(), table
# the fitted patient's forecast is conditioned on its residuals and far narrower than a new one's
assert bool(pred.table["ar_conditioned"].iloc[0]) and pred.table["re_patient"].tolist() == ["fitted", "new"]
width = pred.table["q97.5%"] - pred.table["q2.5%"]
assert width.iloc[0] < 0.5 * width.iloc[1], pred.table
""",
    "gls_structures.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
for f in (fit_ar, fit_cs, fit_sex):
    assert convergence_verdict(f.diagnose()).converged
assert not fit_ar.design.groups  # no random effects: nlme gls
assert (table_ar["z"].abs() < 2).all(), table_ar
assert (table_cs["z"].abs() < 2).all(), table_cs
# "the boys' residual sd is about twice the girls', and the interval excludes 1"
assert 1.5 < float(ratio.mean()) < 2.6 and np.quantile(ratio, 0.03) > 1.0
""",
    "ordinal_ratings.ipynb": """
from hierbayes.report.diagnostics import convergence_verdict
assert convergence_verdict(fit.diagnose()).converged
assert len(cut_labels) == 3
assert (table["z"].abs() < 2).all(), table
# "a higher x moves the mass to the top category"; each row's probabilities sum to 1
p = probs.table[["P(1)", "P(2)", "P(3)", "P(4)"]]
assert p["P(4)"].is_monotonic_increasing and p["P(1)"].is_monotonic_decreasing, p
assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
""",
    "sbc.ipynb": """
assert len(res.ranks) == 20 and res.ranks.notna().all().all()
# "no p-value below 0.01"
assert (uniformity["p_value"] > 0.01).all(), uniformity
""",
}


def test_every_notebook_has_claims_checked():
    assert NOTEBOOKS
    assert sorted(p.name for p in NOTEBOOKS) == sorted(CLAIMS)


#: the most bytes a stored notebook may hold (figures at dpi ~80, small)
MAX_BYTES = 300_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_executed_with_a_figure(path):
    """The site shows the notebooks as stored (myst-nb does not execute them): each is
    committed executed, without errors, with at least one figure, and small."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: a code cell was not executed"
    outputs = [o for c in code for o in c.outputs]
    assert not any(o.output_type == "error" for o in outputs), f"{path.name}: stored with an error"
    assert any("image/png" in o.get("data", {}) for o in outputs), (
        f"{path.name}: no figure stored (a hierbayes Figure shows only under %matplotlib inline)")
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_and_its_claims_hold(path):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CLAIMS[path.name]))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell (the claims: the last)
