"""Residual correlation structures within clusters: AR(1), continuous-time AR(1),
compound symmetry, unstructured and ARMA(p, q).

These are plain, immutable specifications; the whitening maths of AR(1)/CAR(1) lives in
:mod:`hierbayes.likelihood.arprocess`, the dense-structure densities (compound symmetry,
unstructured) in :mod:`hierbayes.likelihood.structured`, and the PyMC graph in
:mod:`hierbayes.backend`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hierbayes.spec.keys import check_keys


class PhiSignWarning(UserWarning):
    """AR(1) times whose gaps are all multiples of an even spacing: ``phi`` and ``-phi``
    give the same likelihood, so the sign of ``phi`` is not identified by the data."""


def time_spacing(cluster: np.ndarray, time: np.ndarray) -> int | None:
    """The greatest common divisor of the gaps between successive times within clusters.

    Parameters
    ----------
    cluster, time : numpy.ndarray
        Rows sorted by cluster, then time (as a :class:`~hierbayes.design.build.Design`
        holds them); integer-valued times.

    Returns
    -------
    int or None
        None when no cluster has two rows.

    Examples
    --------
    >>> import numpy as np
    >>> time_spacing(np.array([0, 0, 0, 1, 1]), np.array([0., 2., 6., 4., 8.]))
    2
    """
    cluster, time = np.asarray(cluster), np.asarray(time, dtype=float)
    same = np.diff(cluster) == 0
    gaps = np.rint(np.diff(time)[same]).astype(np.int64)
    if gaps.size == 0:
        return None
    return int(math.gcd(*np.unique(np.abs(gaps)).tolist()))


@dataclass(frozen=True)
class AR1:
    """AR(1) residual correlation in an integer time index, within clusters.

    The correlation between two residuals of the same cluster ``lag`` time units apart
    is ``phi ** lag``; gaps in time are allowed (as ``nlme::corAR1(form = ~time | id)``
    on integer times, and brms ``ar(time, id)`` with gaps handled exactly).

    Parameters
    ----------
    time : str
        Column holding the integer time index.
    group : str
        Column holding the cluster identifier.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.AR1(time="time", group="id")
    AR1(time='time', group='id')
    """

    time: str
    group: str

    kind = "ar1"
    integer_times = True
    phi_bounds = (-1.0, 1.0)
    dense = False

    def bounds(self, n_max: int) -> tuple[float, float]:
        """The support of ``phi`` (the same for every cluster size)."""
        return self.phi_bounds

    def to_dict(self) -> dict:
        """The model-file table (:func:`from_dict` reads it back)."""
        return {"type": self.kind, "time": self.time, "group": self.group}

    def describe(self) -> str:
        return f"AR(1) in {self.time} within {self.group}"

    def sign_alias(self, spacing: int | None) -> str | None:
        """Why the data cannot tell ``phi`` from ``-phi``, or None when they can.

        With every gap in ``time`` a multiple of an even ``spacing`` (see
        :func:`time_spacing`) each correlation is an even power of ``phi``
        (``phi ** 2``, ``phi ** 4``, ...), so ``phi`` and ``-phi`` give the same likelihood
        and chains settle at either sign.

        Examples
        --------
        >>> AR1(time="week", group="id").sign_alias(2)[:43]
        "every gap in 'week' is a multiple of 2: phi"
        >>> AR1(time="week", group="id").sign_alias(1) is None
        True
        """
        if spacing is None or spacing % 2:
            return None
        return (
            f"every gap in {self.time!r} is a multiple of {spacing}: phi and -phi give the "
            f"same likelihood (the correlations are even powers of phi), so its sign is not "
            f"identified; use hb.CAR1(time={self.time!r}, group={self.group!r}) (phi in "
            f"(0, 1)), or {self.time} in units of the spacing ({self.time} / {spacing})"
        )


@dataclass(frozen=True)
class CAR1:
    """Continuous-time AR(1) (exponential) residual correlation for irregular times.

    The correlation between residuals of one cluster at times ``s`` and ``t`` is
    ``phi ** |t - s|`` with ``0 < phi < 1`` (``nlme::corCAR1``).

    Parameters
    ----------
    time : str
        Column holding real-valued observation times.
    group : str
        Column holding the cluster identifier.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.CAR1(time="t", group="subject").describe()
    'continuous-time AR(1) in t within subject'
    """

    time: str
    group: str

    kind = "car1"
    integer_times = False
    phi_bounds = (0.0, 1.0)
    dense = False

    def bounds(self, n_max: int) -> tuple[float, float]:
        """The support of ``phi`` (the same for every cluster size)."""
        return self.phi_bounds

    def to_dict(self) -> dict:
        """The model-file table (:func:`from_dict` reads it back)."""
        return {"type": self.kind, "time": self.time, "group": self.group}

    def describe(self) -> str:
        return f"continuous-time AR(1) in {self.time} within {self.group}"

    def sign_alias(self, spacing: int | None) -> None:
        """Never aliased: ``phi`` is in (0, 1)."""
        return None


@dataclass(frozen=True)
class CompSymm:
    """Compound-symmetry (exchangeable) residual correlation within clusters.

    Every two residuals of one cluster have correlation ``rho``: the residual covariance
    of a cluster of size ``n`` is ``sigma^2 [(1 - rho) I + rho J]`` (``nlme::corCompSymm(form
    = ~ 1 | id)``). Row order within a cluster does not matter (no time column). ``rho`` is
    the posterior variable ``phi`` (the correlation-parameter slot; summary label "rho
    (compound symmetry correlation)"), in ``(-1/(n_max - 1), 1)`` with ``n_max`` the
    largest cluster (positive definiteness).

    With a random intercept on the same group the model is not identified (``rho sigma^2``
    and the intercept variance are the same quantity): :func:`hierbayes.design.build.build_design`
    refuses it. Random slopes on the group (``(0 + x | id)``) are integrated out by the
    marginal backend (whitening ``R^-1/2 = a I + (b - a) J / n``,
    :func:`hierbayes.likelihood.structured.compsymm_whiten`); otherwise the latent backend.

    Parameters
    ----------
    group : str
        Column holding the cluster identifier.

    Examples
    --------
    >>> import hierbayes as hb
    >>> cs = hb.CompSymm(group="id")
    >>> cs.describe(), cs.bounds(5)
    ('compound symmetry within id', (-0.25, 1.0))
    """

    group: str

    kind = "compsymm"
    time = None
    integer_times = False
    dense = True

    def bounds(self, n_max: int) -> tuple[float, float]:
        """``(-1/(n_max - 1), 1)``: the correlations that keep every cluster's matrix
        positive definite (``(-1, 1)`` when no cluster has two rows)."""
        return (-1.0 / (n_max - 1) if n_max > 1 else -1.0, 1.0)

    def describe(self) -> str:
        return f"compound symmetry within {self.group}"

    def sign_alias(self, spacing) -> None:
        """Never aliased."""
        return None

    def to_dict(self) -> dict:
        """The model-file table (:func:`from_dict` reads it back)."""
        return {"type": self.kind, "group": self.group}


#: the most distinct occasions an unstructured correlation takes
MAX_OCCASIONS = 10


@dataclass(frozen=True)
class Unstructured:
    """An unstructured K x K residual correlation over the K distinct occasions.

    Residuals of one cluster at occasions ``j`` and ``k`` have correlation ``C[j, k]``
    (``nlme::corSymm(form = ~ occasion | id)``, brms ``unstr(occasion, id)``), ``C`` a
    correlation matrix with an LKJ(2) prior (posterior variable ``corr_resid``, dims
    ``occasion`` x ``occasion_bis``). A cluster may miss occasions: it uses the
    sub-matrix of those it has. With ``sd_by_occasion=True`` each occasion has its own
    residual sd (``nlme``'s ``weights = varIdent(form = ~ 1 | occasion)``): the posterior
    variable ``sigma_occasion`` (dims ``occasion``) replaces ``sigma``. At most
    :data:`MAX_OCCASIONS` occasions.

    Parameters
    ----------
    time : str
        Column holding the occasion (any values; distinct within a cluster).
    group : str
        Column holding the cluster identifier.
    sd_by_occasion : bool
        One residual sd per occasion.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.Unstructured(time="occasion", group="id").describe()
    'unstructured correlation over occasion within id'
    """

    time: str
    group: str
    sd_by_occasion: bool = False

    kind = "unstructured"
    integer_times = False
    dense = True
    phi_bounds = None

    def describe(self) -> str:
        sd = ", an sd per occasion" if self.sd_by_occasion else ""
        return f"unstructured correlation over {self.time} within {self.group}{sd}"

    def sign_alias(self, spacing) -> None:
        """Never aliased."""
        return None

    def to_dict(self) -> dict:
        """The model-file table (:func:`from_dict` reads it back)."""
        return {"type": self.kind, "time": self.time, "group": self.group,
                "sd_by_occasion": bool(self.sd_by_occasion)}


@dataclass(frozen=True)
class ARMA:
    """Stationary ARMA(p, q) residual correlation in an integer time index, within clusters.

    Two residuals of one cluster at times ``s`` and ``t`` have correlation ``acf(|t - s|)``,
    the autocorrelation function of ``x_t = sum_i ar_i x_(t-i) + e_t + sum_j ma_j e_(t-j)``
    (``nlme::corARMA(form = ~ time | id, p, q)``, brms ``arma(time, id, p, q)``): gaps in
    time are the lags between the times, as nlme takes a time covariate. ``p, q`` in 0..3,
    ``p + q >= 1``; ARMA(1, 0) is :class:`AR1`.

    The sampled parameters are the partial autocorrelations ``arma_ar_pacf`` (dims
    ``ar_lag``) and ``arma_ma_pacf`` (dims ``ma_lag``) in (-1, 1), Uniform(-1, 1) priors
    (stationary and invertible by construction, as nlme's internal parameters); the
    coefficients ``ar`` and ``ma`` are deterministics (:mod:`hierbayes.likelihood.arma`).
    Gaussian family. With random effects on its group (a random intercept too) the marginal
    backend integrates them out (the collapsed likelihood whitened by the Cholesky factor of
    each time pattern's ARMA correlation, :func:`hierbayes.likelihood.collapsed.loglik_dense`);
    without random effects (gls) the latent backend fits it.

    Parameters
    ----------
    time : str
        Column holding the integer time index.
    group : str
        Column holding the cluster identifier.
    p, q : int
        The AR and MA orders.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.ARMA(time="week", group="id", p=1, q=1).describe()
    'ARMA(1, 1) in week within id'
    """

    time: str
    group: str
    p: int = 1
    q: int = 1

    kind = "arma"
    integer_times = True
    dense = True
    phi_bounds = None
    #: a random intercept next to it is identified (nlme allows it)
    aliases_intercept = False

    def __post_init__(self):
        for k in ("p", "q"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 3:
                raise ValueError(f"hb.ARMA: {k} must be a whole number in 0..3, got {v!r}.")
        if self.p + self.q < 1:
            raise ValueError("hb.ARMA: p + q must be at least 1 (ARMA(0, 0) is no correlation: "
                             "drop correlation=).")
        object.__setattr__(self, "p", int(self.p))
        object.__setattr__(self, "q", int(self.q))

    def describe(self) -> str:
        return f"ARMA({self.p}, {self.q}) in {self.time} within {self.group}"

    def sign_alias(self, spacing: int | None) -> str | None:
        """Why the data do not identify the coefficients, or None: with every gap a
        multiple of ``spacing > 1`` only the correlations at those lags enter."""
        if spacing is None or spacing == 1:
            return None
        return (
            f"every gap in {self.time!r} is a multiple of {spacing}: only the correlations at "
            f"lags {spacing}, {2 * spacing}, ... enter the likelihood, so the ARMA coefficients "
            f"at unit lag are not identified; use {self.time} in units of the spacing "
            f"({self.time} / {spacing})"
        )

    def to_dict(self) -> dict:
        """The model-file table (:func:`from_dict` reads it back)."""
        return {"type": self.kind, "time": self.time, "group": self.group, "p": self.p,
                "q": self.q}


Correlation = AR1 | CAR1 | CompSymm | Unstructured | ARMA
#: the classes ``correlation=`` takes
CLASSES = (AR1, CAR1, CompSymm, Unstructured, ARMA)


def from_dict(d: dict | None, where: str = "the correlation table") -> Correlation | None:
    """Build a correlation from a model-file table such as ``{type="ar1", time=..., group=...}``,
    ``{type="compsymm", group=...}``, ``{type="unstructured", time=..., group=...,
    sd_by_occasion=false}`` or ``{type="arma", time=..., group=..., p=1, q=1}``; an unknown key is an error naming it (``where`` says where it
    was written).

    Examples
    --------
    >>> from_dict({"type": "compsymm", "group": "id"})
    CompSymm(group='id')
    """
    if not d:
        return None
    check_keys(where, d, ("type", "time", "group", "sd_by_occasion", "p", "q"))
    kind = str(d.get("type", "")).lower()
    classes = {"ar1": AR1, "car1": CAR1, "compsymm": CompSymm, "unstructured": Unstructured,
               "arma": ARMA}
    if kind not in classes:
        raise ValueError(
            f"correlation type {d.get('type')!r} is not known; use 'ar1' (integer times), "
            "'car1' (real-valued times), 'compsymm' (group only), 'unstructured' "
            "(time = the occasion column) or 'arma' (integer times, p and q)."
        )
    keys = ("group",) if kind == "compsymm" else ("time", "group")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"correlation table needs the keys {missing} (column names).")
    takes = keys + {"unstructured": ("sd_by_occasion",), "arma": ("p", "q")}.get(kind, ())
    extra = [k for k in d if k not in takes + ("type",)]
    if extra:
        raise ValueError(f"a {kind!r} correlation takes no {extra} (its keys are {list(takes)}).")
    if kind == "compsymm":
        return CompSymm(group=str(d["group"]))
    if kind == "unstructured":
        sd = d.get("sd_by_occasion", False)
        if not isinstance(sd, bool):
            raise ValueError(f"sd_by_occasion must be true or false, got {sd!r}.")
        return Unstructured(time=str(d["time"]), group=str(d["group"]), sd_by_occasion=sd)
    if kind == "arma":
        return ARMA(time=str(d["time"]), group=str(d["group"]), p=d.get("p", 1), q=d.get("q", 1))
    return classes[kind](time=str(d["time"]), group=str(d["group"]))
