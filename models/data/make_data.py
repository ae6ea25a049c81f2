"""Write the simulated data sets the example model files under ``models/`` fit.

Each data set is drawn by :func:`hierbayes.simulate` from its model at known parameter
values (given below, so a fit can be read against them), with a fixed seed:

    python models/data/make_data.py          # rewrites models/data/*.csv

``tests/io/test_model_files.py`` checks that the committed files are what this script writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import hierbayes as hb

HERE = Path(__file__).resolve().parent


def psych_slopes() -> pd.DataFrame:
    """A small within-subject experiment: 30 subjects x 24 trials, a two-level condition
    (effect-coded -0.5 / 0.5) with by-subject random intercepts and condition slopes."""
    rng = np.random.default_rng(11)
    layout = pd.DataFrame({"subject": np.repeat([f"s{i:02d}" for i in range(30)], 24),
                           "condition": np.tile([-0.5, 0.5], 30 * 12)})
    layout["trial"] = np.tile(np.arange(24), 30)
    layout = layout.sample(frac=1.0, random_state=rng.integers(1 << 31)).reset_index(drop=True)
    params = {"beta": {"Intercept": 6.3, "condition": 0.12}, "sigma": 0.25,
              "sd_subject": [0.3, 0.08], "corr_subject": [[1.0, 0.4], [0.4, 1.0]]}
    return hb.simulate("log_rt ~ condition + (1 + condition | subject)", layout, params, seed=12)


def logistic_schools() -> pd.DataFrame:
    """Pass/fail of 12 pupils in each of 60 schools against hours of study (a logistic GLMM
    with a random intercept per school)."""
    rng = np.random.default_rng(21)
    layout = pd.DataFrame({"school": np.repeat(np.arange(60), 12),
                           "hours": np.round(rng.gamma(4.0, 1.0, 720), 1)})
    params = {"beta": {"Intercept": -1.5, "hours": 0.4}, "sd_school": [0.8]}
    return hb.simulate("passed ~ hours + (1 | school)", layout, params, family="bernoulli",
                       seed=22).astype({"passed": int})


def crossed_counts() -> pd.DataFrame:
    """Counts of a species at 40 sites over 12 years (every site every year): crossed random
    intercepts of site and year, a site-level covariate."""
    rng = np.random.default_rng(31)
    site_cover = rng.uniform(0, 1, 40).round(2)
    layout = pd.DataFrame({"site": np.repeat(np.arange(40), 12), "year": np.tile(np.arange(2010, 2022), 40)})
    layout["cover"] = site_cover[layout["site"]]
    params = {"beta": {"Intercept": 1.0, "cover": 0.8}, "sd_site": [0.5], "sd_year": [0.3]}
    return hb.simulate("count ~ cover + (1 | site) + (1 | year)", layout, params, family="poisson",
                       seed=32).astype({"count": int})


def irregular_visits() -> pd.DataFrame:
    """A clinical panel: 150 patients, 1-8 visits each at irregular times (years), two arms,
    a random intercept and slope per patient and continuous-time AR(1) residuals."""
    rng = np.random.default_rng(41)
    rows = []
    for i in range(150):
        n = int(rng.integers(1, 9))
        later = rng.choice(np.arange(10, 400), size=n - 1, replace=False) / 100  # distinct, 0.1-4 years
        t = np.sort(np.concatenate([[0.0], later]))
        rows.append(pd.DataFrame({"patient": i, "years": t, "arm": int(i % 2)}))
    layout = pd.concat(rows, ignore_index=True)
    params = {"beta": {"Intercept": 50.0, "years": -1.5, "arm": 2.0}, "sigma": 3.0,
              "sd_patient": [5.0, 1.0], "phi": 0.6}
    return hb.simulate("score ~ years + arm + (1 + years | patient)", layout, params,
                       correlation=hb.CAR1(time="years", group="patient"), seed=42)


def gls_panel() -> pd.DataFrame:
    """A gls-style panel without random effects: 100 units x 6 waves, AR(1) residuals
    within unit, a treatment and a linear trend."""
    layout = pd.DataFrame({"unit": np.repeat(np.arange(100), 6), "wave": np.tile(np.arange(6), 100)})
    layout["treated"] = (layout["unit"] % 2).astype(int)
    params = {"beta": {"Intercept": 10.0, "wave": 0.5, "treated": 1.0}, "sigma": 2.0, "phi": 0.7}
    return hb.simulate("outcome ~ wave + treated", layout, params,
                       correlation=hb.AR1(time="wave", group="unit"), seed=52)


def growth_by_sex() -> pd.DataFrame:
    """An Orthodont-like growth study: 27 children (16 boys, 11 girls) measured at ages 8,
    10, 12 and 14, a random intercept per child and a residual sd per sex (nlme's
    ``weights = varIdent(form = ~ 1 | Sex)``)."""
    layout = pd.DataFrame({"Subject": np.repeat([f"S{i:02d}" for i in range(27)], 4),
                           "age": np.tile([8, 10, 12, 14], 27)})
    layout["Sex"] = np.where(layout["Subject"].str[1:].astype(int) < 16, "Male", "Female")
    params = {"beta": {"Intercept": 17.0, "age": 0.66, "Sex[Male]": 1.0}, "sd_Subject": [1.8],
              "beta_sigma": {"Intercept": np.log(0.75), "Sex[Male]": np.log(2.0)}}
    return hb.simulate("distance ~ age + Sex + (1 | Subject)", layout, params, sigma="~ Sex", seed=62)


def ordinal_ratings() -> pd.DataFrame:
    """Ratings on a 1-4 scale by 100 raters of 8 items each (a cumulative-logit model with a
    random intercept per rater on the latent scale; ordinal::clmm, brms ``cumulative``)."""
    rng = np.random.default_rng(71)
    layout = pd.DataFrame({"rater": np.repeat(np.arange(100), 8), "x": np.tile(rng.normal(size=8), 100)})
    params = {"beta": {"x": 0.8}, "cutpoints": [-1.0, 0.5, 2.0], "sd_rater": [0.7]}
    return hb.simulate("rating ~ x + (1 | rater)", layout, params, family="cumulative", seed=72)


def sbc_intercepts() -> pd.DataFrame:
    """The SBC notebook's design (20 groups x 5 rows, one predictor) with a response drawn
    at fixed values: the model file fits the model whose calibration the notebook checks."""
    rng = np.random.default_rng(7)
    layout = pd.DataFrame({"g": np.repeat(np.arange(20), 5), "x": rng.normal(size=100)})
    params = {"beta": {"Intercept": 0.5, "x": 1.0}, "sigma": 1.0, "sd_g": [0.7]}
    return hb.simulate("y ~ x + (1 | g)", layout, params, seed=82)


DATA = {
    "psych_slopes": psych_slopes,
    "logistic_schools": logistic_schools,
    "crossed_counts": crossed_counts,
    "irregular_visits": irregular_visits,
    "gls_panel": gls_panel,
    "growth_by_sex": growth_by_sex,
    "ordinal_ratings": ordinal_ratings,
    "sbc_intercepts": sbc_intercepts,
}


def write(folder: Path = HERE) -> list[Path]:
    """Write every data set as ``<name>.csv`` into ``folder``; returns the paths."""
    out = []
    for name, make in DATA.items():
        path = Path(folder) / f"{name}.csv"
        make().to_csv(path, index=False, float_format="%.6g")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write():
        print(p)
