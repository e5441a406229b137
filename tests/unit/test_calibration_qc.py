"""QC flags: each test with a case that must trip and one that must not, thresholds
worked by hand; windows and runs never reach across series."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.qc import (
    EXCLUDING,
    QC_LIMITS,
    QcFlag,
    QcLimits,
    excluded,
    flag_names,
    flatline_flags,
    qc_flags,
    range_flags,
    rate_flags,
    spike_flags,
    status_flags,
)

MIN = 60_000


def test_range_per_parameter() -> None:
    lim = QC_LIMITS["pm25"]
    assert range_flags([-0.1, 0.0, 1000.0, 1000.1], lim.low, lim.high).tolist() == [True, False, False, True]
    # SO2 upper limit: 500 ppb at 298.15 K / 1 atm = 500 * 64.058 / (0.082057366 * 298.15) = 1309.2 ug/m3
    so2 = QC_LIMITS["so2"]
    assert so2.high == pytest.approx(500 * 64.058 / (0.082057366 * 298.15), abs=0.05)
    assert range_flags([1309.0, 1310.0], so2.low, so2.high).tolist() == [False, True]


def alternating(n: int = 40) -> np.ndarray:
    # 20, 21, 20, 21, ...: a 30-wide window ending at a new value x holds 14 x 20, 15 x 21 and x
    return np.where(np.arange(n) % 2 == 0, 20.0, 21.0)


def test_spike_threshold_from_median_and_iqr() -> None:
    # x above: median 21, quartiles 20 and 21 (positions 7.25 and 21.75 of 0..29), IQR 1;
    # scale = max(1 / 1.349, 2.0) = 2.0 -> a spike is |x - 21| > 12
    for x, trips in ((33.5, True), (33.0, False)):
        assert spike_flags(np.append(alternating(), x), 30, 6.0, 2.0)[-1] == trips, x
    # x below: median (20 + 21) / 2 = 20.5 -> a spike is |x - 20.5| > 12
    for x, trips in ((8.0, True), (9.0, False)):
        assert spike_flags(np.append(alternating(), x), 30, 6.0, 2.0)[-1] == trips, x
    # with a small floor the IQR rules: 6 * 1 / 1.349 = 4.448
    assert spike_flags(np.append(alternating(), 25.5), 30, 6.0, 0.1)[-1]
    assert not spike_flags(np.append(alternating(), 25.4), 30, 6.0, 0.1)[-1]
    # the baseline itself never trips, and readings without a full window are not judged
    assert not spike_flags(alternating(), 30, 6.0, 2.0).any()
    assert not spike_flags(np.array([20.0] * 5 + [500.0]), 30, 6.0, 2.0).any()
    assert spike_flags(np.array([20.0] * 29 + [500.0]), 30, 6.0, 2.0)[-1]  # 29 before it: a full window


def test_a_level_shift_is_a_spike_for_its_first_reading_only() -> None:
    # a plume arriving and staying: far from the window's median for half a window, but only
    # the first reading is also far from its predecessor
    step = np.append(alternating(), np.full(20, 80.0))
    assert np.flatnonzero(spike_flags(step, 30, 6.0, 2.0)).tolist() == [40]
    # an isolated wrong value is far from both
    blip = np.append(alternating(), [80.0, 21.0, 20.0])
    assert np.flatnonzero(spike_flags(blip, 30, 6.0, 2.0)).tolist() == [40]


def test_spike_window_stays_in_its_series_and_skips_nan() -> None:
    v = np.append(alternating(), 100.0)
    series = np.array(["a"] * 40 + ["b"])
    assert spike_flags(v, 30, 6.0, 2.0)[-1]
    assert not spike_flags(v, 30, 6.0, 2.0, series=series)[-1]  # b has no history
    with_nan = np.append(alternating(), 100.0)
    with_nan[35] = np.nan
    assert not spike_flags(with_nan, 30, 6.0, 2.0)[-1]


def test_spike_in_chunks_equals_one_pass() -> None:
    v = np.random.default_rng(5).normal(30, 3, 5000)
    v[::97] += 60
    one = spike_flags(v, 30, 6.0, 2.0)
    assert one.sum() > 40
    assert np.array_equal(spike_flags(v, 30, 6.0, 2.0, chunk=333), one)


def test_flatline_after_n_equal_values() -> None:
    v = [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0]
    # n = 5: the fifth 3.0 in a row (index 6) trips, the fourth (index 5) does not
    assert flatline_flags(v, 5).tolist() == [False] * 6 + [True, False]
    # a series boundary inside the run breaks it
    assert not flatline_flags(v, 5, series=[0, 0, 0, 0, 1, 1, 1, 1]).any()
    assert not flatline_flags(v, 0).any()  # disabled
    # tolerance: values within 0.01 count as equal
    assert flatline_flags([5.0, 5.004, 5.008, 5.0], 4, tol=0.01).tolist() == [False, False, False, True]


def test_rate_of_change_per_minute() -> None:
    t = np.array([0, 1, 2, 4, 6, 6]) * MIN
    v = np.array([0.0, 10.0, 21.0, 41.0, 62.0, 500.0])
    # 10/min ok; 11/min trips; 20 in 2 min = 10/min ok; 21 in 2 min = 10.5/min trips; dt 0 not judged
    assert rate_flags(v, t, 10.0).tolist() == [False, False, True, False, True, False]
    assert not rate_flags(v, t, 10.0, series=[0, 0, 1, 1, 2, 2])[2]  # 21 starts a new series
    assert not rate_flags(v, t, float("inf")).any()


def test_status_only_n_and_s_are_valid() -> None:
    assert status_flags(list("NFMSDCTB")).tolist() == [False, True, True, False, True, True, True, True]


def test_exclusion_and_names() -> None:
    assert not excluded([0, int(QcFlag.RATE)]).any()
    for flag in (QcFlag.RANGE, QcFlag.SPIKE, QcFlag.FLATLINE, QcFlag.STATUS, QcFlag.CALIBRATION_MISSING):
        assert excluded([int(flag), int(flag | QcFlag.RATE)]).all(), flag
    assert excluded([int(QcFlag.RATE)], exclude=QcFlag.RATE).all()
    assert flag_names(int(QcFlag.RANGE | QcFlag.STATUS)) == ["RANGE", "STATUS"]
    assert int(EXCLUDING) == 1 | 2 | 4 | 16 | 32


def test_qc_flags_combine_every_test() -> None:
    lim = QcLimits(0.0, 100.0, 15.0, 4, spike_window=30, spike_z=6.0, spike_min_scale=2.0)
    v = np.append(alternating(), [99.0, 101.0, 21.0, 21.0, 21.0, 21.0])
    n = v.size
    status = np.array(["N"] * n)
    status[-1] = "M"
    missing = np.zeros(n, dtype=bool)
    missing[0] = True
    flags = qc_flags("pm25", v, np.arange(n) * MIN, status, missing, limits=lim)
    names = [flag_names(int(f)) for f in flags]
    assert names[0] == ["CALIBRATION_MISSING"]
    assert names[40] == ["SPIKE", "RATE"]  # 99: 78.5 > 12 off the median, 78/min > 15
    assert names[41] == ["RANGE"]  # 101 > 100; +2/min is no rate problem, and 2 from its predecessor is no spike
    assert names[42] == ["RATE"]  # back to 21: -80/min, but no spike (window median 21 with 99 and 101 in it)
    assert names[45] == ["FLATLINE", "STATUS"]  # fourth 21 in a row; device in maintenance
    assert all(not x for x in names[1:40])


def test_default_limits_of_a_parameter_apply() -> None:
    # pm25: 30 equal values in a row is a flat line (the 30th trips, the 29th does not)
    v = np.full(31, 5.0)
    v[0] = 4.0
    flags = qc_flags("pm25", v, np.arange(31) * MIN)
    assert [bool(f & QcFlag.FLATLINE) for f in flags[29:]] == [False, True]
    # wind direction: no rate or flat-line test (circular, steady wind is real)
    wd = np.array([350.0, 10.0, 10.0] + [10.0] * 300)
    assert not qc_flags("wind_dir", wd, np.arange(wd.size) * MIN).any()
