"""Summary labels say what each parameter is: phi under CAR(1) is the correlation at unit
time distance, not an AR(1) coefficient."""

from __future__ import annotations

import numpy as np
from fake_fits import fake_fit, frame

import hierbayes as hb
from hierbayes import names


def test_car1_phi_is_labelled_as_correlation_at_unit_distance():
    df = frame()
    df["t"] = df["time"] + np.random.default_rng(0).uniform(0, 0.5, len(df))
    fit = fake_fit(hb.Model("y ~ x + (1 | id)", df, correlation=hb.CAR1(time="t", group="id")))
    index = list(fit.summary().variance.index)
    assert "phi (correlation at unit time distance, CAR(1))" in index
    assert not any("AR(1) correlation" in i for i in index)


def test_ar1_phi_keeps_its_label():
    fit = fake_fit(hb.Model("y ~ x + (1 | id)", frame(), correlation=hb.AR1(time="time", group="id")))
    assert "phi (AR(1) correlation)" in fit.summary().variance.index
    hp = {h.var: h.label for h in names.hyperparameters(fit.design)}
    assert hp["phi"] == names.label("phi", "ar1") == "phi (AR(1) correlation)"
