"""Measured parameters: canonical name, medium, unit and physically possible range.

The range is what a working instrument can report at all (not a limit value of a
standard); a reading outside it is impossible and is dead-lettered by the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Medium = Literal["air", "water"]


@dataclass(frozen=True)
class Parameter:
    name: str
    medium: Medium
    unit: str
    low: float
    high: float
    description: str


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        # air, concentrations as mass per volume (µg/m³ except CO in mg/m³), as HJ 633 tabulates them
        Parameter("pm25", "air", "ug/m3", 0.0, 2000.0, "PM2.5 mass concentration"),
        Parameter("pm10", "air", "ug/m3", 0.0, 5000.0, "PM10 mass concentration"),
        Parameter("no2", "air", "ug/m3", 0.0, 4000.0, "nitrogen dioxide"),
        Parameter("so2", "air", "ug/m3", 0.0, 10000.0, "sulphur dioxide"),
        Parameter("o3", "air", "ug/m3", 0.0, 2000.0, "ozone"),
        Parameter("co", "air", "mg/m3", 0.0, 200.0, "carbon monoxide"),
        Parameter("wind_speed", "air", "m/s", 0.0, 75.0, "wind speed"),
        Parameter("wind_dir", "air", "deg", 0.0, 360.0, "wind direction, degrees the wind blows FROM"),
        Parameter("temp", "air", "degC", -60.0, 60.0, "air temperature"),
        Parameter("rh", "air", "%", 0.0, 100.0, "relative humidity"),
        # surface water (GB 3838-2002 basic items, mg/L except pH and temperature)
        Parameter("ph", "water", "1", 0.0, 14.0, "pH"),
        Parameter("do", "water", "mg/L", 0.0, 25.0, "dissolved oxygen"),
        Parameter("codmn", "water", "mg/L", 0.0, 200.0, "permanganate index"),
        Parameter("nh3n", "water", "mg/L", 0.0, 100.0, "ammonia nitrogen"),
        Parameter("tp", "water", "mg/L", 0.0, 50.0, "total phosphorus"),
        Parameter("water_temp", "water", "degC", -5.0, 45.0, "water temperature"),
    )
}
