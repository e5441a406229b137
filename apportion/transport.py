"""Transport attribution for air: how much of a receptor's concentration came from each upwind region.

Method (per receptor, pollutant and window of aligned hourly or finer means):
1. Each station's *excess* is its concentration above the regional background (a low
   quantile across all stations at each step), so air everyone shares stays local
   instead of being credited to whichever region happens to be upwind. A candidate's
   signal is further reduced to its *increments* above its own usual level over the
   last usual_h (its steady local emissions), so an upwind gate switching on cannot
   turn them into a plume.
2. Transit removal: a station downwind of a third region also carries that region's
   plume. Every station's excess is first regressed (one level, same method, point
   estimate) on the other regions' upwind excess, and only what is left — its *own*
   excess — serves as its region's signal. Without this a plume crossing region B on
   its way from A to C would be credited to B.
3. For the receptor, every station of another region is a candidate. Its signal counts
   only at steps when air from it reaches the receptor: the receptor's wind blows from
   within +-half_width_deg of the bearing receptor -> station, and the line the wind draws
   through the station passes within crosswind_km of the receptor (farther to the side
   its air passes by, however small the angle). The signal is lagged by the transport
   time; the lag is chosen (by correlation with the receptor) inside the bounds that
   distance and wind speed allow (geometry.lag_bounds_h). Per region the few stations
   with the largest covariance with the receptor (of those correlated at least
   min_corr) are averaged into one regressor.
4. Receptor = local intercept + sum of region regressors x coefficients, all
   coefficients >= 0 (concentrations add; a negative share has no physical meaning)
   and region coefficients <= max_coef (transport dilutes), solved exactly for the
   sign constraints (apportion.nnls) with an active set for the caps. Receptor and
   regressors are first smoothed over smooth_steps. The local level is held near the
   receptor's usual excess by a pseudo-observation (see WindowSolver._local_prior).
   One column per region, not per station, keeps a 6-24 step window well posed.
5. A region's share is coefficient x mean(regressor) / mean(receptor); local is the
   rest. Uncertainty: moving-block bootstrap of the window's steps (blocks keep the
   autocorrelation), the same resampled steps for every receptor with the same valid
   steps (so a region's combined interval keeps the errors its receptors share),
   deterministic for (seed, window start, number of valid steps). Every replicate
   repeats the station choice of step 3 on its own steps (each candidate at the
   window's lag) and the capped fit, so the interval includes the uncertainty of which
   stations carry the plume.
6. An origin region is named only when its share is at least min_origin_share and its
   bootstrap lower_quantile is above min_lower_share; then the receptor's region is
   the affected one.

Computation: the receptors of one region with the same valid steps are solved together
(WindowSolver.solve), every step above as array operations over all of them and all
their replicates; correlations for every lag and replicate are weighted sums over steps,
i.e. matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter1d

from apportion.geometry import compass, lag_bounds_h, pairwise
from apportion.nnls import nnls_gram
from schemas.network import Station

MODEL_VERSION = "transport-nnls/2"
Array = NDArray[np.float64]


@dataclass(frozen=True)
class AirSeries:
    """Aligned series of one pollutant and the wind, axis 0 = stations, axis 1 = steps (NaN = missing)."""

    stations: tuple[Station, ...]
    conc: Array
    wind_speed: Array  # m/s
    wind_dir: Array  # degrees the wind comes FROM
    dt_h: float = 1.0
    geometry: tuple[Array, Array] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = (len(self.stations), self.conc.shape[1])
        for name in ("conc", "wind_speed", "wind_dir"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {getattr(self, name).shape}")
        object.__setattr__(self, "geometry", pairwise(self.stations))


@dataclass(frozen=True)
class TransportConfig:
    # Stations along one plume are rarely aligned with each other: a sector wider than the
    # plume's own spread keeps the ones it passed first (tuned on simulation seeds 1-2).
    half_width_deg: float = 60.0
    # The line the wind draws through a candidate must pass within this of the receptor: about
    # a plume's width after hours of regional transport (spread plus the wind's wobble); wider
    # sectors otherwise admit stations whose air passes tens of km beside the receptor
    # (chosen among 20-40 km on simulation seeds 1, 2, 6, 8).
    crosswind_km: float = 25.0
    speed_factor: tuple[float, float] = (0.5, 1.5)
    max_lag_h: float = 12.0
    background_quantile: float = 0.1
    stations_per_region: int = 2
    min_upwind_fraction: float = 0.2  # of the window's steps, for a station to be a candidate
    min_corr: float = 0.2  # a candidate must co-vary with the receptor at its lag
    transit_removal: bool = True
    usual_quantile: float = 0.3
    usual_h: float = 48.0  # look-back (window included) for a station's usual level
    max_coef: float = 1.5
    smooth_steps: int = 3  # centred moving mean of receptor and regressors before the fit; 1 = none
    # A week of the receptor's own excess, its 30th percentile: long enough that one episode
    # does not lift it, low enough to stay under a plume that lasts days (tuned on seeds 1, 2, 6, 8).
    local_prior_h: float = 168.0
    local_prior_quantile: float = 0.3
    local_prior_weight: float = 1.0  # relative to the window's step count; 0 leaves the local level free
    n_boot: int = 200
    block_h: float = 4.0
    min_origin_share: float = 0.10
    min_lower_share: float = 0.02
    lower_quantile: float = 0.10  # one-sided 90 % bootstrap test
    seed: int = 0


@dataclass(frozen=True)
class StationUse:
    """Explanation of one upwind station's part in a region's regressor."""

    station_id: str
    region: str
    lag_h: float
    distance_km: float
    bearing_deg: float  # from the receptor to the station: the wind direction that brings its air
    wind_sector: str
    upwind_fraction: float
    corr: float


@dataclass(frozen=True)
class TransportResult:
    receptor: str
    region: str
    t0: int
    t1: int
    shares: dict[str, float]  # origin region -> share, plus "local"; sums to 1
    share_sd: dict[str, float]
    share_interval: dict[str, tuple[float, float]]  # 5 % and 95 % bootstrap quantiles
    origin_region: str | None
    affected_regions: tuple[str, ...]
    r2: float
    rmse: float
    n_steps: int
    mean_conc: float
    stations_used: tuple[StationUse, ...]
    wind_from_deg: float | None  # vector mean over the window at the receptor
    wind_speed_ms: float | None
    model_version: str = MODEL_VERSION
    replicates: Array = field(default_factory=lambda: np.zeros((0, 0)), repr=False, compare=False)  # (n_boot, regions) bootstrap shares
    regions_order: tuple[str, ...] = ()


def _rng_for(seed: int, t0: int, n: int) -> np.random.Generator:
    """The window's resampling, the same for every receptor with n valid steps: a region's
    receptors are resampled together (so combine_region keeps their shared errors), and it
    does not depend on which receptors are solved, so replays are identical."""
    return np.random.default_rng([seed, t0, n])


def _quantile(x: Array, q: float, axis: int) -> Array:
    """NaN-ignoring linear quantile along one axis (NaN where a slice has no value).

    np.nanquantile loops over the slices in Python; this sorts once. Without missing
    values it is np.quantile itself.
    """
    if not np.isnan(x).any():
        return np.asarray(np.quantile(x, q, axis=axis))
    s = np.moveaxis(np.sort(x, axis=axis), axis, -1)  # NaN sort last
    n = (~np.isnan(s)).sum(axis=-1)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0]
    b = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0]
    return np.where(n > 0, a + (b - a) * (pos - lo), np.nan)


def _background(conc: Array, q: float) -> Array:
    """Regional background per step: a low quantile across all stations at that step.

    Most stations sit outside any plume at any one time, so this tracks the air mass
    everyone shares (and its slow changes) without being lifted by a long episode, as
    a per-station quantile over time would be.
    """
    return np.nan_to_num(_quantile(conc, q, axis=0))


def _increments(excess: Array, q: float) -> Array:
    """Excess above each station's own usual level over the given steps (its steady local emissions).

    A candidate's steady local excess, switched on by the upwind gate, would otherwise
    look like a plume arriving with the wind; only departures from its usual level can
    travel to the receptor as a signal.
    """
    return np.maximum(excess - np.quantile(excess, q, axis=1, keepdims=True), 0.0)


def _lagged(signal: Array, a: int, b: int, n_lags: int) -> Array:
    """(N, L, T): every station's signal over steps [a, b) delayed by 0 .. n_lags - 1 steps (zero before the series)."""
    idx = np.arange(a, b)[None, :] - np.arange(n_lags)[:, None]
    return np.where(idx >= 0, signal[:, np.clip(idx, 0, None)], 0.0)


