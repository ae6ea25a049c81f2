"""The names of a model's parameters, dims and summary labels: built here and nowhere else.

A fit's posterior holds ``beta[coef]``, the family's scalars (``sigma``, ``nu``, ``alpha``),
the residual correlation's ``phi`` (or ``sd_ar`` with ``phi`` for a latent AR process) and, for
each grouping factor ``g``, ``sd_g[g__term]``, ``corr_g[g__term, g__term_bis]`` (correlated
terms) and the random effects ``b_g[g, g__term]``; the latent backend samples ``z_g`` (the
non-centred effects). Saved files and user code rely on these names: change them here only.

Examples
--------
>>> from hierbayes import names
>>> names.sd("id"), names.corr("id"), names.effects("id"), names.term_dim("id")
('sd_id', 'corr_id', 'b_id', 'id__term')
>>> names.is_hyperparameter("sd_id"), names.is_hyperparameter("b_id")
(True, False)
>>> names.label("phi")
'phi (AR(1) correlation)'
"""

from __future__ import annotations

#: the fixed-effect coefficients and their dim
FIXED = "beta"
COEF_DIM = "coef"
#: the residual sd, the AR(1) coefficient and the latent AR process's sd
SIGMA = "sigma"
PHI = "phi"
SD_AR = "sd_ar"
#: the scalar model parameters that are not per group (family parameters and AR)
SCALARS = ("sigma", "nu", "alpha", "phi", "sd_ar")

_SD, _CORR, _EFFECTS, _OFFSETS, _CHOL = "sd_", "corr_", "b_", "z_", "chol_"

#: Row labels of the scalar parameters in the summary, the sensitivity table and plots.
SCALAR_LABELS = {
    "sigma": "sigma (residual sd)",
    "nu": "nu (degrees of freedom)",
    "alpha": "alpha (negative binomial shape)",
    "phi": "phi (AR(1) correlation)",
    "sd_ar": "sd of the latent AR process",
}


def sd(group: str) -> str:
    """The random-effect sds of ``group`` (dims ``term_dim(group)``)."""
    return _SD + group


def corr(group: str) -> str:
    """The random-effect correlation matrix of ``group`` (LKJ; correlated terms only)."""
    return _CORR + group


def effects(group: str) -> str:
    """The random effects of ``group`` (dims ``(group, term_dim(group))``)."""
    return _EFFECTS + group


def offsets(group: str) -> str:
    """The standard-normal (non-centred) effects the latent backend samples for ``group``."""
    return _OFFSETS + group


def chol(group: str) -> str:
    """PyMC's LKJ-Cholesky covariance variable of ``group``."""
    return _CHOL + group


def chol_rest(group: str) -> str:
    """The free coordinates of ``group``'s covariance below its ridge coordinates."""
    return _CHOL + group + "_rest"


def value_var(name: str, transform: str) -> str:
    """PyMC's name for the unconstrained value of ``name`` under ``transform``
    (``value_var("sd_id", "log") == "sd_id_log__"``)."""
    return f"{name}_{transform}__"


def term_dim(group: str) -> str:
    """The dim of ``group``'s random-effect terms (``Intercept``, slopes)."""
    return group + "__term"


def bis(dim: str) -> str:
    """The second dim of a square matrix over ``dim`` (PyMC/ArviZ convention)."""
    return dim + "_bis"


def sd_label(term: str, group: str) -> str:
    """Summary label of one random-effect sd: ``sd(time | id)``."""
    return f"sd({term} | {group})"


def corr_label(a: str, b: str, group: str) -> str:
    """Summary label of one random-effect correlation: ``corr(Intercept, time | id)``."""
    return f"corr({a}, {b} | {group})"


def label(name: str) -> str:
    """Summary label of a scalar parameter (its name where it has no longer label)."""
    return SCALAR_LABELS.get(name, name)


def is_group_sd(name: str) -> bool:
    return name.startswith(_SD)


def is_group_corr(name: str) -> bool:
    return name.startswith(_CORR)


def is_effects(name: str) -> bool:
    return name.startswith(_EFFECTS)


def is_hyperparameter(name: str) -> bool:
    """Whether ``name`` is a hyperparameter: what the summary, the diagnostics, the
    sensitivity table and SBC report (``beta``, the scalars, ``sd_*``, ``corr_*``), as
    opposed to random effects and sampler internals."""
    if name.endswith("__"):
        return False
    return name == FIXED or name in SCALARS or is_group_sd(name) or is_group_corr(name)


def is_reported(name: str) -> bool:
    """Whether a sampled variable belongs in a fit's posterior: the hyperparameters, the
    random effects and the parameters of hierarchical priors on the scalars
    (``sigma_sigma``), not the per-coefficient ``beta_<name>``, PyMC's transformed values
    or the latent backend's ``z_*``."""
    if name.endswith("__") or name.startswith(FIXED + "_"):
        return False
    return (
        is_hyperparameter(name)
        or is_effects(name)
        or name.startswith(tuple(s + "_" for s in SCALARS))
    )
