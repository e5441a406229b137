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
   only at steps when the receptor's wind blows from it (within +-half_width_deg of
   the bearing receptor -> station), lagged by the transport time; the lag is chosen
   (by correlation with the receptor) inside the bounds that distance and wind speed
   allow (geometry.lag_bounds_h). Per region the few stations with the largest
   covariance with the receptor (of those correlated at least min_corr) are averaged
   into one regressor.
4. Receptor = local intercept + sum of region regressors x coefficients, all
   coefficients >= 0 (concentrations add; a negative share has no physical meaning)
   and region coefficients <= max_coef (transport dilutes), solved exactly for the
   sign constraints (apportion.nnls) with an active set for the caps. Receptor and
   regressors are first smoothed over smooth_steps. The local level is held near the
   receptor's usual excess by a pseudo-observation (see WindowSolver._local_prior).
   One column per region, not per station, keeps a 6-24 step window well posed.
5. A region's share is coefficient x mean(regressor) / mean(receptor); local is the
   rest. Uncertainty: moving-block bootstrap of the window's steps (blocks keep the
   autocorrelation), deterministic for (seed, receptor, window start). Station and
   lag selection is not redone inside the bootstrap, so intervals are somewhat narrow.
6. An origin region is named only when its share is at least min_origin_share and its
   bootstrap lower_quantile is above min_lower_share; then the receptor's region is
   the affected one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter1d

from apportion.geometry import compass, is_upwind, lag_bounds_h, pairwise
from apportion.nnls import nnls_batch
from schemas.network import Station

MODEL_VERSION = "transport-nnls/1"
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


def _rng_for(seed: int, receptor: str, t0: int) -> np.random.Generator:
    """Independent of which other receptors or windows are solved, so replays are identical."""
    return np.random.default_rng([seed, zlib.crc32(receptor.encode()), t0])


def _background(series: AirSeries, q: float) -> Array:
    """Regional background per step: a low quantile across all stations at that step.

    Most stations sit outside any plume at any one time, so this tracks the air mass
    everyone shares (and its slow changes) without being lifted by a long episode, as
    a per-station quantile over time would be.
    """
    with np.errstate(all="ignore"):
        bg = np.nanquantile(series.conc, q, axis=0)
    return np.nan_to_num(bg)


def _excess(series: AirSeries, background: Array) -> Array:
    """Concentration above the regional background; zero where missing."""
    return np.nan_to_num(np.maximum(series.conc - background[None, :], 0.0))


def _increments(excess: Array, h0: int, t1: int, q: float) -> Array:
    """Excess above each station's own usual level over [h0, t1) (its steady local emissions).

    A candidate's steady local excess, switched on by the upwind gate, would otherwise
    look like a plume arriving with the wind; only departures from its usual level can
    travel to the receptor as a signal.
    """
    out = np.zeros_like(excess)
    usual = np.quantile(excess[:, h0:t1], q, axis=1, keepdims=True)
    out[:, h0:t1] = np.maximum(excess[:, h0:t1] - usual, 0.0)
    return out


def _fit(A: Array, y: Array, free_first: int, max_coef: float) -> tuple[Array, Array]:
    """NNLS of y on A with region coefficients capped at max_coef; returns (coefficients, capped mask).

    Transport only dilutes: a receptor receives at most about what the upwind stations on
    the plume's path measured, so a coefficient far above 1 means the column fits by
    amplifying a weak signal (a quiet station's wiggles, or a plume's edge). Such columns
    are held at the cap and the others refitted (an active set for the upper bounds).
    """
    capped = np.zeros(A.shape[1], dtype=bool)
    while True:
        coef = np.full(A.shape[1], max_coef)
        coef[~capped] = nnls_batch(A[None][:, :, ~capped], (y - A[:, capped] @ coef[capped])[None])[0]
        over = (coef > max_coef) & ~capped & (np.arange(A.shape[1]) >= free_first)
        if not over.any():
            return coef, capped
        capped |= over


@dataclass(frozen=True)
class _Design:
    Z: Array  # (T, R) one regressor per region
    regions: tuple[str, ...]
    uses: tuple[StationUse, ...]


