"""Concentration units: mass per volume <-> mixing ratio for the AQI gases.

The pipeline carries ug/m3 (CO mg/m3, see schemas/parameters.py) - the units of
the HJ 633 tables. The EPA tables use ppm (O3, CO) and ppb (SO2, NO2), so EPA
indices from pipeline readings need a conversion. EPA converts at 25 degC and
1 atm: ppb = ug/m3 * 24.45 / M, with 24.45 L/mol the molar volume at those
conditions and M the molar mass in g/mol.

Conversions are done in Decimal (28 significant digits); they are exact for the
stated constants but a reading converted from ug/m3 can land a truncation step
away from one measured in ppb - the index is computed from the converted value.
"""

from __future__ import annotations

from decimal import Decimal

MOLAR_VOLUME_L_PER_MOL = Decimal("24.45")  # 25 degC, 1 atm (EPA convention)
MOLAR_MASS_G_PER_MOL: dict[str, Decimal] = {
    "o3": Decimal("48.00"),
    "no2": Decimal("46.01"),
    "so2": Decimal("64.07"),
    "co": Decimal("28.01"),
}
# Scale of each unit relative to the base unit of its kind.
_MASS_UG_M3 = {"ug/m3": Decimal(1), "mg/m3": Decimal(1000)}
_MIXING_PPB = {"ppb": Decimal(1), "ppm": Decimal(1000)}
UNITS = (*_MASS_UG_M3, *_MIXING_PPB)


def convert(pollutant: str, value: Decimal, from_unit: str, to_unit: str) -> Decimal:
    """Convert `value` of `pollutant` between ug/m3, mg/m3, ppb and ppm (25 degC, 1 atm).

    Mass<->mass and ratio<->ratio need no molar mass (so PM works for mass units);
    mass<->ratio needs one of MOLAR_MASS_G_PER_MOL.
    """
    for unit in (from_unit, to_unit):
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; known: {', '.join(UNITS)}")
    if from_unit == to_unit:
        return value
    if from_unit in _MASS_UG_M3 and to_unit in _MASS_UG_M3:
        return value * _MASS_UG_M3[from_unit] / _MASS_UG_M3[to_unit]
    if from_unit in _MIXING_PPB and to_unit in _MIXING_PPB:
        return value * _MIXING_PPB[from_unit] / _MIXING_PPB[to_unit]
    if pollutant not in MOLAR_MASS_G_PER_MOL:
        raise ValueError(f"no molar mass for {pollutant!r}: cannot convert {from_unit} to {to_unit}")
    mass = MOLAR_MASS_G_PER_MOL[pollutant]
    if from_unit in _MASS_UG_M3:
        ppb = value * _MASS_UG_M3[from_unit] * MOLAR_VOLUME_L_PER_MOL / mass
        return ppb / _MIXING_PPB[to_unit]
    ug_m3 = value * _MIXING_PPB[from_unit] * mass / MOLAR_VOLUME_L_PER_MOL
    return ug_m3 / _MASS_UG_M3[to_unit]


def ugm3_to_ppb(pollutant: str, ug_m3: Decimal) -> Decimal:
    return convert(pollutant, ug_m3, "ug/m3", "ppb")


def ppb_to_ugm3(pollutant: str, ppb: Decimal) -> Decimal:
    return convert(pollutant, ppb, "ppb", "ug/m3")
