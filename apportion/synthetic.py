"""Simulated data with known truth, for the tests, the validation report and the benchmark.

(a) `air_network`: an air network (the demo geometry, or any Network) under a wind field
    that changes regime every day or so. Each region has an emission source whose
    Gaussian plume advects to downwind stations with the along-wind lag; on top come
    each station's own local emissions, a regional background and measurement noise.
    Sources emit only during episodes, so between them the air is clean of transport.
    The truth is each source region's contribution at every station and step.
(b) `factor_data`: multi-species X = G F + noise with known profiles F, contributions G
    and the uncertainty matrix U the noise was drawn from.
(c) `demo_episode`: the project simulator's own scenario (simulator/scenario.py: a plume
    from the works in `north` under a northerly wind) as window means, with the plume's
    true contribution at every station.

(a) and (b) draw everything from `numpy.random.default_rng(seed)`: same seed, same data;
(c) is the simulator's, seeded by its ScenarioConfig.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from apportion.geometry import air_stations, bearing_deg
from apportion.transport import AirSeries
from schemas.network import Network, Region, Station
from simulator.scenario import ScenarioConfig, simulate

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Episode:
    region: str  # whose source emits
    start_h: float
    end_h: float


@dataclass(frozen=True)
class AirScenario:
    stations: tuple[Station, ...]  # air stations; axis 0 of every array
    dt_h: float
    conc: Array  # (N, T) measured concentration, ug/m3
    wind_speed: Array  # (N, T) m/s
    wind_dir: Array  # (N, T) degrees the wind comes FROM
    truth: dict[str, Array]  # region -> (N, T) contribution of that region's source at each station
    sources: dict[str, tuple[float, float]]  # region -> (lat, lon) of its source
    episodes: tuple[Episode, ...]

    @property
    def series(self) -> AirSeries:
        return AirSeries(self.stations, self.conc, self.wind_speed, self.wind_dir, self.dt_h)

    def external_truth(self, station: int, t0: int, t1: int) -> dict[str, float]:
        """True share of each other region in a station's window mean concentration."""
        total = float(self.conc[station, t0:t1].mean())
        own = self.stations[station].region
        return {r: float(c[station, t0:t1].mean()) / total for r, c in self.truth.items() if r != own}


def _smooth(rng: np.random.Generator, n: int, scale: float) -> Array:
    """Unit-variance noise correlated over ~scale steps (random knots, linear interpolation)."""
    knots = rng.standard_normal(int(n / scale) + 3)
    return np.interp(np.arange(n) / scale, np.arange(knots.size), knots)


def _wind_field(rng: np.random.Generator, n: int, dt_h: float, regime_h: tuple[float, float]) -> tuple[Array, Array]:
    """(direction, speed) per step: regimes of random direction and speed with smooth wobble."""
    direction, speed = np.empty(n), np.empty(n)
    t = 0
    while t < n:
        length = max(1, int(rng.uniform(*regime_h) / dt_h))
        direction[t:t + length] = rng.uniform(0.0, 360.0)
        speed[t:t + length] = rng.uniform(2.5, 7.0)
        t += length
    wobble = 8.0 * _smooth(rng, n, 3.0 / dt_h)
    return (direction + wobble) % 360.0, speed * np.exp(0.08 * _smooth(rng, n, 4.0 / dt_h))


def _plume(src: tuple[float, float], lat: Array, lon: Array, wind_dir: Array, wind_speed: Array,
           emission: Array, dt_h: float) -> Array:
    """(N, T) ground-level plume per source: Gaussian crosswind, diluting downwind, advected with lag x / u."""
    lat0, lon0 = src
    east = ((lon - lon0) * 111.32 * np.cos(np.radians(lat0)))[:, None]
    north = ((lat - lat0) * 110.57)[:, None]
    to = np.radians(wind_dir + 180.0)  # where the wind blows to
    x = east * np.sin(to) + north * np.cos(to)  # downwind km
    y = east * np.cos(to) - north * np.sin(to)  # crosswind km
    xp = np.maximum(x, 0.0)
    sigma_y = 1.5 + 0.18 * xp
    shape = (5.0 / (xp + 5.0)) * np.exp(-0.5 * (y / sigma_y) ** 2) * (x > 0)
    lag_steps = xp / (wind_speed * 3.6) / dt_h
    steps = np.arange(emission.size)
    emitted = np.interp(steps[None, :] - lag_steps, steps, emission, left=0.0)
    return shape * emitted


