"""Source-type factors in the stream: a region's PMF model fitted on a window of its station
hours (apportion.pmf.fit, robust mode), and each new hour projected onto its profiles
(apportion.pmf.project, weighted NNLS), so contributions stream between refits.

Rows and species: one row per air station and clock hour of the region, one column per
species (the stage's default: the six AQI pollutants in their own units, µg/m3 and CO in
mg/m3; PMF weighs every cell by its own uncertainty, so units do not mix). Station hours
rather than region means, because a region's sites share its source types and ten stations
give ten times the rows. Only complete rows (every species a valid hourly mean) are fitted;
a new hour's row is projected when at least half its species are valid, the missing cells
given no weight.

Uncertainty, EPA PMF 5's equation form: u = sqrt((error_fraction * x)^2 + (MDL / 2)^2), with
typical detection limits of hourly analysers (DETECTION_LIMITS).

Factor names: PMF factors have none, and their order after a fit is arbitrary. Each factor is
keyed by its marker, the species of which it explains the largest part over the fit window
(`f_so2`; a second factor with the same marker is `f_so2_2`), and factors are ordered by their
marker's place in the species list. A refit that finds the same sources keeps their keys, so a
stored series (share_f_so2) stays one source. Profiles are reported as EPA PMF's "percent of
species": per factor and species, the part of the species' modelled total over the fit window
that the factor explains (each species' parts sum to 1 over the factors), which, unlike the raw
profile, does not depend on the species' units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from apportion import pmf

Array = NDArray[np.float64]
# Typical detection limits of hourly analysers (PMF's MDL), in each species' unit (CO mg/m3, the rest µg/m3).
DETECTION_LIMITS: dict[str, float] = {"pm25": 2.0, "pm10": 3.0, "so2": 1.0, "no2": 2.0, "co": 0.05, "o3": 2.0}
# A missing cell of a projected row: no weight against the measured ones (pmf.project needs finite U).
_MISSING_U = 1e9


@dataclass(frozen=True)
class FactorModel:
    """A region's profiles from the station hours of window (start, end] (UTC epoch ms, hour ends)."""

    region: str
    species: tuple[str, ...]
    ids: tuple[str, ...]  # factor keys, in the canonical order of the rows below
    F: Array  # (p, m) profiles, rows sum to 1 (species' own units)
    explained: Array  # (p, m) part of each species' modelled total over the window from each factor
    window_start: int
    window_end: int
    seed: int
    n_rows: int
    fit: pmf.PMFResult
    error_fraction: float

    @property
    def frac_scaled_over_3(self) -> float:
        """Share of the fitted cells with |residual / u| > 3: a factor-count aid beside Q / Qexp."""
        return float((np.abs(self.fit.scaled_residuals) > 3).mean())


def uncertainty(X: Array, species: tuple[str, ...], error_fraction: float) -> Array:
    """PMF cell uncertainties of X (rows x species); NaN cells (missing) get no weight."""
    mdl = np.array([DETECTION_LIMITS[s] for s in species])
    U = np.sqrt((error_fraction * np.nan_to_num(X)) ** 2 + (mdl / 2) ** 2)
    return np.where(np.isfinite(X), U, _MISSING_U)


def canonical_factors(species: tuple[str, ...], explained: Array) -> tuple[list[int], list[str]]:
    """Factor order (by marker species, then by how much of it they explain) and their keys."""
    markers = explained.argmax(axis=1)
    order = sorted(range(len(markers)), key=lambda k: (markers[k], -explained[k, markers[k]]))
    ids: list[str] = []
    seen: dict[str, int] = {}
    for k in order:
        marker = species[markers[k]]
        seen[marker] = seen.get(marker, 0) + 1
        ids.append(f"f_{marker}" if seen[marker] == 1 else f"f_{marker}_{seen[marker]}")
    return order, ids


def explained_parts(G: Array, F: Array) -> Array:
    """(p, m): part of each species' modelled total sum_t (G F)[t, s] from each factor."""
    parts = G.sum(axis=0)[:, None] * F
    totals = parts.sum(axis=0)
    return np.divide(parts, totals, out=np.zeros_like(parts), where=totals > 0)


def fit_region(region: str, X: Array, species: tuple[str, ...], p: int, window: tuple[int, int], seed: int,
               restarts: int, error_fraction: float) -> FactorModel:
    """The region's model from complete rows X (n, m), in a fixed row order (deterministic for the seed)."""
    result = pmf.fit(X, uncertainty(X, species, error_fraction), p, seed=seed, restarts=restarts, robust=True)
    order, ids = canonical_factors(species, explained_parts(result.G, result.F))
    F = result.F[order]
    return FactorModel(region, species, tuple(ids), F, explained_parts(result.G[:, order], F), window[0], window[1], seed,
                       X.shape[0], result, error_fraction)


def project_rows(model: FactorModel, X: Array) -> Array:
    """Contributions (b, p) of new rows X (b, m) on the model's profiles; NaN cells are missing."""
    return pmf.project(np.nan_to_num(X), model.F, uncertainty(X, model.species, model.error_fraction))
