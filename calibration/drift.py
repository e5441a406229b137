"""Drift of a low-cost sensor against a co-located reference monitor, and the
calibration proposal it raises.

Inputs are means over bins of `bin_minutes` (hourly by default; the demo uses shorter
bins) on a common bin grid: the sensor's raw values, the reference's values, and any
covariates the current model needs (e.g. rh). calibration/drift_bins.py builds them
from station minutes; calibration/drift_stage.py runs this in the stream.

Fit direction: the raw sensor is regressed on the reference, raw ~ slope*ref + intercept,
and the correction is its inverse, gain = 1/slope, offset = -intercept/slope (the
classical calibration-curve estimator). Least squares assumes the error is in y;
the reference monitor's error is small against the low-cost sensor's, so the
sensor belongs on y. Regressing the reference on the sensor instead would shrink
the gain towards 0 by the sensor's noise (regression dilution). `theil_sen`
(median of pairwise slopes) is available for windows with outliers the QC let
through; OLS is the default because it is exact and vectorisable over windows.

Drift is judged on the current calibration: calibrated ~ gain*ref + offset over
the window; |gain - 1| or |offset| beyond the thresholds (and a fit good enough,
r2 >= min_r2) raises a proposal. A proposal is advice: nothing here changes the
registry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import theilslopes

from calibration.models import Covariates, Linear, model_to_dict
from calibration.registry import ModelVersion, sensor_key
from schemas.calibration import CalibrationProposal, Fit, GainOffset, ModelEntry, ModelRef

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
PROPOSAL_SCHEMA = "jw.calibration_proposal.v1"
Method = Literal["ols", "theil_sen"]


@dataclass(frozen=True)
class LineFit:
    """y ~ slope*x + intercept over n finite pairs."""

    slope: float
    intercept: float
    r2: float
    residual_sd: float
    n: int
    method: Method


@dataclass(frozen=True)
class DriftSettings:
    bin_minutes: int = 60  # one point of the fit: the mean over this many minutes (hourly means by default)
    window_bins: int = 72  # 72 h: long enough for a range of concentrations, short enough to follow a drift
    min_bins: int = 48  # bins with both means needed in the window
    gain_tolerance: float = 0.10  # |calibrated/reference gain - 1| beyond this is drift
    offset_tolerance: float = 3.0  # |offset| beyond this (parameter unit) is drift
    min_r2: float = 0.7  # a worse fit proposes nothing: the pair may not be co-located in effect
    method: Method = "ols"

    def __post_init__(self) -> None:
        if self.bin_minutes < 1 or self.window_bins < 1 or not 3 <= self.min_bins <= self.window_bins:
            raise ValueError("need bin_minutes >= 1 and 3 <= min_bins <= window_bins")

    @property
    def bin_ms(self) -> int:
        return self.bin_minutes * MINUTE_MS

    @property
    def window_ms(self) -> int:
        return self.window_bins * self.bin_ms


def fit_line(x: ArrayLike, y: ArrayLike, method: Method = "ols") -> LineFit | None:
    """Fit y on x over the pairs where both are finite; None with fewer than 3 pairs or constant x."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    n = int(xa.size)
    if n < 3 or np.ptp(xa) == 0:
        return None
    if method == "ols":
        xm, ym = xa.mean(), ya.mean()
        slope = float(np.dot(xa - xm, ya - ym) / np.dot(xa - xm, xa - xm))
        intercept = float(ym - slope * xm)
    elif method == "theil_sen":
        res = theilslopes(ya, xa)
        slope, intercept = float(res.slope), float(res.intercept)
    else:
        raise ValueError(f"unknown method {method!r}")
    resid = ya - (slope * xa + intercept)
    ss_tot = float(np.dot(ya - ya.mean(), ya - ya.mean()))
    r2 = 1.0 - float(np.dot(resid, resid)) / ss_tot if ss_tot > 0 else 0.0
    return LineFit(slope, intercept, r2, float(np.sqrt(np.dot(resid, resid) / (n - 2))), n, method)