def _design(series: AirSeries, j: int, signal: Array, y: Array, a: int, b: int, cfg: TransportConfig) -> _Design:
    """Region regressors for receptor j over steps [a, b) from the stations of other regions."""
    dist, bear = series.geometry
    stations = series.stations
    own = stations[j].region
    n_steps = b - a
    others = np.array([i for i, s in enumerate(stations) if s.region != own], dtype=int)
    gate = is_upwind(bear[j, others][:, None], series.wind_dir[j, a:b][None, :], cfg.half_width_deg)  # (S, T)
    upwind_fraction = gate.mean(axis=1)
    # Only stations upwind often enough are candidates; dropping the rest first keeps the
    # lag search small (a 60 degree sector holds about a third of the network).
    often = upwind_fraction >= cfg.min_upwind_fraction
    cand, gate, upwind_fraction = others[often], gate[often], upwind_fraction[often]
    if cand.size == 0:
        return _Design(np.zeros((n_steps, 0)), (), ())
    max_lag = int(np.ceil(cfg.max_lag_h / series.dt_h))
    with np.errstate(all="ignore"):
        v = float(np.nanmedian(series.wind_speed[j, a:b]))
    lo, hi = lag_bounds_h(dist[j, cand], v if np.isfinite(v) else 0.0, cfg.speed_factor, max_lag_h=cfg.max_lag_h)
    lo_s, hi_s = np.floor(lo / series.dt_h).astype(int), np.ceil(hi / series.dt_h).astype(int)
    lags = np.arange(max_lag + 1)
    idx = np.arange(a, b)[None, :] - lags[:, None]  # (L, T)
    lagged = np.where(idx >= 0, signal[cand][:, np.clip(idx, 0, None)], 0.0) * gate[:, None, :]  # (S, L, T)
    ok = np.isfinite(y)
    if ok.all():
        yc, xc = y - y.mean(), lagged - lagged.mean(axis=2, keepdims=True)
    else:
        yc = np.where(ok, y - y[ok].mean(), 0.0) if ok.any() else np.zeros_like(y)
        xc = np.where(ok, lagged - (lagged * ok).sum(axis=2, keepdims=True) / max(ok.sum(), 1), 0.0)
    with np.errstate(all="ignore"):
        corr = (xc @ yc) / np.sqrt((xc * xc).sum(axis=2) * (yc @ yc))
    allowed = (lags[None, :] >= lo_s[:, None]) & (lags[None, :] <= hi_s[:, None])
    corr = np.where(allowed & np.isfinite(corr), corr, -np.inf)
    best_lag = corr.argmax(axis=1)
    best_corr = corr[np.arange(cand.size), best_lag]
    # Rank by covariance (corr x spread): among stations that co-vary with the receptor, the
    # ones that carry the plume strongly, not the edge of it or a quiet station's wiggles.
    spread = np.sqrt((xc[np.arange(cand.size), best_lag] ** 2).sum(axis=1))
    rank_key = np.where(np.isfinite(best_corr), np.where(np.isfinite(best_corr), best_corr, 0.0) * spread, -np.inf)
    regions: list[str] = []
    columns: list[Array] = []
    uses: list[StationUse] = []
    cand_region = [stations[i].region for i in cand]
    for region in dict.fromkeys(cand_region):
        members = [k for k in range(cand.size) if cand_region[k] == region and best_corr[k] >= cfg.min_corr]
        chosen = sorted(members, key=lambda k: (-rank_key[k], stations[cand[k]].id))[: cfg.stations_per_region]
        if not chosen:
            continue
        regions.append(region)
        columns.append(np.mean([lagged[k, best_lag[k]] for k in chosen], axis=0))
        for k in chosen:
            s = int(cand[k])
            uses.append(StationUse(stations[s].id, region, float(best_lag[k] * series.dt_h), round(float(dist[j, s]), 3),
                                   round(float(bear[j, s]), 1), compass(float(bear[j, s])), round(float(upwind_fraction[k]), 3),
                                   round(float(best_corr[k]), 3)))
    Z = np.stack(columns, axis=1) if columns else np.zeros((n_steps, 0))
    return _Design(Z, tuple(regions), tuple(uses))


