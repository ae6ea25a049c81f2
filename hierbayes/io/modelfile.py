"""Model files: a TOML description of a model (formula, data, correlation, priors, sampler)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hierbayes.spec import correlation as corr_mod
from hierbayes import datasets
from hierbayes.spec.keys import check_keys
from hierbayes.spec.priors import Prior

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SAMPLER_KEYS = {"name", "chains", "draws", "tune", "target_accept", "seed", "cores", "max_treedepth",
                 "mass_matrix", "compiler"}
_TOP_KEYS = {"formula", "data", "family", "backend", "nagq", "correlation", "priors", "sampler",
             "sigma", "zi", "hu"}


@dataclass(frozen=True)
class ModelFile:
    """The parsed contents of a model file."""

    path: Path
    formula: str
    data: pd.DataFrame
    #: a family name, or the family object of a ``[family]`` table
    family: object = "gaussian"
    backend: str = "auto"
    nagq: int | None = None
    correlation: object = None
    priors: dict = field(default_factory=dict)
    sampler: str = "nutpie"
    fit_kwargs: dict = field(default_factory=dict)
    #: a formula for the residual sd (``sigma = "~ Sex"``), as ``hb.Model(sigma=...)``
    sigma: str | None = None
    #: a formula for the zero-inflation / hurdle probability (``zi = "~ x"``), as
    #: ``hb.Model(zi=..., hu=...)``
    zi: str | None = None
    hu: str | None = None

    def model(self):
        from hierbayes.model import Model

        return Model(
            self.formula, self.data, correlation=self.correlation, family=self.family,
            priors=self.priors or None, backend=self.backend, nagq=self.nagq,
            sigma=self.sigma, zi=self.zi, hu=self.hu,
        )


def _load_data(spec: str, base: Path) -> pd.DataFrame:
    if spec in datasets.available():
        return datasets.load(spec)
    path = Path(spec)
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise FileNotFoundError(
            f"data {spec!r} is neither a bundled data set {sorted(datasets.available())} "
            f"nor a CSV file (looked for {path})."
        )
    return pd.read_csv(path)


def _family(value, path: Path):
    """``family = "poisson"``, or a ``[family]`` table with the family's ``name`` and its
    settings (``link``; an ordinal family's ``levels``, lowest first)::

        [family]
        name = "cumulative"
        levels = ["low", "mid", "high"]
    """
    if not isinstance(value, dict):
        return value
    import dataclasses

    from hierbayes.spec import families

    where = f"the [family] table of {path}"
    if "name" not in value:
        raise ValueError(f"{where} needs a 'name' key, e.g. name = \"cumulative\".")
    settings = {k: v for k, v in value.items() if k != "name"}
    cls = type(families.get(value["name"]))
    check_keys(where, settings, [f.name for f in dataclasses.fields(cls)])
    return cls(**settings)


def _prior(key: str, d: dict) -> Prior:
    if "dist" not in d:
        raise ValueError(f"prior for {key!r} needs a 'dist' key, e.g. {{ dist = \"Normal\", mu = 0, sigma = 1 }}.")
    params = {k: _prior(f"{key}.{k}", v) if isinstance(v, dict) else v for k, v in d.items() if k != "dist"}
    return Prior(d["dist"], **params)


def read(path: str | Path) -> ModelFile:
    """Read a model file such as ``models/clark_ar1.toml``.

    Examples
    --------
    >>> from hierbayes.io.modelfile import read
    >>> mf = read("models/clark_ar1.toml")   # doctest: +SKIP
    >>> mf.formula                            # doctest: +SKIP
    'y ~ time + treatment + (1 + time | id)'
    """
    path = Path(path)
    with open(path, "rb") as fh:
        cfg = tomllib.load(fh)
    check_keys(f"the top level of {path}", cfg, _TOP_KEYS)
    for key in ("formula", "data"):
        if key not in cfg:
            raise ValueError(f"model file {path} has no {key!r} entry.")
    for table in ("correlation", "sampler", "priors"):
        if table in cfg and not isinstance(cfg[table], dict):
            raise ValueError(f"{table!r} in {path} must be a table ([{table}]), got {cfg[table]!r}.")
    sampler = dict(cfg.get("sampler", {}))
    check_keys(f"the [sampler] table of {path}", sampler, _SAMPLER_KEYS)
    name = sampler.pop("name", "nutpie")
    return ModelFile(
        path=path,
        formula=cfg["formula"],
        data=_load_data(str(cfg["data"]), path.parent),
        family=_family(cfg.get("family", "gaussian"), path),
        backend=cfg.get("backend", "auto"),
        nagq=cfg.get("nagq"),
        correlation=corr_mod.from_dict(cfg.get("correlation"), f"the [correlation] table of {path}"),
        priors={k: _prior(k, v) for k, v in cfg.get("priors", {}).items()},
        sampler=name,
        fit_kwargs=sampler,
        sigma=cfg.get("sigma"),
        zi=cfg.get("zi"),
        hu=cfg.get("hu"),
    )
