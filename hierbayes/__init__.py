"""hierbayes: Bayesian hierarchical (mixed-effects) models with AR(1)/CAR(1) residuals.

>>> import hierbayes as hb
>>> data = hb.datasets.load("clark_ar1")
>>> model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
...                  correlation=hb.AR1(time="time", group="id"))
>>> fit = model.fit(seed=1)      # doctest: +SKIP
>>> print(fit.summary())         # doctest: +SKIP
"""

from . import datasets, families
from .correlation import AR1, CAR1
from .fit import Fit
from .model import Model
from .priors import Prior
from .sbc import sbc
from .simulate import simulate
from .comparison import compare, loo
from .persist import load
from .sweep import plot_prior_sweep, prior_sweep

__version__ = "0.1.0"

__all__ = ["AR1", "CAR1", "Fit", "Model", "Prior", "datasets", "families", "simulate", "__version__", "compare", "loo", "load"]
__all__ += ["prior_sweep", "plot_prior_sweep", "sbc"]
