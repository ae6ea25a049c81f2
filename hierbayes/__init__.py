"""hierbayes: Bayesian hierarchical (mixed-effects) models with AR(1)/CAR(1) residuals.

>>> import hierbayes as hb
>>> data = hb.datasets.load("clark_ar1")
>>> model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
...                  correlation=hb.AR1(time="time", group="id"))
>>> fit = model.fit(seed=1)      # doctest: +SKIP
>>> print(fit.summary())  # doctest: +SKIP
"""

import warnings as _warnings

# PyTensor warns (5 lines, at its first C compile of every process) when it finds no BLAS
# to link: pip's numpy/scipy wheels ship OpenBLAS under renamed symbols it cannot link.
# hierbayes' hot paths run in numba or JAX, not PyTensor's C backend, so the warning says
# nothing about a hierbayes fit; with a BLAS PyTensor can link (conda), nothing changes.
_warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)

from hierbayes import datasets  # noqa: E402
from hierbayes.spec import families
from hierbayes.spec.correlation import AR1, ARMA, CAR1, CompSymm, Unstructured
from hierbayes.fit import Fit, load
from hierbayes.sampling.cache import clear_cache
from hierbayes import sampling
from hierbayes.model import Model
from hierbayes.spec.priors import Prior
from hierbayes.design.censoring import DetectionLimit
from hierbayes.studies.sbc import sbc
from hierbayes.studies.crossval import loo_kfold, reloo
from hierbayes.predict.simulate import simulate
from hierbayes.criticism.comparison import compare, loo
from hierbayes.studies.sweep import plot_prior_sweep, prior_sweep

from hierbayes.version import __version__

__all__ = ["AR1", "ARMA", "CAR1", "CompSymm", "Unstructured", "Fit", "Model", "Prior", "datasets", "families", "simulate", "__version__", "compare", "loo", "load"]
__all__ += ["DetectionLimit", "prior_sweep", "plot_prior_sweep", "sbc", "clear_cache", "reloo", "loo_kfold"]
