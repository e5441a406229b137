"""The stream's factor model (apportion.factors): PMF uncertainties, factor keys by marker species,
determinism for a seed, and projection of rows with missing species."""

from __future__ import annotations

import numpy as np
import pytest

from apportion import pmf
from apportion.factors import canonical_factors, fit_region, project_rows, uncertainty
from apportion.synthetic import factor_data

SPECIES = ("pm25", "pm10", "so2", "no2", "co", "o3")


def test_uncertainty_is_the_equation_form_and_missing_cells_weigh_nothing() -> None:
    U = uncertainty(np.array([[30.0, np.nan, 10.0, 20.0, 0.5, 40.0]]), SPECIES, 0.1)
    assert U[0, 0] == pytest.approx(np.hypot(3.0, 1.0))  # 10 % of 30, half of PM2.5's 2 ug/m3 detection limit
    assert U[0, 4] == pytest.approx(np.hypot(0.05, 0.025))  # CO in mg/m3 with its own limit
    assert U[0, 1] > 1e8


def test_factors_are_keyed_and_ordered_by_their_marker_species() -> None:
    explained = np.array([[0.1, 0.2, 0.9, 0.1, 0.1, 0.3],   # marks so2
                          [0.8, 0.7, 0.05, 0.5, 0.6, 0.1],  # marks pm25
                          [0.1, 0.1, 0.05, 0.4, 0.3, 0.6]])  # marks o3
    assert canonical_factors(SPECIES, explained) == ([1, 0, 2], ["f_pm25", "f_so2", "f_o3"])
    twice = np.array([[0.3, 0.1], [0.6, 0.2], [0.1, 0.7]])  # two factors mark pm25: the larger part first
    assert canonical_factors(("pm25", "so2"), twice) == ([1, 0, 2], ["f_pm25", "f_pm25_2", "f_so2"])


def test_fit_is_deterministic_for_a_seed_and_its_parts_add_up() -> None:
    d = factor_data(n=150, m=6, k=3, seed=2)
    a = fit_region("north", d.X, SPECIES, 3, (0, 1), seed=11, restarts=2, error_fraction=0.1)
    b = fit_region("north", d.X, SPECIES, 3, (0, 1), seed=11, restarts=2, error_fraction=0.1)
    assert np.array_equal(a.F, b.F) and a.ids == b.ids and len(set(a.ids)) == 3
    assert np.allclose(a.explained.sum(axis=0), 1.0) and a.n_rows == 150
    assert [SPECIES.index(k.split("_")[1]) for k in a.ids] == sorted(SPECIES.index(k.split("_")[1]) for k in a.ids)


def test_a_missing_species_is_left_out_of_the_projection() -> None:
    d = factor_data(n=150, m=6, k=3, seed=3)
    model = fit_region("north", d.X, SPECIES, 3, (0, 1), seed=0, restarts=1, error_fraction=0.1)
    rows = d.X[:4].copy()
    rows[:, 2] = np.nan
    keep = [0, 1, 3, 4, 5]
    direct = pmf.project(rows[:, keep], model.F[:, keep], uncertainty(rows[:, keep], tuple(SPECIES[j] for j in keep), 0.1))
    assert np.allclose(project_rows(model, rows), direct, rtol=1e-6, atol=1e-9)
    assert not np.allclose(project_rows(model, d.X[:4]), direct)  # with SO2 measured, it counts
