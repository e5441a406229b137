"""Water: which region's reach of the river added how much of a pollutant, per window.

Sections (water stations with `river_km`) are ordered downstream. Water passing the
upstream section of a reach at time t - tau reaches the downstream section at t, with
tau = (km_down - km_up) / velocity, so the reach's addition at t is

    load_down(t) - load_up(t - tau)     load = concentration x flow  (mg/L x m3/s = g/s)

averaged over the window's steps (the upstream series is interpolated at t - tau;
steps whose t - tau falls before the data are left out). Without flow the same
difference of concentrations is reported, with `basis` = "concentration" saying so:
it is an increment, not a mass, and it ignores dilution by tributaries. Decay and
settling within a reach are not modelled: a negative addition means the reach removed
(or diluted) more than it received.

Borders: in the demo network the first section of a region is its *border section*,
where the standard of cross-border compensation measures what the upstream region
delivers. So a reach that crosses a border belongs to the upstream region
(cross_border="upstream", the default). With cross_border="split" and the border's
river km, the addition is divided between the two regions by reach length on each
side — an assumption of uniform input along the reach, stated in the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from schemas.network import Network, Station

MODEL_VERSION = "water-reach/1"
Array = NDArray[np.float64]
G_PER_S_TO_KG_PER_DAY = 86.4


@dataclass(frozen=True)
class ReachAddition:
    upstream: str  # station ids
    downstream: str
    regions: dict[str, float]  # region -> fraction of this reach's addition it is responsible for
    travel_h: float
    addition: float  # mean over the window: kg/day (basis "load") or concentration units (basis "concentration")
    n_steps: int


@dataclass(frozen=True)
class WaterResult:
    parameter: str
    t0: int
    t1: int
    basis: Literal["load", "concentration"]
    unit: str
    reaches: tuple[ReachAddition, ...]
    by_region: dict[str, float]  # region -> total addition of its reaches
    inflow: float  # mean at the first section: what entered the monitored river
    model_version: str = MODEL_VERSION


def river_sections(network: Network) -> tuple[Station, ...]:
    """Water stations in downstream order."""
    return tuple(sorted((s for s in network.stations.values() if s.medium == "water" and s.river_km is not None),
                        key=lambda s: (s.river_km, s.id)))


def _responsibility(up: Station, down: Station, cross_border: str, border_km: dict[tuple[str, str], float]) -> dict[str, float]:
    if up.region == down.region or cross_border == "upstream":
        return {up.region: 1.0}
    km = border_km.get((up.region, down.region))
    if km is None:
        raise ValueError(f"cross_border='split' needs border_km[({up.region!r}, {down.region!r})]")
    assert up.river_km is not None and down.river_km is not None
    length = down.river_km - up.river_km
    upstream_part = float(np.clip((km - up.river_km) / length, 0.0, 1.0))
    return {up.region: upstream_part, down.region: 1.0 - upstream_part}


def attribute_reaches(sections: tuple[Station, ...], conc: Array, t0: int, t1: int, dt_h: float, velocity_kmh: float,
                      parameter: str, unit: str, flow: Array | None = None,
                      cross_border: Literal["upstream", "split"] = "upstream",
                      border_km: dict[tuple[str, str], float] | None = None) -> WaterResult:
    """Additions of each reach between consecutive sections over steps [t0, t1).

    conc (and flow, m3/s) are (sections, steps) with sections in downstream order; NaN = missing.
    """
    if velocity_kmh <= 0:
        raise ValueError("velocity_kmh must be > 0")
    if conc.shape[0] != len(sections) or (flow is not None and flow.shape != conc.shape):
        raise ValueError("conc (and flow) must be (sections, steps) in the order of `sections`")
    basis: Literal["load", "concentration"] = "concentration" if flow is None else "load"
    series = conc if flow is None else conc * flow * G_PER_S_TO_KG_PER_DAY  # mg/L * m3/s = g/s -> kg/day
    steps = np.arange(conc.shape[1], dtype=float)
    window = np.arange(t0, t1)
    reaches = []
    by_region: dict[str, float] = {}
    for k in range(len(sections) - 1):
        up, down = sections[k], sections[k + 1]
        assert up.river_km is not None and down.river_km is not None
        travel_h = (down.river_km - up.river_km) / velocity_kmh
        back = window - travel_h / dt_h
        upstream = np.interp(back, steps, series[k], left=np.nan)
        diff = series[k + 1, window] - upstream
        ok = np.isfinite(diff)
        addition = float(diff[ok].mean()) if ok.any() else float("nan")
        share = _responsibility(up, down, cross_border, border_km or {})
        reaches.append(ReachAddition(up.id, down.id, share, round(travel_h, 4), addition, int(ok.sum())))
        if ok.any():
            for region, fraction in share.items():
                by_region[region] = by_region.get(region, 0.0) + fraction * addition
    first = series[0, window]
    inflow = float(np.nanmean(first)) if np.isfinite(first).any() else float("nan")
    return WaterResult(parameter, t0, t1, basis, unit if flow is None else "kg/d", tuple(reaches), by_region, inflow)
