"""Concentration units of gases: mixing ratio (ppb, ppm) <-> mass per volume (ug/m3, mg/m3).

A mass concentration of a gas depends on the temperature and pressure the volume
refers to, so every conversion names its reference state. Ideal gas: the molar
volume is Vm = R*T/p, and c[ug/m3] = x[ppb] * M[g/mol] / Vm[L/mol].

Reference states (`REFERENCE_STATES`):
- ``gb3095-2018``: China GB 3095-2012 as amended in 2018 (amendment no. 1, in force
  2018-09-01, clause 3.14): gaseous pollutants (SO2, NO2, CO, O3, NOx) at the
  "reference state" 298.15 K, 1013.25 hPa; particulate matter at the actual
  temperature and pressure of the measurement (no conversion).
- ``gb3095-2012``: the same standard before the amendment: "standard state"
  273 K, 101.325 kPa, for all pollutants (historical data before 2018-09-01).
- ``epa``: US 40 CFR 50.3, 25 degC and 760 mm Hg (= 101325 Pa).
- ``eu-2008-50``: EU Directive 2008/50/EC, Annex VI: gaseous pollutants at 293 K and
  101.3 kPa; PM at ambient conditions. (Recalled from the directive's text, NOT
  re-verified here: check Annex VI before using it for EU reporting.)

The gb3095 texts were checked against the published amendment (clause 3.14); the
epa values are the long-standing 40 CFR 50.3 convention (the project's
alerts/standards/units.py rounds the resulting molar volume to 24.45 L/mol; this
module computes it, 24.4654 L/mol, so the two differ by 0.06%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

GAS_CONSTANT = 8.314462618  # J/(mol K), CODATA 2018 (exact since the 2019 SI redefinition)


@dataclass(frozen=True)
class ReferenceState:
    name: str
    temperature_k: float
    pressure_pa: float
    source: str

    @property
    def molar_volume_l(self) -> float:
        """Molar volume of an ideal gas in L/mol at this state."""
        return GAS_CONSTANT * self.temperature_k / self.pressure_pa * 1000.0


REFERENCE_STATES: dict[str, ReferenceState] = {
    s.name: s
    for s in (
        ReferenceState("gb3095-2018", 298.15, 101325.0, "GB 3095-2012 amendment 1 (2018), clause 3.14: gaseous pollutants"),
        ReferenceState("gb3095-2012", 273.0, 101325.0, "GB 3095-2012 before the 2018 amendment, clause 3.14 'standard state'"),
        ReferenceState("epa", 298.15, 101325.0, "40 CFR 50.3: 25 degC, 760 mm Hg"),
        ReferenceState("eu-2008-50", 293.0, 101300.0, "Directive 2008/50/EC Annex VI: gaseous pollutants (unverified here)"),
    )
}

# Molar masses in g/mol from the IUPAC conventional standard atomic weights
# (H 1.008, C 12.011, N 14.007, O 15.999, S 32.06): e.g. SO2 = 32.06 + 2*15.999.
MOLAR_MASS_G_PER_MOL: dict[str, float] = {
    "so2": 32.06 + 2 * 15.999,
    "no2": 14.007 + 2 * 15.999,
    "no": 14.007 + 15.999,
    "o3": 3 * 15.999,
    "co": 12.011 + 15.999,
    "nh3": 14.007 + 3 * 1.008,
    "h2s": 2 * 1.008 + 32.06,
}

# Each unit as (kind, scale to the kind's base unit: ppb for ratios, ug/m3 for mass).
UNITS: dict[str, tuple[str, float]] = {
    "ppb": ("ratio", 1.0),
    "ppm": ("ratio", 1000.0),
    "ug/m3": ("mass", 1.0),
    "mg/m3": ("mass", 1000.0),
}


def conversion_factor(species: str, from_unit: str, to_unit: str, state: str | ReferenceState = "gb3095-2018") -> float:
    """The factor f with value[to_unit] = f * value[from_unit].

    Mass <-> mass and ratio <-> ratio need no molar mass; ratio <-> mass needs the
    species' molar mass and the reference state (a preset name or a ReferenceState).
    Raises ValueError for an unknown unit, species or state.
    """
    for unit in (from_unit, to_unit):
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; known: {', '.join(UNITS)}")
    (kind_from, scale_from), (kind_to, scale_to) = UNITS[from_unit], UNITS[to_unit]
    if kind_from == kind_to:
        return scale_from / scale_to
    if species not in MOLAR_MASS_G_PER_MOL:
        raise ValueError(f"no molar mass for {species!r}; known: {', '.join(MOLAR_MASS_G_PER_MOL)}")
    if isinstance(state, str):
        if state not in REFERENCE_STATES:
            raise ValueError(f"unknown reference state {state!r}; known: {', '.join(REFERENCE_STATES)}")
        state = REFERENCE_STATES[state]
    ug_m3_per_ppb = MOLAR_MASS_G_PER_MOL[species] / state.molar_volume_l
    if kind_from == "ratio":  # ratio -> mass
        return scale_from * ug_m3_per_ppb / scale_to
    return scale_from / ug_m3_per_ppb / scale_to


def convert(values: ArrayLike, species: str, from_unit: str, to_unit: str, state: str | ReferenceState = "gb3095-2018") -> NDArray[np.float64]:
    """Convert an array of concentrations of `species` (see `conversion_factor`)."""
    return np.asarray(values, dtype=np.float64) * conversion_factor(species, from_unit, to_unit, state)
