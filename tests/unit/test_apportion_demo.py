"""The demo's own cross-region episode (simulator/scenario.py: a plume from the works in `north`
under a northerly wind) is attributed to `north` as the origin, with `central` affected."""

from __future__ import annotations

from pathlib import Path

from apportion.synthetic import demo_episode
from apportion.transport import WindowSolver, combine_region
from schemas.network import load_network

NETWORK = Path(__file__).resolve().parents[2] / "config" / "network.yaml"


def test_demo_plume_is_attributed_to_north_and_not_its_tail() -> None:
    series, plume = demo_episode(load_network(NETWORK))  # 10-minute means; the truth is the simulator's plume
    central = [j for j, s in enumerate(series.stations) if s.region == "central"]
    south = [j for j, s in enumerate(series.stations) if s.region == "south"]

    episode = WindowSolver(series, 0, 36)  # the first 6 h: the 3 h plume and its transport
    region = combine_region([episode.solve(j) for j in central])
    true_share = plume[central, 0:36].sum() / series.conc[central, 0:36].sum()
    assert true_share > 0.2  # the episode really reaches central
    assert region.origin_region == "north" and region.affected_regions == ("central",)
    assert abs(region.shares["north"] - true_share) <= 0.10
    assert combine_region([episode.solve(j) for j in south]).origin_region is None  # the plume never reaches south

    after = WindowSolver(series, 36, 72)  # hours 6-12: only the plume's tail is left
    assert plume[central, 36:72].sum() / series.conc[central, 36:72].sum() < 0.05  # clean, as the report defines it
    assert combine_region([after.solve(j) for j in central]).origin_region is None