def _own_signal(series: AirSeries, excess: Array, a: int, b: int, cfg: TransportConfig) -> Array:
    """Each station's excess less what its own upwind regions explain (point estimate), over [a, b)."""
    own = excess.copy()
    for j in range(len(series.stations)):
        y = excess[j, a:b]
        d = _design(series, j, excess, y, a, b, cfg)
        if not d.regions:
            continue
        A = np.concatenate([np.ones((b - a, 1)), d.Z], axis=1)
        coef, _ = _fit(A, y, 1, cfg.max_coef)
        own[j, a:b] = np.maximum(y - d.Z @ coef[1:], 0.0)
    return own


def _smooth(x: Array, ok: NDArray[np.bool_], width: int) -> Array:
    """Centred moving mean over the valid steps (axis 0), then only those steps.

    Lags are whole steps and the wind wobbles, so the upwind signal is a noisy copy of
    what arrives; that noise biases a least-squares coefficient towards zero (errors in
    variables). Averaging a few steps removes much of the timing noise and keeps means.
    """
    v = x[ok]
    if width <= 1 or v.shape[0] < width:
        return v
    return np.asarray(uniform_filter1d(v, size=width, axis=0, mode="nearest"))


def _block_indices(rng: np.random.Generator, n: int, block: int, n_boot: int) -> NDArray[np.int64]:
    """Moving-block bootstrap: n_boot rows of n step indices made of whole blocks."""
    block = max(1, min(block, n))
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    return (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n]


def _vector_mean_wind(series: AirSeries, j: int, a: int, b: int) -> tuple[float | None, float | None]:
    d, s = series.wind_dir[j, a:b], series.wind_speed[j, a:b]
    ok = np.isfinite(d) & np.isfinite(s)
    if not ok.any():
        return None, None
    rad = np.radians(d[ok])
    return round(float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360.0), 1), round(float(s[ok].mean()), 3)