# OpenBLAS spreads a product over threads above 2^18 multiply-adds. On a machine whose cores
# are busy with other work those threads wait on each other far longer than the product
# takes (measured here under load: a 201 x 24 x 1971 product, median 16 ms on two threads,
# 0.24 ms in column blocks on one), so large products go in blocks below that size.
_BLAS_ONE_THREAD = 1 << 18


def _product(a: Array, b: Array) -> Array:
    """a @ b for 2-D arrays, in blocks of columns small enough to stay on one thread."""
    step = max(1, _BLAS_ONE_THREAD // max(1, a.shape[0] * a.shape[1]))
    if b.shape[1] <= step:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for i in range(0, b.shape[1], step):
        np.matmul(a, b[:, i:i + step], out=out[:, i:i + step])
    return out


def _moments(lagged: Array, gate: NDArray[np.bool_], y: Array) -> tuple[Array, Array, Array]:
    """Sums over steps of x, x^2 and x y, each (J, L, S), for receptors J with their own gates.

    lagged (S, L, T) the candidates' signals at every lag, gate (J, S, T) the steps when
    receptor j's wind blows from candidate s, y (J, T) the receptors; x = gate x lagged.
    One small product per candidate (each stays on one thread).
    """
    n_l = lagged.shape[1]
    g = gate.transpose(1, 0, 2).astype(float)  # (S, J, T)
    lt = np.ascontiguousarray(lagged.transpose(0, 2, 1))  # (S, T, L)
    sums = np.matmul(g, np.concatenate([lt, lt * lt], axis=2)).transpose(1, 2, 0)  # (J, 2L, S)
    sxy = np.matmul(g * y[None, :, :], lt).transpose(1, 2, 0)
    return sums[:, :n_l], sums[:, n_l:], sxy


def _scores(sx: Array, sxx: Array, sxy: Array, n: Array | float, sy: Array) -> tuple[Array, Array]:
    """(cov / sqrt(vx), n x the variance of x) from sums over steps of x, x^2 and x y (same
    shapes, overwritten: arrays this size cost more to allocate than to compute with) and
    of the weights and y (broadcast against them).

    The correlation is this over sqrt(vy), which is the same for every candidate of a row.
    A (nearly) constant x, e.g. a station never upwind at that lag, gets its variance
    floored, so its score is about zero instead of rounding noise over rounding noise.
    """
    rel = 1e3 * float(np.finfo(sx.dtype).eps)  # one-pass variances are exact to about this
    u = np.empty_like(sx)
    mx = np.divide(sx, n, out=sx)
    cov = np.subtract(sxy, np.multiply(mx, sy, out=u), out=sxy)
    vx = np.subtract(sxx, np.multiply(np.multiply(mx, mx, out=u), n, out=u), out=sx)  # the means are no longer needed
    floor = np.add(np.multiply(sxx, rel, out=sxx), np.finfo(sx.dtype).tiny, out=sxx)  # > 0: an all-zero x gives 0 / floor = 0
    return np.divide(cov, np.sqrt(np.maximum(vx, floor, out=u), out=u), out=u), vx


def _receptor_spread(syy: Array, sy: Array, n: Array | float) -> tuple[Array, NDArray[np.bool_]]:
    """(sqrt(n x the variance of y), whether it is non-zero) from sums over steps of y^2 and y."""
    vy = syy - sy * sy / n
    defined = vy > 1e3 * float(np.finfo(np.asarray(vy).dtype).eps) * syy
    return np.sqrt(np.where(defined, vy, 1.0)), defined


def _correlation(sx: Array, sxx: Array, sxy: Array, n: Array | float, sy: Array, syy: Array) -> tuple[Array, Array]:
    """(correlation, n x the variance of x), each (..., S), at one lag; sums (..., S), overwritten; n, sy, syy (...)."""
    n = np.asarray(n, dtype=sx.dtype)
    u, vx = _scores(sx, sxx, sxy, n[..., None], sy[..., None])
    spread, defined = _receptor_spread(syy, sy, n)
    return np.where(defined[..., None], u / spread[..., None], -np.inf), vx


def _best_lag(sx: Array, sxx: Array, sxy: Array, n: Array, sy: Array, syy: Array,
              allowed: NDArray[np.bool_]) -> tuple[NDArray[np.int64], Array, Array]:
    """Per row and candidate, the allowed lag (index on axis 1) of highest correlation with the receptor.

    From sums over steps of x, x^2 and x y, each (Q, L, S) (overwritten), and of the weights,
    y and y^2 (Q,); allowed (Q, L, S). Returns (best index, its correlation, n x the variance
    of x there), each (Q, S); the correlation is -inf where the receptor is constant or no lag
    is allowed. Ties go to the shorter lag.
    """
    u, vx = _scores(sx, sxx, sxy, n[:, None, None], sy[:, None, None])
    # corr = u / sqrt(vy), and vy is the same at every lag: the best lag maximises u.
    np.copyto(u, -np.inf, where=~allowed)
    top = u.max(axis=1)
    best = np.zeros(top.shape, dtype=np.int64)
    for lag in range(u.shape[1] - 1, -1, -1):  # a loop over the few lags beats argmax along a short axis
        best[u[:, lag] == top] = lag
    spread, defined = _receptor_spread(syy, sy, n)
    corr = np.where(defined[:, None], top / spread[:, None], -np.inf)
    return best, corr, np.take_along_axis(vx, best[:, None, :], axis=1)[:, 0]


def _select(corr: Array, vx: Array, region: NDArray[np.int64], n_regions: int, cfg: TransportConfig) -> NDArray[np.int64]:
    """(Q, R, k): per row and region, the candidates averaged into its regressor, best first (-1 = none).

    corr and vx (Q, S) as _best_lag gives them; region (S,) each candidate's region. Only
    candidates correlated at least min_corr count, ranked by covariance (corr x spread):
    among stations that co-vary with the receptor, the ones that carry the plume strongly,
    not the edge of it or a quiet station's wiggles. Ties go to the earlier candidate.
    """
    with np.errstate(invalid="ignore"):  # -inf x 0 where a candidate has no correlation; not eligible anyway
        key = np.where(corr >= cfg.min_corr, corr * np.sqrt(np.maximum(vx, 0.0)), -np.inf)
    rows = np.arange(corr.shape[0])
    chosen = np.full((corr.shape[0], n_regions, cfg.stations_per_region), -1)
    for r in range(n_regions):
        members = np.flatnonzero(region == r)
        if members.size == 0:
            continue
        masked = key[:, members]
        for i in range(cfg.stations_per_region):
            c = masked.argmax(axis=1)
            hit = masked[rows, c] > -np.inf
            chosen[:, r, i] = np.where(hit, members[c], -1)
            masked[rows, c] = -np.inf
    return chosen


def _regressors(chosen: NDArray[np.int64], receptor: NDArray[np.int64], x: Array) -> tuple[Array, NDArray[np.bool_]]:
    """Region regressors (Q, T, R) and which regions have one (Q, R): the mean of each row's chosen
    candidates' series. chosen (Q, R, k) from _select; receptor (Q,) the row's receptor, an
    index into x (J, S, T), each candidate's gated signal at its lag for that receptor.
    """
    total = np.zeros((chosen.shape[0], chosen.shape[1], x.shape[2]))
    for i in range(chosen.shape[2]):
        use = chosen[:, :, i] >= 0
        total += x[receptor[:, None], np.where(use, chosen[:, :, i], 0)] * use[..., None]
    count = (chosen >= 0).sum(axis=2)
    return (total / np.maximum(count, 1)[..., None]).transpose(0, 2, 1), count > 0


def _at_lag(lagged: Array, gate: NDArray[np.bool_], lag: NDArray[np.int64]) -> Array:
    """(J, S, T): each candidate's signal at its lag for each receptor (lag (J, S)), on the steps
    the receptor's wind blows from it (gate (J, S, T)); lagged (S, L, T)."""
    return lagged[np.arange(lagged.shape[0])[None, :], lag] * gate


def _fit(gram: Array, rhs: Array, allowed: NDArray[np.bool_], max_coef: float) -> Array:
    """Per problem, NNLS from the normal equations (gram (B, K, K), rhs (B, K)) on the allowed columns,
    every column but the first (the local intercept) capped at max_coef; coefficients (B, K).

    Transport only dilutes: a receptor receives at most about what the upwind stations on
    the plume's path measured, so a coefficient far above 1 means the column fits by
    amplifying a weak signal (a quiet station's wiggles, or a plume's edge). Such columns
    are held at the cap and the others refitted (an active set for the upper bounds).
    """
    coef = nnls_gram(gram, rhs, allowed)
    capped = np.zeros(allowed.shape, dtype=bool)
    while True:
        over = (coef > max_coef) & ~capped
        over[:, 0] = False
        rows = np.flatnonzero(over.any(axis=1))
        if rows.size == 0:
            return coef
        capped[rows] |= over[rows]
        fixed = np.where(capped[rows], max_coef, 0.0)
        free = nnls_gram(gram[rows], rhs[rows] - np.einsum("bkl,bl->bk", gram[rows], fixed), allowed[rows] & ~capped[rows])
        coef[rows] = np.where(capped[rows], max_coef, free)


def _normal_equations(Z: Array, y: Array, w: Array | None = None) -> tuple[Array, Array]:
    """Normal equations (X'WX (Q, K, K), X'Wy (Q, K)) of the design X = [1, Z]: a local intercept
    and the region regressors Z (Q, n, R), for y (Q, n) and optional step weights w (Q, n)."""
    zw = Z if w is None else Z * w[:, :, None]
    gram = np.empty((Z.shape[0], Z.shape[2] + 1, Z.shape[2] + 1))
    gram[:, 0, 0] = Z.shape[1] if w is None else w.sum(axis=1)
    gram[:, 0, 1:] = gram[:, 1:, 0] = zw.sum(axis=1)
    gram[:, 1:, 1:] = np.matmul(zw.transpose(0, 2, 1), Z)
    rhs = np.concatenate([(y if w is None else w * y).sum(axis=1)[:, None], np.matmul(zw.transpose(0, 2, 1), y[:, :, None])[:, :, 0]], axis=1)
    return gram, rhs


def _smooth(v: Array, width: int) -> Array:
    """Centred moving mean along axis 1 of (Q, n, ...) valid steps.

    Lags are whole steps and the wind wobbles, so the upwind signal is a noisy copy of
    what arrives; that noise biases a least-squares coefficient towards zero (errors in
    variables). Averaging a few steps removes much of the timing noise and keeps means.
    """
    if width <= 1 or v.shape[1] < width:
        return v
    return np.asarray(uniform_filter1d(v, size=width, axis=1, mode="nearest"))


def _block_indices(rng: np.random.Generator, n: int, block: int, n_boot: int) -> NDArray[np.int64]:
    """Moving-block bootstrap: n_boot rows of n step indices made of whole blocks."""
    block = max(1, min(block, n))
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    return (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n]


def _upwind(bearing: Array, distance: Array, wind_from: Array, half_width_deg: float, crosswind_km: float) -> NDArray[np.bool_]:
    """Steps when air from station s reaches receptor j: bearing and distance (J, S) from the
    receptor to the station, wind_from (J, T) at the receptor -> (J, S, T).

    The wind must come from within +-half_width_deg of the station's bearing,
    and the line it draws through the station must pass within crosswind_km of the receptor:
    farther to the side, the station's air passes beside the receptor, whatever the angle.
    Through unit vectors: cos and sin of the angle between bearing and wind are small
    products per receptor instead of several passes of angle arithmetic over J x S x T.
    """
    b, w = np.radians(bearing), np.radians(wind_from)
    wind = np.stack([np.cos(w), np.sin(w)], axis=1)  # (J, 2, T)
    cos = np.matmul(np.stack([np.cos(b), np.sin(b)], axis=2), wind)
    aside = np.abs(np.matmul(distance[:, :, None] * np.stack([-np.sin(b), np.cos(b)], axis=2), wind))  # distance x |sin|
    # NaN wind compares False: never upwind. The 1e-12 keeps a wind exactly on the sector's edge inside.
    return np.asarray((cos >= np.cos(np.radians(half_width_deg)) - 1e-12) & (aside <= crosswind_km))


def _vector_mean_wind(series: AirSeries, j: int, a: int, b: int) -> tuple[float | None, float | None]:
    d, s = series.wind_dir[j, a:b], series.wind_speed[j, a:b]
    ok = np.isfinite(d) & np.isfinite(s)
    if not ok.any():
        return None, None
    rad = np.radians(d[ok])
    return round(float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360.0), 1), round(float(s[ok].mean()), 3)


