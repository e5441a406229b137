"""Between the streams and the state machine: indices in, observations out;
transitions in, alert records out. Pure, so the stage, replay and tests agree.

Which index feeds which state-machine key:
- aqi_realtime (rolling 1-h means, every minute)  -> air / aqi
- aqi_hourly, aqi_daily (clock hour, local day)     -> air / aqi_hourly, aqi_daily (for rules that name them)
- water_class (per clock hour)                     -> water / class
- water_class_realtime (rolling 1-h means)         -> water / <parameter> (acute jumps)
- every real-time index                            -> health / no-data (valid data this minute)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from alerts.tiers.model import CLASS_INDICATOR, HEALTH_INDICATOR, Observation, Transition, plain
from schemas.models import Alert, Index

# index kind -> the air indicator a tier rule names (`indicator:` in config/tier_rules.yaml)
AIR_INDICATORS = {"aqi_realtime": "aqi", "aqi_hourly": "aqi_hourly", "aqi_daily": "aqi_daily"}
REALTIME_INDICES = ("aqi_realtime", "water_class_realtime")


def observations(index: Index) -> list[Observation]:
    """The state-machine observations one index record stands for (possibly none)."""
    kind = index["index"]
    common = {"subject": index["station_id"], "region": index["region"], "window_start": index["window_start"], "window_end": index["window_end"]}
    out: list[Observation] = []
    if kind in AIR_INDICATORS:
        out.append(Observation(kind="air", indicator=AIR_INDICATORS[kind], value=_value(index), completeness=_completeness(index),
                               standard=index["standard_id"], inputs=_provenance(index), **common))
    elif kind == "water_class":
        out.append(Observation(kind="water", indicator=CLASS_INDICATOR, value=_value(index), completeness=_completeness(index),
                               standard=index["standard_id"], inputs=_provenance(index), **common))
    elif kind == "water_class_realtime":
        for item in index["inputs"]:
            out.append(Observation(kind="water", indicator=item["parameter"], value=float(item["mean"]) if item["valid"] else None,
                                   completeness=min(1.0, float(item["completeness"])), standard="",
                                   inputs={"index_id": index["index_id"], "index": kind, "input": dict(item)}, **common))
    if kind in REALTIME_INDICES:
        # The job emits a real-time index only for a minute in which the station had valid readings,
        # so the record itself says "valid data at this minute" (its value may still be insufficient
        # for an index: the first 45 minutes of a station are). A point in time, like the heartbeats:
        # the rolling hour behind it would make a station that just came back look an hour old.
        out.append(Observation(kind="health", indicator=HEALTH_INDICATOR, value=1.0,
                               completeness=_completeness(index), standard="", inputs={"index_id": index["index_id"], "index": kind},
                               **{**common, "window_start": index["window_end"]}))
    return out


def _value(index: Index) -> float | None:
    return None if index["insufficient_data"] or index["value"] is None else float(index["value"])


def _completeness(index: Index) -> float:
    # The least complete of the inputs the value rests on: a conservative account of the window.
    valid = [float(i["completeness"]) for i in index["inputs"] if i["valid"]]
    return min(1.0, min(valid)) if valid else 0.0


def _provenance(index: Index) -> dict[str, Any]:
    return {
        "index_id": index["index_id"], "index": index["index"], "standard_id": index["standard_id"], "label": index["label"],
        "primary": list(index["primary"]), "reason": index["reason"], "inputs": [dict(i) for i in index["inputs"]],
        "wind": index.get("wind"),
    }


def alert_record(t: Transition) -> Alert:
    """The jw.alert.v2 record of a transition."""
    d: dict[str, Any] = t.to_dict()
    return {"schema": "jw.alert.v2", "station_id": t.subject if t.scope == "station" else None, **d}  # type: ignore[typeddict-item]


def observation_to_dict(obs: Observation) -> dict[str, Any]:
    return {**asdict(obs), "inputs": plain(obs.inputs)}


def observation_from_dict(d: Mapping[str, Any]) -> Observation:
    return Observation(**d)

