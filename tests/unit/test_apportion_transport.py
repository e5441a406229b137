"""Transport attribution: exact NNLS, a hand-built upwind case, simulated episodes with known truth, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import nnls

from apportion.nnls import nnls_batch, nnls_gram
from apportion.records import transport_record
from apportion.synthetic import air_network
from apportion.transport import (AirSeries, TransportConfig, WindowSolver, _best_lag, _correlation, _moments, _select, _upwind, attribute,
                                 combine_region)
from schemas.models import validation_errors
from schemas.network import load_network, parse_network

NETWORK = Path(__file__).resolve().parents[2] / "config" / "network.yaml"


def test_batched_nnls_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    A = rng.normal(size=(50, 20, 4))
    b = rng.normal(size=(50, 20))
    got = nnls_batch(A, b)
    want = np.stack([nnls(A[i], b[i])[0] for i in range(50)])
    assert np.allclose(got, want, atol=1e-8)
    assert (got == 0).any()  # some constraints are active, so the enumeration was exercised


def _two_region_case(plume_on: bool) -> tuple[AirSeries, float]:
    """Receptor `rr` in `down`; `uu` in `up` 36 km due north; northerly 5 m/s wind: lag 2 h.

    rr = background + local + 0.5 x uu's plume 2 h earlier. Four quiet stations east and west
    (never upwind) carry the background only. Returns the series and the true `up` share.
    """
    doc = {"version": 1, "regions": [{"id": "up", "timezone": "UTC"}, {"id": "down", "timezone": "UTC"}], "stations": [
        {"id": "rr", "region": "down", "medium": "air", "lat": 49.0, "lon": 17.0, "parameters": ["pm25"]},
        {"id": "uu", "region": "up", "medium": "air", "lat": 49.0 + 36.0 / 111.195, "lon": 17.0, "parameters": ["pm25"]},
        *({"id": f"q{k}", "region": "up" if k % 2 else "down", "medium": "air", "lat": 49.0 + 0.05 * k, "lon": 17.0 + (0.8 if k < 2 else -0.8),
           "parameters": ["pm25"]} for k in range(4)),
    ]}
    net = parse_network(doc, "t.yaml")  # type: ignore[arg-type]
    stations = tuple(net.stations.values())
    n = 72
    rng = np.random.default_rng(11)
    t = np.arange(n)
    bg = 10.0 + 2.0 * np.sin(2 * np.pi * t / 30.0)
    plume = np.zeros(n)
    if plume_on:
        plume = 40.0 * np.exp(-0.5 * ((t - 40) / 4.0) ** 2) + 25.0 * np.exp(-0.5 * ((t - 52) / 3.0) ** 2)
    local = 5.0 + rng.normal(0.0, 1.0, n)
    transported = np.concatenate([np.zeros(2), 0.5 * plume[:-2]])
    conc = np.empty((len(stations), n))
    conc[0] = bg + local + transported
    conc[1] = bg + 3.0 + plume + rng.normal(0.0, 0.5, n)
    conc[2:] = bg + 3.0 + rng.normal(0.0, 0.5, (4, n))
    wind_dir = np.zeros((len(stations), n))
    wind_speed = np.full((len(stations), n), 5.0)
    series = AirSeries(stations, conc, wind_speed, wind_dir, 1.0)
    t0, t1 = 30, 60
    return series, float(transported[t0:t1].mean() / conc[0, t0:t1].mean())


def test_known_share_and_lag_are_recovered_in_a_hand_built_case() -> None:
    series, true_share = _two_region_case(plume_on=True)
    res = attribute(series, "rr", 30, 60)
    assert true_share > 0.3  # the case is a real episode
    assert abs(res.shares["up"] - true_share) <= 0.10
    assert res.origin_region == "up" and res.affected_regions == ("down",)
    used = {u.station_id: u for u in res.stations_used}
    assert set(used) == {"uu"}  # the quiet stations are never upwind of a northerly wind
    assert used["uu"].lag_h == 2.0 and used["uu"].wind_sector == "N"
    assert sum(res.shares.values()) == pytest.approx(1.0)
    lo, hi = res.share_interval["up"]
    assert lo <= res.shares["up"] <= hi and res.share_sd["up"] > 0
    assert res.r2 > 0.8


def test_no_external_origin_in_a_clean_case() -> None:
    series, true_share = _two_region_case(plume_on=False)
    assert true_share == 0.0
    res = attribute(series, "rr", 30, 60)
    assert res.origin_region is None and res.affected_regions == ()
    assert res.shares.get("up", 0.0) < 0.10


def test_simulated_episodes_recover_true_shares_and_origins() -> None:
    """Rates, as the issue states its targets, on a seed not used for tuning: in strong episode
    windows (true top share >= 0.3) the origin is right in >= 90 % and the median share error is
    within 10 pp; clean windows (< 1 % external) get an external origin in <= 5 %."""
    scenario = air_network(load_network(NETWORK), n_hours=24 * 12, seed=5, episodes_per_region=2)
    series = scenario.series
    origin_ok: list[bool] = []
    errors: list[float] = []
    clean_false: list[bool] = []
    for t0 in range(24, series.conc.shape[1] - 24, 6):
        solver = WindowSolver(series, t0, t0 + 24)
        for j in range(len(scenario.stations)):
            truth = scenario.external_truth(j, t0, t0 + 24)
            top = max(truth, key=lambda r: truth[r])
            if truth[top] >= 0.3:
                res = solver.solve(j)
                origin_ok.append(res.origin_region == top)
                errors += [abs(res.shares.get(r, 0.0) - share) for r, share in truth.items()]
            elif sum(truth.values()) < 0.01:
                clean_false.append(solver.solve(j).origin_region is not None)
    assert len(origin_ok) >= 10 and len(clean_false) >= 300  # the scenario really holds both kinds of window
    assert np.mean(origin_ok) >= 0.9
    assert np.median(errors) <= 0.10
    assert np.mean(clean_false) <= 0.05


def test_same_seed_same_result_and_records_validate() -> None:
    scenario = air_network(load_network(NETWORK), n_hours=24 * 6, seed=2, episodes_per_region=1)
    a = WindowSolver(scenario.series, 36, 60).solve(12)
    b = WindowSolver(scenario.series, 36, 60).solve(12)
    assert a.shares == b.shares and a.share_interval == b.share_interval
    assert np.array_equal(a.replicates, b.replicates)
    c = WindowSolver(scenario.series, 36, 60, TransportConfig(seed=1)).solve(12)
    assert c.shares == a.shares  # the point estimate does not depend on the seed ...
    assert not np.array_equal(c.replicates, a.replicates)  # ... the bootstrap does
    rec = transport_record(a, "pm25", 1_700_000_000_000, 3_600_000, seed=0)
    assert validation_errors("apportionment", rec) == []
    solver = WindowSolver(scenario.series, 36, 60)
    region = combine_region([solver.solve(j) for j, s in enumerate(scenario.stations) if s.region == "central"])
    assert region.receptor == "central" and sum(region.shares.values()) == pytest.approx(1.0)
    assert validation_errors("apportionment", transport_record(region, "pm25", 0, 3_600_000, seed=0, scope="region")) == []


def test_nnls_with_row_weights_equals_repeated_rows_and_respects_allowed_columns() -> None:
    rng = np.random.default_rng(8)
    A = rng.normal(size=(40, 12, 4))
    b = rng.normal(size=(40, 12))
    counts = rng.integers(0, 3, size=(40, 12)).astype(float)  # a bootstrap replicate's draws of each row
    allowed = rng.random((40, 4)) < 0.75
    aw = A * counts[:, :, None]
    got = nnls_gram(np.matmul(aw.transpose(0, 2, 1), A), np.matmul(aw.transpose(0, 2, 1), b[:, :, None])[:, :, 0], allowed)
    for i in range(40):
        rows = np.repeat(np.arange(12), counts[i].astype(int))
        cols = np.flatnonzero(allowed[i])
        want = np.zeros(4)
        if cols.size:
            want[cols] = nnls(A[i][rows][:, cols], b[i][rows])[0]
        assert np.allclose(got[i], want, atol=1e-8)
    assert (got[~allowed] == 0).all()


def test_weighted_lag_search_matches_correlations_of_the_resampled_series() -> None:
    """The choice's correlations come from weighted sums: they must equal np.corrcoef of the series with
    every step repeated as often as the weights say, and the best lag must be the allowed one with the
    largest of them."""
    rng = np.random.default_rng(4)
    n_s, n_l, n_t = 3, 5, 20
    lagged = rng.gamma(1.0, 3.0, size=(n_s, n_l, n_t))
    gate = rng.random((2, n_s, n_t)) < 0.8
    y = rng.normal(10.0, 3.0, size=(2, n_t))
    allowed = np.ones((2, n_s, n_l), dtype=bool)
    allowed[:, 0, 3:] = False  # candidate 0 may only have lags 0-2
    sx, sxx, sxy = _moments(lagged, gate, y)
    lag, corr, _ = _best_lag(sx, sxx, sxy, np.full(2, float(n_t)), y.sum(axis=1), (y * y).sum(axis=1), allowed.transpose(0, 2, 1))
    for j in range(2):
        for s in range(n_s):
            direct = [np.corrcoef(gate[j, s] * lagged[s, k], y[j])[0, 1] if allowed[j, s, k] else -np.inf for k in range(n_l)]
            assert lag[j, s] == int(np.argmax(direct)) and corr[j, s] == pytest.approx(max(direct), abs=1e-9)
    counts = rng.integers(0, 3, size=(6, n_t)).astype(float)
    x = gate[0, 1] * lagged[1, 2]
    m = counts @ np.stack([x, x * x, x * y[0]]).T  # (6, 3)
    got, _ = _correlation(m[:, :1], m[:, 1:2], m[:, 2:], counts.sum(axis=1), counts @ y[0], counts @ (y[0] * y[0]))
    for q in range(6):
        rows = np.repeat(np.arange(n_t), counts[q].astype(int))
        assert got[q, 0] == pytest.approx(np.corrcoef(x[rows], y[0][rows])[0, 1], abs=1e-9)


def test_station_choice_ranks_by_covariance_within_each_region() -> None:
    corr = np.array([[0.9, 0.5, 0.15, 0.6, -np.inf]])
    vx = np.array([[1.0, 16.0, 100.0, 4.0, 1.0]])
    region = np.array([0, 0, 0, 1, 1])
    chosen = _select(corr, vx, region, 2, TransportConfig(stations_per_region=2, min_corr=0.2))
    # region 0: covariance keys 0.9, 2.0 and (0.15 < min_corr) none -> 1 then 0; region 1: only 3
    assert chosen.tolist() == [[[1, 0], [3, -1]]]


def test_crosswind_reach_drops_stations_whose_air_passes_beside_the_receptor() -> None:
    bearing = np.array([[0.0, 20.0, 20.0]])  # all within a 60 degree sector of a northerly wind
    distance = np.array([[36.0, 120.0, 50.0]])  # 120 km at 20 degrees passes 41 km to the side; 50 km passes 17 km
    wind = np.array([[0.0, np.nan]])
    gate = _upwind(bearing, distance, wind, 60.0, 25.0)
    assert gate[0, :, 0].tolist() == [True, False, True]
    assert not gate[0, :, 1].any()  # calm or missing wind is never upwind
    assert _upwind(bearing, distance, wind, 60.0, np.inf)[0, :, 0].all()
    # the sector: a source due north (bearing 0) is upwind of a northerly wind, not of a southerly one or one 50 degrees off
    sector = _upwind(np.array([[0.0]]), np.array([[10.0]]), np.array([[10.0, 180.0, 50.0]]), 45.0, np.inf)
    assert sector[0, 0].tolist() == [True, False, False]


def test_receptor_result_does_not_depend_on_the_receptors_solved_with_it() -> None:
    scenario = air_network(load_network(NETWORK), n_hours=24 * 6, seed=2, episodes_per_region=1)
    solver = WindowSolver(scenario.series, 36, 60)
    together = solver.solve(12)  # solves every receptor of its region in one pass
    alone = WindowSolver(scenario.series, 36, 60)._solve_group(np.array([12]))[0]
    assert together.stations_used == alone.stations_used and together.origin_region == alone.origin_region
    for region, share in together.shares.items():
        assert alone.shares[region] == pytest.approx(share, abs=1e-9)
        assert np.allclose(alone.share_interval[region], together.share_interval[region], atol=1e-9)
    assert np.allclose(alone.replicates, together.replicates, atol=1e-9)
