"""hierbayes: Bayesian hierarchical (mixed-effects) models with AR(1)/CAR(1) residuals.

>>> import hierbayes as hb
>>> data = hb.datasets.load("clark_ar1")
>>> model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
...                  correlation=hb.AR1(time="time", group="id"))
>>> fit = model.fit(seed=1)      # doctest: +SKIP
>>> print(fit.summary())  # doctest: +SKIP
"""

from hierbayes import datasets
from hierbayes.spec import families
from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.fit import Fit, load
from hierbayes.sampling.cache import clear_cache
from hierbayes import sampling
from hierbayes.model import Model
from hierbayes.spec.priors import Prior
from hierbayes.studies.sbc import sbc
from hierbayes.predict.simulate import simulate
from hierbayes.criticism.comparison import compare, loo
from hierbayes.studies.sweep import plot_prior_sweep, prior_sweep

from hierbayes.version import __version__

__all__ = ["AR1", "CAR1", "Fit", "Model", "Prior", "datasets", "families", "simulate", "__version__", "compare", "loo", "load"]
__all__ += ["prior_sweep", "plot_prior_sweep", "sbc", "clear_cache"]
