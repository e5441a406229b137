"""Bins of station minutes for the drift fit: which minute values a bin mean may use, and the means.

A station takes one or both roles per parameter: the low-cost sensor of a pair (its raw
minute means `{p}_raw`, and its rh / temp over the same minutes, the covariates the
current model needs) and the reference of a pair (its calibrated `{p}`; a reference is
not listed in the registry, so that is its raw value, or raw itself when the job
publishes no calibrated value for it).

Validity: a minute counts when its value is there and its QC bitmask carries no
excluding flag (calibration/qc.py EXCLUDING: range, spike, flat line, device status)
other than CALIBRATION_MISSING: the raw value of a sensor whose model is missing is
still a true measurement, and judging it is the point. A bin mean needs
`min_minutes` such minutes; otherwise it is NaN (the bin does not enter the fit).

Means are taken over the minutes in minute order, whatever order they arrived in, and a
minute seen twice counts once (the last copy), so the same minutes give the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.qc import EXCLUDING, QcFlag

COVARIATES = ("rh", "temp")
USABLE_MASK = int(EXCLUDING & ~QcFlag.CALIBRATION_MISSING)  # flags that make a minute unusable for the fit


@dataclass(frozen=True)
class Roles:
    """What one station's minutes are needed for: sensor of these parameters, reference of those."""

    sensor_of: tuple[str, ...] = ()
    reference_of: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return len(self.sensor_of) + len(self.reference_of) + len(COVARIATES)


@dataclass(frozen=True)
class BinMeans:
    """One station's bin: per parameter the sensor's raw mean and the covariate means over the
    same minutes, and the reference mean; NaN where the bin is not valid."""

    raw: Mapping[str, float]
    covariates: Mapping[str, Mapping[str, float]]  # sensor parameter -> covariate -> mean
    reference: Mapping[str, float]


def _usable(value: Any, qc: Any) -> float:
    if value is None or (qc is not None and int(qc) & USABLE_MASK):
        return math.nan
    return float(value)


def minute_row(doc: Mapping[str, Any], roles: Roles) -> tuple[float, ...]:
    """The values of one station-minute record the station's roles need, NaN where unusable:
    sensor raw values, reference values, then rh and temp."""
    out = [_usable(doc.get(f"{p}_raw"), doc.get(f"{p}_qc")) for p in roles.sensor_of]
    for p in roles.reference_of:
        value = doc.get(p)
        out.append(_usable(value if value is not None else doc.get(f"{p}_raw"), doc.get(f"{p}_qc")))
    out += [math.nan if doc.get(c) is None else float(doc[c]) for c in COVARIATES]
    return tuple(out)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def bin_means(minutes: Mapping[int, tuple[float, ...]], roles: Roles, min_minutes: int) -> BinMeans:
    """Reduce one station's minutes of one bin (minute start -> minute_row) to its means."""
    rows = np.array([minutes[m] for m in sorted(minutes)], dtype=np.float64).reshape(-1, roles.width)
    cov_cols = {c: rows[:, roles.width - len(COVARIATES) + i] for i, c in enumerate(COVARIATES)}
    raw: dict[str, float] = {}
    covariates: dict[str, dict[str, float]] = {}
    for i, p in enumerate(roles.sensor_of):
        ok = np.isfinite(rows[:, i])
        valid = int(ok.sum()) >= min_minutes
        raw[p] = _mean(rows[ok, i]) if valid else math.nan
        # The covariates over the very minutes the raw mean is made of: the model is applied to the pair of means.
        covariates[p] = {c: _mean(col[ok & np.isfinite(col)]) if valid else math.nan for c, col in cov_cols.items()}
    reference: dict[str, float] = {}
    for j, p in enumerate(roles.reference_of):
        col = rows[:, len(roles.sensor_of) + j]
        ok = np.isfinite(col)
        reference[p] = _mean(col[ok]) if int(ok.sum()) >= min_minutes else math.nan
    return BinMeans(raw, covariates, reference)