def rolling_ols(x: ArrayLike, y: ArrayLike, window: int) -> dict[str, NDArray[np.float64]]:
    """OLS of y on x over the `window` points ending at each index (NaN pairs skipped),
    for every index at once from running sums: slope, intercept, r2 and n per window
    (NaN where a window has fewer than 3 pairs or constant x). Points are one per bin
    on a regular grid: put NaN where a bin is missing."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xs, ys = np.where(ok, xa, 0.0), np.where(ok, ya, 0.0)

    def windowed(a: NDArray[np.float64]) -> NDArray[np.float64]:
        c = np.concatenate(([0.0], np.cumsum(a)))
        lo = np.maximum(np.arange(1, a.size + 1) - window, 0)
        return c[1:] - c[lo]

    n = windowed(ok.astype(np.float64))
    sx, sy, sxx, sxy, syy = (windowed(a) for a in (xs, ys, xs * xs, xs * ys, ys * ys))
    with np.errstate(divide="ignore", invalid="ignore"):
        vxx = sxx - sx * sx / n
        vxy = sxy - sx * sy / n
        vyy = syy - sy * sy / n
        slope = vxy / vxx
        intercept = (sy - slope * sx) / n
        r2 = vxy * vxy / (vxx * vyy)
    bad = (n < 3) | ~(vxx > 1e-12 * np.maximum(sxx, 1.0))
    return {k: np.where(bad, np.nan, v) for k, v in (("slope", slope), ("intercept", intercept), ("r2", r2), ("n", n))}


def _proposal_id(parts: dict[str, object]) -> str:
    """Same sensor, reference, window, replaced version and coefficients -> same id."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return "cp-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def propose(
    station_id: str,
    parameter: str,
    reference_station_id: str,
    bin_start_ms: ArrayLike,
    sensor_raw: ArrayLike,
    reference: ArrayLike,
    current: ModelVersion | None,
    covariates: Covariates | None = None,
    settings: DriftSettings = DriftSettings(),
) -> CalibrationProposal | None:
    """A proposal from the last `window_bins` bins (ending at the end of the last bin
    given), or None when the calibration holds, the window is too thin (fewer than
    `min_bins` bins with both means), or the fit too poor to propose anything.

    `bin_start_ms` are the bins' starts, ascending, `settings.bin_minutes` apart (gaps
    allowed); `current` is the registry version in effect at the window's end (None:
    raw values are what is published); covariates are bin means aligned with the bins.
    """
    starts = np.asarray(bin_start_ms, dtype=np.int64)
    if starts.size == 0:
        return None
    window_end = int(starts[-1]) + settings.bin_ms
    window_start = window_end - settings.window_ms
    sel = starts >= window_start
    raw = np.asarray(sensor_raw, dtype=np.float64)[sel]
    ref = np.asarray(reference, dtype=np.float64)[sel]
    cov = {k: np.asarray(v, dtype=np.float64)[sel] for k, v in (covariates or {}).items()}
    calibrated = current.model.apply(raw, cov) if current is not None else raw

    drift = fit_line(ref, calibrated, settings.method)
    fit = fit_line(ref, raw, settings.method)
    if drift is None or fit is None or fit.n < settings.min_bins or fit.r2 < settings.min_r2 or fit.slope <= 0:
        return None
    gain_off, offset_off = abs(drift.slope - 1.0), abs(drift.intercept)
    if gain_off <= settings.gain_tolerance and offset_off <= settings.offset_tolerance:
        return None

    proposed_model = Linear(gain=round(1.0 / fit.slope, 6), offset=round(-fit.intercept / fit.slope, 6))
    replaces = ModelRef(model_id=current.model_id, version=current.version) if current is not None else None
    sensor = sensor_key(station_id, parameter)
    proposal_id = _proposal_id(
        {"sensor": sensor, "reference": reference_station_id, "window": [window_start, window_end],
         "replaces": replaces, "model": model_to_dict(proposed_model)}
    )
    reasons = []
    if gain_off > settings.gain_tolerance:
        reasons.append(f"gain {drift.slope:.3f} vs reference (tolerance ±{settings.gain_tolerance:g})")
    if offset_off > settings.offset_tolerance:
        reasons.append(f"offset {drift.intercept:+.2f} (tolerance ±{settings.offset_tolerance:g})")
    return CalibrationProposal(
        schema=PROPOSAL_SCHEMA,
        proposal_id=proposal_id,
        sensor=sensor,
        station_id=station_id,
        parameter=parameter,
        reference_station_id=reference_station_id,
        window_start=window_start,
        window_end=window_end,
        replaces=replaces,
        proposed=ModelEntry(
            model_id=f"drift-{proposal_id}",
            version=(current.version + 1) if current is not None else 1,
            effective_from=window_end,
            description=f"linear fit against {reference_station_id} over {fit.n} bins of {settings.bin_minutes} min",
            **model_to_dict(proposed_model),  # type: ignore[typeddict-item]
        ),
        fit=Fit(method=fit.method, n=fit.n, r2=round(fit.r2, 6), residual_sd=round(fit.residual_sd, 6),
                slope=round(fit.slope, 6), intercept=round(fit.intercept, 6)),
        drift=GainOffset(gain=round(drift.slope, 6), offset=round(drift.intercept, 6)),
        thresholds=GainOffset(gain=settings.gain_tolerance, offset=settings.offset_tolerance),
        reason="calibration drifted against the reference: " + "; ".join(reasons),
    )
