"""Response families: each one an object that knows its likelihood, link and support."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    """Normal likelihood with identity link (the only family with a collapsed backend).

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.families import Gaussian
    >>> Gaussian().validate(np.array([0.1, 2.0]), "y")
    """

    name: str = "gaussian"
    link: str = "identity"
    collapsible: bool = True

    def validate(self, y: np.ndarray, column: str) -> None:
        """Raise a ValueError naming ``column`` if ``y`` is outside the family's support."""
        if not np.issubdtype(np.asarray(y).dtype, np.number):
            raise ValueError(
                f"response column {column!r} is not numeric; the {self.name} family needs "
                "real numbers (convert it, e.g. with pd.to_numeric)."
            )
        if not np.all(np.isfinite(y)):
            raise ValueError(
                f"response column {column!r} has infinite values; the {self.name} family "
                "needs finite real numbers."
            )


FAMILIES = {"gaussian": Gaussian, "normal": Gaussian}


def get(family: str | Gaussian) -> Gaussian:
    """Return the family object for a name such as ``"gaussian"``."""
    if not isinstance(family, str):
        return family
    key = family.lower()
    if key not in FAMILIES:
        raise ValueError(
            f"family {family!r} is not available; available families: {sorted(FAMILIES)}."
        )
    return FAMILIES[key]()