def air_network(network: Network, n_hours: int = 24 * 20, seed: int = 0, dt_h: float = 1.0,
                episodes_per_region: int = 3, episode_h: tuple[float, float] = (10.0, 30.0),
                regime_h: tuple[float, float] = (18.0, 48.0), strength: float = 120.0) -> AirScenario:
    """Simulate the network's air stations for n_hours; see the module docstring.

    Sources sit near each region's station centroid (jittered a few km). Episodes of
    different regions never overlap, and at least a day of clean air is left between
    them, so the truth has clear origin periods and clear clean periods.
    """
    rng = np.random.default_rng(seed)
    stations = air_stations(network)
    n = int(round(n_hours / dt_h))
    lat = np.array([s.lat for s in stations])
    lon = np.array([s.lon for s in stations])
    regions: list[Region] = list(network.regions.values())
    sources = {}
    for r in regions:
        members = [i for i, s in enumerate(stations) if s.region == r.id]
        sources[r.id] = (float(lat[members].mean() + rng.normal(0, 0.03)), float(lon[members].mean() + rng.normal(0, 0.04)))

    # Episodes: a shuffled sequence of regions, each a block separated by clean gaps.
    order = [r.id for r in regions for _ in range(episodes_per_region)]
    rng.shuffle(order)
    slot = n_hours / max(1, len(order))
    if slot - 24.0 < episode_h[0]:
        raise ValueError(f"{n_hours} h cannot hold {len(order)} episodes of >= {episode_h[0]} h with a clean day between them")
    episodes = []
    for k, region in enumerate(order):
        length = min(rng.uniform(*episode_h), slot - 24.0)
        start = k * slot + rng.uniform(6.0, max(6.0, slot - length - 18.0))
        episodes.append(Episode(region, float(start), float(start + length)))

    direction, speed = _wind_field(rng, n, dt_h, regime_h)
    t_h = np.arange(n) * dt_h
    # During an episode (and while its plume crosses the network) the wind carries it
    # towards another region: the cross-region episodes this model exists for.
    centroids = {r.id: (float(lat[[s.region == r.id for s in stations]].mean()), float(lon[[s.region == r.id for s in stations]].mean())) for r in regions}
    for e in episodes:
        target = rng.choice([r.id for r in regions if r.id != e.region])
        towards = float(bearing_deg(*sources[e.region], *centroids[target]))
        during = (t_h >= e.start_h - 2.0) & (t_h < e.end_h + 12.0)
        direction[during] = (towards + 180.0 + rng.normal(0.0, 8.0) + 6.0 * _smooth(rng, int(during.sum()), 3.0 / dt_h)) % 360.0
    # Stations see the same synoptic wind with small local differences.
    wind_dir = (direction[None, :] + rng.normal(0, 5.0, (len(stations), n))) % 360.0
    wind_speed = np.maximum(speed[None, :] * np.exp(rng.normal(0, 0.05, (len(stations), n))), 0.3)

    truth = {}
    for r in regions:
        emission = np.zeros(n)
        for e in episodes:
            if e.region == r.id:
                ramp = np.clip(np.minimum(t_h - e.start_h, e.end_h - t_h) / 2.0, 0.0, 1.0)
                emission += ramp * np.exp(0.35 * _smooth(rng, n, 3.0 / dt_h))
        truth[r.id] = strength * _plume(sources[r.id], lat, lon, direction, speed, emission, dt_h)

    background = 12.0 * np.exp(0.25 * _smooth(rng, n, 24.0 / dt_h))[None, :]
    diurnal = 1.0 + 0.3 * np.sin(2 * np.pi * (t_h - 8.0) / 24.0)
    local = np.stack([np.exp(0.4 * _smooth(rng, n, 2.0 / dt_h)) for _ in stations]) * rng.uniform(3.0, 8.0, (len(stations), 1)) * diurnal
    true_total = background + local + sum(truth.values())
    conc = np.maximum(true_total * (1 + 0.05 * rng.standard_normal(true_total.shape)) + rng.normal(0, 0.5, true_total.shape), 0.0)
    return AirScenario(stations, dt_h, conc, wind_speed, wind_dir, truth, sources, tuple(episodes))


@dataclass(frozen=True)
class FactorData:
    X: Array  # (n, m) measured
    U: Array  # (n, m) uncertainty (standard deviation the noise was drawn with)
    G: Array  # (n, k) true contributions
    F: Array  # (k, m) true profiles, rows sum to 1


def factor_data(n: int = 720, m: int = 20, k: int = 4, seed: int = 0, rel_noise: float = 0.1,
                outliers: float = 0.0) -> FactorData:
    """X = G F + noise with U = rel_noise * GF + a detection-limit floor (PMF-style uncertainties).

    Profiles are sparse-ish (each species mostly from one or two sources, as marker
    species are); contributions are lognormal with day-scale persistence. `outliers`
    is the fraction of cells multiplied by 5-10 (spikes the robust mode must resist).
    """
    rng = np.random.default_rng(seed)
    F = rng.gamma(0.4, 1.0, (k, m)) + 0.01
    for f in range(k):  # each factor owns a few marker species
        F[f, rng.choice(m, size=max(1, m // (2 * k)), replace=False)] += rng.uniform(1.0, 3.0)
    F /= F.sum(axis=1, keepdims=True)
    G = np.stack([np.exp(0.8 * _smooth(rng, n, 12.0)) * rng.uniform(5.0, 20.0) for _ in range(k)], axis=1)
    true = G @ F
    floor = 0.02 * true.mean(axis=0, keepdims=True)
    U = rel_noise * true + floor
    X = np.maximum(true + U * rng.standard_normal(true.shape), 0.0)
    if outliers > 0:
        mask = rng.random(X.shape) < outliers
        X = np.where(mask, X * rng.uniform(5.0, 10.0, X.shape), X)
    return FactorData(X, U, G, F)


def demo_episode(network: Network, minutes: int = 12 * 60, agg_min: int = 10,
                 config: ScenarioConfig = ScenarioConfig()) -> tuple[AirSeries, Array]:
    """PM2.5 and wind of the simulator's scenario as agg_min means, and the plume's (N, T) PM2.5.

    The demo plume lasts 3 h, so hourly means would leave a handful of points: 10-minute
    means are the default. Wind direction is averaged as a unit vector.
    """
    stations = air_stations(network)
    block = simulate(network, config, 0, minutes)
    n = minutes // agg_min

    def means(param: str, kind: str = "measured") -> Array:
        return np.stack([block.series(s.id, param, kind)[: n * agg_min] for s in stations]).reshape(len(stations), n, agg_min).mean(axis=2)

    rad = np.radians(np.stack([block.series(s.id, "wind_dir")[: n * agg_min] for s in stations]).reshape(len(stations), n, agg_min))
    wind_dir = np.degrees(np.arctan2(np.sin(rad).mean(axis=2), np.cos(rad).mean(axis=2))) % 360.0
    return AirSeries(stations, means("pm25"), means("wind_speed"), wind_dir, dt_h=agg_min / 60), means("pm25", "plume")