class WindowSolver:
    """Shared work of one window (excess, transit removal), then any receptor in it.

    Steps [t0, t1) are the window; the usual_h and local_prior_h before t1 serve as look-back.
    """

    def __init__(self, series: AirSeries, t0: int, t1: int, cfg: TransportConfig = TransportConfig()) -> None:
        if not 0 <= t0 < t1 <= series.conc.shape[1]:
            raise ValueError(f"window [{t0}, {t1}) outside the series of {series.conc.shape[1]} steps")
        self.series, self.t0, self.t1, self.cfg = series, t0, t1, cfg
        max_lag = int(np.ceil(cfg.max_lag_h / series.dt_h))
        self.background = _background(series, cfg.background_quantile)
        h0 = max(0, t1 - int(round(cfg.usual_h / series.dt_h)))
        excess = _increments(_excess(series, self.background), h0, t1, cfg.usual_quantile)
        self.signal = _own_signal(series, excess, max(0, t0 - max_lag), t1, cfg) if cfg.transit_removal else excess

    def _local_prior(self, receptor: int, k: int, n: int) -> tuple[Array, Array]:
        """A pseudo-observation pulling the local level towards the receptor's usual excess.

        A plume that stays over the receptor for the whole window is as flat as the local
        term, and the two cannot be told apart from the window alone; the receptor's
        excess over the last local_prior_h (mostly outside any one episode) says what its
        local level usually is (its local_prior_quantile, as plumes only add). Weighted like
        local_prior_weight x n data steps.
        """
        if self.cfg.local_prior_weight <= 0:
            return np.zeros((0, k)), np.zeros(0)
        s = self.series
        a = max(0, self.t1 - int(round(self.cfg.local_prior_h / s.dt_h)))
        with np.errstate(all="ignore"):
            usual = float(np.nanquantile(s.conc[receptor, a:self.t1] - self.background[a:self.t1], self.cfg.local_prior_quantile))
        w = float(np.sqrt(self.cfg.local_prior_weight * n))
        row = np.zeros((1, k))
        row[0, 0] = w
        return row, np.array([w * max(usual, 0.0) if np.isfinite(usual) else 0.0])

    def solve(self, receptor: int) -> TransportResult:
        s, cfg, a, b = self.series, self.cfg, self.t0, self.t1
        station = s.stations[receptor]
        y_all = s.conc[receptor, a:b] - self.background[a:b]
        d = _design(s, receptor, self.signal, y_all, a, b, cfg)
        ok = np.isfinite(y_all)
        y, Z = _smooth(y_all, ok, cfg.smooth_steps), _smooth(d.Z, ok, cfg.smooth_steps)
        n, n_r = y.size, len(d.regions)
        wind = _vector_mean_wind(s, receptor, a, b)
        conc = s.conc[receptor, a:b][ok]
        if n < 3 or conc.mean() <= 0:
            return TransportResult(station.id, station.region, a, b, {"local": 1.0}, {"local": 0.0}, {"local": (1.0, 1.0)},
                                   None, (), 0.0, 0.0, int(n), float(conc.mean()) if n else 0.0, d.uses, *wind)
        A = np.concatenate([np.ones((n, 1)), Z], axis=1)
        prior_A, prior_y = self._local_prior(receptor, A.shape[1], n)
        coef, capped = _fit(np.concatenate([A, prior_A]), np.concatenate([y, prior_y]), 1, cfg.max_coef)
        fitted = A @ coef
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float(((y - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
        rmse = float(np.sqrt(((y - fitted) ** 2).mean()))
        point = coef[1:] * Z.mean(axis=0) / conc.mean()

        idx = _block_indices(_rng_for(cfg.seed, station.id, a), n, int(round(cfg.block_h / s.dt_h)), cfg.n_boot)
        free = ~capped
        n_boot = idx.shape[0]
        fixed = A[:, capped] @ coef[capped]  # capped columns stay at the cap in every replicate
        boot_A = np.concatenate([A[:, free][idx], np.broadcast_to(prior_A[:, free], (n_boot, len(prior_y), int(free.sum())))], axis=1)
        boot_y = np.concatenate([(y - fixed)[idx], np.broadcast_to(prior_y, (n_boot, len(prior_y)))], axis=1)
        boot_coef = np.tile(coef, (n_boot, 1))
        boot_coef[:, free] = nnls_batch(boot_A, boot_y)
        boot_coef[:, 1:] = np.minimum(boot_coef[:, 1:], cfg.max_coef)
        reps = boot_coef[:, 1:] * Z[idx].mean(axis=1) / conc[idx].mean(axis=1, keepdims=True)  # (B, R)
        local_reps = 1.0 - reps.sum(axis=1)

        shares = {r: float(point[i]) for i, r in enumerate(d.regions)}
        shares["local"] = 1.0 - float(point.sum())
        sd = {r: float(reps[:, i].std()) for i, r in enumerate(d.regions)}
        sd["local"] = float(local_reps.std())
        q = np.quantile(np.concatenate([reps, local_reps[:, None]], axis=1), [0.05, 0.95, cfg.lower_quantile], axis=0)  # (3, R + 1)
        interval = {r: (float(q[0, i]), float(q[1, i])) for i, r in enumerate(d.regions)}
        interval["local"] = (float(q[0, -1]), float(q[1, -1]))
        origin = None
        if n_r:
            top = int(np.argmax(point))
            lower = float(q[2, top])
            if point[top] >= cfg.min_origin_share and lower >= cfg.min_lower_share:
                origin = d.regions[top]
        return TransportResult(station.id, station.region, a, b, shares, sd, interval, origin,
                               (station.region,) if origin else (), r2, rmse, int(n), float(conc.mean()), d.uses, *wind,
                               replicates=reps, regions_order=d.regions)


def attribute(series: AirSeries, receptor: str, t0: int, t1: int, cfg: TransportConfig = TransportConfig()) -> TransportResult:
    """One receptor's attribution over steps [t0, t1)."""
    j = next(i for i, s in enumerate(series.stations) if s.id == receptor)
    return WindowSolver(series, t0, t1, cfg).solve(j)


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
