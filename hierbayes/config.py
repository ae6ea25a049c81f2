"""Settings that more than one module reads, each in one validated, immutable object.

:data:`RIDGE` fixes the ridge coordinates in which the marginal backend samples a random
intercept with AR(1)/CAR(1) residuals (:func:`hierbayes.backend.reparam.ridge_parameters`)
and which the native kernel implements (:mod:`hierbayes.backend.native`): both read this
one object, so the PyMC graph and the kernel cannot disagree. Other coordinates are there
for experiments and benchmarks: pass ``settings=RidgeSettings(...)`` to
``ridge_parameters``; the kernel implements the defaults only.
"""

from __future__ import annotations

from dataclasses import dataclass

_VARIANTS = ("rho_first", "share_first")
_RIDGES = ("conditional", "total")


@dataclass(frozen=True)
class RidgeSettings:
    """The ridge coordinates.

    Parameters
    ----------
    variant : {"rho_first", "share_first"}
        Which of the lag-1 correlation ``rho`` of intercept plus residual and the
        intercept's share ``w`` of the ridge is sampled first (the other on its support).
    ridge : {"conditional", "total"}
        The intercept's row of the Cholesky factor below its conditional sd (its covariance
        with the slopes, identified by the data) or the intercept's total sd.
    share_power : float
        The share is ``w_+ sigmoid(x_b)^share_power`` (> 0).

    The defaults were measured over seeds on the acceptance data
    (``benchmarks/bench_seeds.py``, nutpie's low-rank metric): median min bulk ESS 1,438 vs
    646 for ``ridge="total", share_power=1`` at 4 x 1,000 draws, and 13 instead of 22
    leapfrog steps per draw.

    Examples
    --------
    >>> RidgeSettings()
    RidgeSettings(variant='rho_first', ridge='conditional', share_power=3.0)
    >>> RidgeSettings(ridge="partial")
    Traceback (most recent call last):
    ...
    ValueError: RidgeSettings.ridge must be one of ('conditional', 'total'), got 'partial'.
    """

    variant: str = "rho_first"
    ridge: str = "conditional"
    share_power: float = 3.0

    def __post_init__(self):
        if self.variant not in _VARIANTS:
            raise ValueError(f"RidgeSettings.variant must be one of {_VARIANTS}, got {self.variant!r}.")
        if self.ridge not in _RIDGES:
            raise ValueError(f"RidgeSettings.ridge must be one of {_RIDGES}, got {self.ridge!r}.")
        power = self.share_power
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
            raise ValueError(f"RidgeSettings.share_power must be a number > 0, got {power!r}.")
        object.__setattr__(self, "share_power", float(power))


#: the ridge coordinates of every model (what the native kernel implements)
RIDGE = RidgeSettings()