class WindowSolver:
    """Shared work of one window (background, increments, transit removal, lagged signals), then any receptor in it.

    Steps [t0, t1) are the window; the usual_h and local_prior_h before t1 serve as look-back.
    Receptors of one region with the same valid steps share every array operation of their
    solution, so the first of them asked for solves them all and the rest are looked up.
    """

    def __init__(self, series: AirSeries, t0: int, t1: int, cfg: TransportConfig = TransportConfig()) -> None:
        if not 0 <= t0 < t1 <= series.conc.shape[1]:
            raise ValueError(f"window [{t0}, {t1}) outside the series of {series.conc.shape[1]} steps")
        self.series, self.t0, self.t1, self.cfg = series, t0, t1, cfg
        self.n_lags = int(np.ceil(cfg.max_lag_h / series.dt_h)) + 1
        names = [s.region for s in series.stations]
        self.regions = tuple(dict.fromkeys(names))
        self.region_of = np.array([self.regions.index(r) for r in names])
        h0 = max(0, t1 - int(round(cfg.usual_h / series.dt_h)))
        p0 = max(0, t1 - int(round(cfg.local_prior_h / series.dt_h)))
        first = min(h0, p0, t0)  # only these steps are ever read: no quantiles over the rest of the series
        self.background = np.zeros(series.conc.shape[1])
        self.background[first:t1] = _background(series.conc[:, first:t1], cfg.background_quantile)
        excess = np.zeros_like(series.conc)
        excess[:, h0:t1] = _increments(np.nan_to_num(np.maximum(series.conc[:, h0:t1] - self.background[h0:t1], 0.0)), cfg.usual_quantile)
        if cfg.transit_removal:
            excess = self._own_signal(excess, max(0, t0 - self.n_lags + 1), t1)
        self.lagged = _lagged(excess, t0, t1, self.n_lags)  # (N, L, T), shared by every receptor
        with np.errstate(all="ignore"):
            self.usual = _quantile(series.conc[:, p0:t1] - self.background[p0:t1], cfg.local_prior_quantile, axis=1)
        self._solved: dict[int, TransportResult] = {}

    def _candidates(self, receptors: NDArray[np.int64], stations: NDArray[np.int64], a: int, b: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """(gate (J, S, T), allowed lags (J, S, L)) of receptors against stations over steps [a, b).

        Only stations of another region that are upwind often enough are candidates (their
        allowed lags are all False); the allowed lags lie inside the bounds that distance
        and the receptor's median wind speed give (geometry.lag_bounds_h).
        """
        s, cfg = self.series, self.cfg
        dist, bear = s.geometry
        pair = np.ix_(receptors, stations)
        gate = _upwind(bear[pair], dist[pair], s.wind_dir[receptors, a:b], cfg.half_width_deg, cfg.crosswind_km)
        cand = (self.region_of[stations][None, :] != self.region_of[receptors][:, None]) & (gate.mean(axis=2) >= cfg.min_upwind_fraction)
        v = _quantile(s.wind_speed[receptors, a:b], 0.5, axis=1)  # the median
        lo, hi = lag_bounds_h(dist[pair], np.where(np.isfinite(v), v, 0.0)[:, None], cfg.speed_factor,
                              max_lag_h=cfg.max_lag_h)
        lags = np.arange(self.n_lags)
        allowed = (lags >= np.floor(lo / s.dt_h)[..., None]) & (lags <= np.ceil(hi / s.dt_h)[..., None]) & cand[..., None]
        return gate, allowed

    def _own_signal(self, excess: Array, a: int, b: int) -> Array:
        """Each station's excess less what its own upwind regions explain (point estimate), over [a, b).

        Every station is a receptor here, all solved at once.
        """
        n = len(self.series.stations)
        every = np.arange(n)
        gate, allowed = self._candidates(every, every, a, b)
        y = excess[:, a:b]
        lagged = _lagged(excess, a, b, self.n_lags)
        sx, sxx, sxy = _moments(lagged, gate, y)
        lag, corr, vx = _best_lag(sx, sxx, sxy, np.full(n, float(b - a)), y.sum(axis=1), (y * y).sum(axis=1), allowed.transpose(0, 2, 1))
        Z, present = _regressors(_select(corr, vx, self.region_of, len(self.regions), self.cfg), every, _at_lag(lagged, gate, lag))
        coef = _fit(*_normal_equations(Z, y), np.concatenate([np.ones((n, 1), dtype=bool), present], axis=1), self.cfg.max_coef)
        own = excess.copy()
        own[:, a:b] = np.maximum(y - np.einsum("ntr,nr->nt", Z, coef[:, 1:]), 0.0)
        return own

    def solve(self, receptor: int) -> TransportResult:
        if receptor not in self._solved:
            conc = self.series.conc[:, self.t0:self.t1]
            valid = np.isfinite(conc)
            group = np.flatnonzero((self.region_of == self.region_of[receptor]) & (valid == valid[receptor]).all(axis=1))
            self._solved.update(zip(group.tolist(), self._solve_group(group)))
        return self._solved[receptor]

    def _local_prior(self, receptors: NDArray[np.int64], n: int) -> tuple[Array, Array]:
        """A pseudo-observation pulling each receptor's local level towards its usual excess, as
        its (weight, weight x target) terms of the intercept's normal equation, each (J,).

        A plume that stays over the receptor for the whole window is as flat as the local
        term, and the two cannot be told apart from the window alone; the receptor's
        excess over the last local_prior_h (mostly outside any one episode) says what its
        local level usually is (its local_prior_quantile, as plumes only add). Weighted like
        local_prior_weight x n data steps.
        """
        w = max(self.cfg.local_prior_weight, 0.0) * n
        usual = self.usual[receptors]
        return np.full(receptors.size, w), w * np.where(np.isfinite(usual), np.maximum(usual, 0.0), 0.0)

    def _solve_group(self, receptors: NDArray[np.int64]) -> list[TransportResult]:
        """Receptors of one region with the same valid steps, solved together."""
        s, cfg, a, b = self.series, self.cfg, self.t0, self.t1
        n_j = receptors.size
        ok = np.isfinite(s.conc[receptors[0], a:b])
        n = int(ok.sum())
        own = int(self.region_of[receptors[0]])
        pool = np.flatnonzero(self.region_of != own)  # every station of another region
        regions = [r for r in range(len(self.regions)) if r != own]
        region = np.searchsorted(regions, self.region_of[pool])
        n_r = len(regions)
        gate_all, allowed = self._candidates(receptors, pool, a, b)
        gate, lagged = gate_all[:, :, ok], self.lagged[pool][:, :, ok]  # (J, S, n), (S, L, n)
        y = (s.conc[receptors, a:b] - self.background[a:b])[:, ok]
        conc = s.conc[receptors, a:b][:, ok]

        mean_conc = conc.mean(axis=1) if n else np.zeros(n_j)
        results: list[TransportResult] = []
        for i, j in enumerate(receptors.tolist()):  # all local until fitted below
            st = s.stations[j]
            results.append(TransportResult(st.id, st.region, a, b, {"local": 1.0}, {"local": 0.0}, {"local": (1.0, 1.0)}, None, (),
                                           0.0, 0.0, n, float(mean_conc[i]), (), *_vector_mean_wind(s, j, a, b)))
        if n < 3:  # too few steps to correlate or fit anything
            return results

        # The window's own choice (step 3) and its stations, for every receptor.
        sx, sxx, sxy = _moments(lagged, gate, y)
        lag, corr, vx = _best_lag(sx, sxx, sxy, np.full(n_j, float(n)), y.sum(axis=1), (y * y).sum(axis=1), allowed.transpose(0, 2, 1))
        chosen = _select(corr, vx, region, n_r, cfg)
        upwind = gate_all.mean(axis=2)
        for i, j in enumerate(receptors.tolist()):
            results[i] = replace(results[i], stations_used=self._uses(j, pool, upwind[i], chosen[i], lag[i], corr[i], regions))
        fit = np.flatnonzero(mean_conc > 0)
        if fit.size == 0:
            return results
        receptors, gate, y, conc, allowed = receptors[fit], gate[fit], y[fit], conc[fit], allowed[fit]
        lag, chosen, n_j = lag[fit], chosen[fit], fit.size

        # Bootstrap replicates repeat the station choice on their resampled steps (counts as
        # weights: correlations are weighted sums, one product for every replicate and
        # receptor), each candidate at the window's own lag, then the capped fit: the interval
        # carries the uncertainty of which stations were picked, not only of the coefficients.
        # (Re-searching the lags too, within one step of the window's, tripled the cost of this
        # part for two points more coverage on the tuning seeds, measured before crosswind_km.)
        idx = _block_indices(_rng_for(cfg.seed, a, n), n, int(round(cfg.block_h / s.dt_h)), cfg.n_boot)
        n_boot = idx.shape[0]
        counts = np.bincount((idx + n * np.arange(n_boot)[:, None]).ravel(), minlength=idx.size).reshape(idx.shape).astype(float)
        x64 = _at_lag(lagged, gate, lag)  # (J, S, n)
        # Single precision halves the product's cost and ranks correlations well enough
        # (1e-6); centring x and y first (correlation ignores shifts) keeps the one-pass
        # variances free of cancellation.
        x = (x64 - x64.mean(axis=2, keepdims=True)).astype(np.float32)
        yc = (y - y.mean(axis=1, keepdims=True)).astype(np.float32)
        w32 = counts.astype(np.float32)
        m = _product(w32, np.stack([x, x * x, x * yc[:, None, :]]).reshape(-1, n).T).reshape(n_boot, 3, n_j, pool.size)
        usable = np.take_along_axis(allowed, lag[:, :, None], axis=2)[:, :, 0]  # (J, S)
        corr_b, vx_b = _correlation(m[:, 0], m[:, 1], m[:, 2], float(n), w32 @ yc.T, w32 @ (yc * yc).T)
        corr_b[:, ~usable] = -np.inf
        chosen_b = _select(corr_b.reshape(n_boot * n_j, -1), vx_b.reshape(n_boot * n_j, -1), region, n_r, cfg)

        rows = np.arange(n_j)
        Z, present = _regressors(np.concatenate([chosen, chosen_b]), np.concatenate([rows, np.tile(rows, n_boot)]), x64)
        Z = _smooth(Z, cfg.smooth_steps)  # (J + B J, n, R): the window's rows, then replicate b's at J + b J + i
        ys = _smooth(y, cfg.smooth_steps)
        cols = np.concatenate([np.ones((Z.shape[0], 1), dtype=bool), present], axis=1)
        prior_w, prior_wy = self._local_prior(receptors, n)
        gram, rhs = _normal_equations(Z[:n_j], ys)
        gram[:, 0, 0] += prior_w
        rhs[:, 0] += prior_wy
        coef = _fit(gram, rhs, cols[:n_j], cfg.max_coef)
        fitted = coef[:, :1] + np.einsum("jnr,jr->jn", Z[:n_j], coef[:, 1:])
        ss_tot = ((ys - ys.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        ss_res = ((ys - fitted) ** 2).sum(axis=1)
        point = coef[:, 1:] * Z[:n_j].mean(axis=1) / conc.mean(axis=1, keepdims=True)  # (J, R)

        w_rows = np.repeat(counts, n_j, axis=0)  # (B J, n)
        gram, rhs = _normal_equations(Z[n_j:], np.tile(ys, (n_boot, 1)), w_rows)
        gram[:, 0, 0] += np.tile(prior_w, n_boot)
        rhs[:, 0] += np.tile(prior_wy, n_boot)
        coef_b = _fit(gram, rhs, cols[n_j:], cfg.max_coef)
        reps = (coef_b[:, 1:] * gram[:, 0, 1:]).reshape(n_boot, n_j, n_r) / (counts @ conc.T)[:, :, None]  # (B, J, R): w.Z / w.conc

        # Regions named: those with a regressor in the window's own fit, and any that only a
        # replicate found (share 0, but an interval that says it may be there).
        found = present[:n_j] | present[n_j:].reshape(n_boot, n_j, n_r).any(axis=0)
        local_reps = 1.0 - reps.sum(axis=2)
        q = np.quantile(np.concatenate([reps, local_reps[:, :, None]], axis=2), [0.05, 0.95, cfg.lower_quantile], axis=0)  # (3, J, R + 1)
        sd = np.concatenate([reps, local_reps[:, :, None]], axis=2).std(axis=0)  # (J, R + 1)
        for i, slot in enumerate(fit.tolist()):
            listed = np.flatnonzero(found[i])
            names = tuple(self.regions[regions[r]] for r in listed)
            p = point[i, listed]
            shares = {r: float(v) for r, v in zip(names, p)} | {"local": 1.0 - float(p.sum())}
            share_sd = {r: float(sd[i, c]) for r, c in zip(names, listed)} | {"local": float(sd[i, -1])}
            interval = {r: (float(q[0, i, c]), float(q[1, i, c])) for r, c in zip(names, listed)}
            interval["local"] = (float(q[0, i, -1]), float(q[1, i, -1]))
            origin = None
            if names:
                top = int(np.argmax(p))
                if p[top] >= cfg.min_origin_share and q[2, i, listed[top]] >= cfg.min_lower_share:
                    origin = names[top]
            results[slot] = replace(results[slot], shares=shares, share_sd=share_sd, share_interval=interval, origin_region=origin,
                                    affected_regions=(results[slot].region,) if origin else (),
                                    r2=float(1.0 - ss_res[i] / ss_tot[i]) if ss_tot[i] > 0 else 0.0, rmse=float(np.sqrt(ss_res[i] / n)),
                                    replicates=reps[:, i, listed], regions_order=names)
        return results

    def _uses(self, receptor: int, pool: NDArray[np.int64], upwind: Array, chosen: NDArray[np.int64], lag: NDArray[np.int64],
              corr: Array, regions: list[int]) -> tuple[StationUse, ...]:
        """The stations of the window's own fit, region by region, best first."""
        dist, bear = self.series.geometry
        out = []
        for r, region in enumerate(regions):
            for c in chosen[r]:
                if c < 0:
                    continue
                i = int(pool[c])
                st = self.series.stations[i]
                out.append(StationUse(st.id, self.regions[region], float(lag[c] * self.series.dt_h), round(float(dist[receptor, i]), 3),
                                      round(float(bear[receptor, i]), 1), compass(float(bear[receptor, i])),
                                      round(float(upwind[c]), 3), round(float(corr[c]), 3)))
        return tuple(out)


def attribute(series: AirSeries, receptor: str, t0: int, t1: int, cfg: TransportConfig = TransportConfig()) -> TransportResult:
    """One receptor's attribution over steps [t0, t1), without solving the rest of its region."""
    j = next(i for i, s in enumerate(series.stations) if s.id == receptor)
    return WindowSolver(series, t0, t1, cfg)._solve_group(np.array([j]))[0]


def attribute_region(series: AirSeries, region: str, t0: int, t1: int, cfg: TransportConfig = TransportConfig()) -> list[TransportResult]:
    """Every receptor of a region over one window, sharing the window's preparation."""
    solver = WindowSolver(series, t0, t1, cfg)
    return [solver.solve(j) for j, s in enumerate(series.stations) if s.region == region]


def combine_region(results: list[TransportResult], cfg: TransportConfig = TransportConfig()) -> TransportResult:
    """A region's receptors of one window as one result: shares of the region's summed concentration.

    Each receptor weighs by its window-mean concentration; bootstrap replicates are
    combined replicate by replicate (same count for every receptor), so the region's
    interval and its origin test follow the same rule as a single receptor's.
    """
    if not results:
        raise ValueError("no receptors to combine")
    region = results[0].region
    regions = tuple(dict.fromkeys(r for res in results for r in res.regions_order))
    w = np.array([res.mean_conc for res in results])
    w = w / w.sum() if w.sum() > 0 else np.full(len(results), 1.0 / len(results))
    n_boot = max((res.replicates.shape[0] for res in results), default=0)
    reps = np.zeros((n_boot, len(regions)))
    point = np.zeros(len(regions))
    for wi, res in zip(w, results):
        for k, r in enumerate(regions):
            point[k] += wi * res.shares.get(r, 0.0)
            if r in res.regions_order and res.replicates.shape[0] == n_boot:
                reps[:, k] += wi * res.replicates[:, res.regions_order.index(r)]
    shares = {r: float(point[k]) for k, r in enumerate(regions)}
    shares["local"] = 1.0 - float(point.sum())
    local_reps = 1.0 - reps.sum(axis=1)
    q = (lambda a: (float(np.quantile(a, 0.05)), float(np.quantile(a, 0.95)))) if n_boot else (lambda a: (0.0, 0.0))
    sd = {r: float(reps[:, k].std()) if n_boot else 0.0 for k, r in enumerate(regions)}
    sd["local"] = float(local_reps.std()) if n_boot else 0.0
    interval = {r: q(reps[:, k]) for k, r in enumerate(regions)}
    interval["local"] = q(local_reps) if n_boot else (shares["local"], shares["local"])
    origin = None
    if regions and n_boot:
        top = int(np.argmax(point))
        if point[top] >= cfg.min_origin_share and float(np.quantile(reps[:, top], cfg.lower_quantile)) >= cfg.min_lower_share:
            origin = regions[top]
    n = sum(res.n_steps for res in results)
    r2 = float(sum(wi * res.r2 for wi, res in zip(w, results)))
    rmse = float(np.sqrt(sum(res.rmse ** 2 * res.n_steps for res in results) / max(n, 1)))
    uses = tuple(dict.fromkeys(u for res in results for u in res.stations_used))
    first = results[0]
    return TransportResult(region, region, first.t0, first.t1, shares, sd, interval, origin, (region,) if origin else (),
                           r2, rmse, n, float(np.mean([res.mean_conc for res in results])), uses, None, None,
                           replicates=reps, regions_order=regions)
