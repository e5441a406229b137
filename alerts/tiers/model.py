"""The state machine's messages: observations in, transitions out, and per-key state.

All frozen dataclasses; state and transitions convert to plain JSON-able dicts so
a Flink operator can checkpoint the state and publish the transitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from schemas.models import Tier

Scope = Literal["station", "region"]
Action = Literal["raise", "escalate", "deescalate", "clear", "reattribute"]
HEALTH_INDICATOR = "no-data"
CLASS_INDICATOR = "class"


@dataclass(frozen=True, order=True)
class Key:
    """What one state machine tracks: a station or region, a kind, an indicator."""

    scope: Scope
    subject: str  # station id, or region id when scope == "region"
    kind: str  # "air" | "water" | "health"
    indicator: str  # "aqi", "class", a water parameter (jumps), "no-data"

    def __str__(self) -> str:
        return f"{self.scope}:{self.subject}/{self.kind}/{self.indicator}"


@dataclass(frozen=True)
class Observation:
    """One evaluated window of one key. value None means "insufficient data": it never raises
    or clears anything (for the health kind, None means "no valid data in this window").
    Inputs are provenance (concentrations, sub-indices, calibration...), carried into transitions.
    Not hashable (inputs is a mapping)."""

    subject: str
    region: str
    kind: str
    indicator: str
    window_start: int  # UTC epoch ms
    window_end: int  # UTC epoch ms, exclusive
    value: float | None
    completeness: float = 1.0
    standard: str = ""  # standard id and edition of the value, e.g. "HJ 633-2012"
    inputs: Mapping[str, Any] = field(default_factory=dict)
    scope: Scope = "station"

    def __post_init__(self) -> None:
        if self.window_end < self.window_start:
            raise ValueError(f"{self.key}: window_end {self.window_end} before window_start {self.window_start}")
        if not 0.0 <= self.completeness <= 1.0:
            raise ValueError(f"{self.key}: completeness {self.completeness} outside 0..1")

    @property
    def key(self) -> Key:
        return Key(self.scope, self.subject, self.kind, self.indicator)


@dataclass(frozen=True)
class Transition:
    """A tier change of one key: the alert event. alert_id is a hash of (key, tier,
    window_end, rule_set_id, rule_version), so reprocessing the same input gives the
    same id; episode_id is the alert_id of the raise that opened the episode."""

    alert_id: str
    episode_id: str
    action: Action
    scope: Scope
    subject: str
    region: str
    kind: str
    indicator: str
    tier: Tier
    previous_tier: Tier
    value: float | None  # the measure compared (AQI, class number, rise, silent minutes, stations)
    threshold: float | None  # the bound crossed: enter threshold going up, exit threshold going down
    reason: str
    window_start: int
    window_end: int
    condition_since: int  # event time the deciding condition started (persistence / exit run)
    completeness: float
    standard: str
    inputs: Mapping[str, Any]
    rule_id: str
    rule_set_id: str
    rule_version: int
    origin_region: str
    affected_regions: tuple[str, ...]

    @property
    def key(self) -> Key:
        return Key(self.scope, self.subject, self.kind, self.indicator)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = plain(self.inputs)
        d["affected_regions"] = list(self.affected_regions)
        return d


@dataclass(frozen=True)
class Run:
    """A run of consecutive valid observations satisfying one condition."""

    start: int  # window_start of the first observation
    end: int  # window_end of the latest
    count: int

    @property
    def span_ms(self) -> int:
        return self.end - self.start

    def extended(self, window_end: int) -> Run:
        return Run(self.start, window_end, self.count + 1)


@dataclass(frozen=True)
class KeyState:
    """Everything one key's machine remembers; small and serialisable (to_dict/from_dict)."""

    key: Key
    tier: Tier = "green"
    tier_since: int | None = None  # window_end at which the current tier was entered
    episode_id: str | None = None
    last_window_end: int | None = None
    rules_ref: tuple[str, int] | None = None  # (rule_set_id, version) of the last evaluation
    up_runs: tuple[tuple[Tier, Run], ...] = ()  # per tier: run of observations above its enter threshold
    down_run: Run | None = None  # run of observations below the current tier's exit threshold
    first_seen: int | None = None  # health: first event time seen
    last_valid_end: int | None = None  # health: end of the last window with valid data
    recent: tuple[tuple[int, float], ...] = ()  # jumps: (window_end, value) of the trailing window
    origin_region: str | None = None  # the open episode's lead region (as its last transition named it)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": asdict(self.key),
            "tier": self.tier,
            "tier_since": self.tier_since,
            "episode_id": self.episode_id,
            "last_window_end": self.last_window_end,
            "rules_ref": list(self.rules_ref) if self.rules_ref else None,
            "up_runs": [[t, r.start, r.end, r.count] for t, r in self.up_runs],
            "down_run": [self.down_run.start, self.down_run.end, self.down_run.count] if self.down_run else None,
            "first_seen": self.first_seen,
            "last_valid_end": self.last_valid_end,
            "recent": [[t, v] for t, v in self.recent],
            "origin_region": self.origin_region,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeyState:
        dr = d.get("down_run")
        ref = d.get("rules_ref")
        return cls(
            key=Key(**d["key"]),
            tier=d["tier"],
            tier_since=d.get("tier_since"),
            episode_id=d.get("episode_id"),
            last_window_end=d.get("last_window_end"),
            rules_ref=(str(ref[0]), int(ref[1])) if ref else None,
            up_runs=tuple((t, Run(s, e, c)) for t, s, e, c in d.get("up_runs", [])),
            down_run=Run(*dr) if dr else None,
            first_seen=d.get("first_seen"),
            last_valid_end=d.get("last_valid_end"),
            recent=tuple((int(t), float(v)) for t, v in d.get("recent", [])),
            origin_region=d.get("origin_region"),
        )


@dataclass(frozen=True)
class MachineState:
    """All keys of a stream, plus the region evaluations waiting for event time to move on."""

    keys: Mapping[str, KeyState] = field(default_factory=dict)
    pending_at: int | None = None  # event time of the pending region evaluations
    pending: tuple[tuple[str, str, str, int], ...] = ()  # (region, kind, indicator, earliest window_start)

    def tier_of(self, key: Key) -> Tier:
        ks = self.keys.get(str(key))
        return ks.tier if ks else "green"

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": {k: v.to_dict() for k, v in sorted(self.keys.items())},
            "pending_at": self.pending_at,
            "pending": [list(p) for p in self.pending],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MachineState:
        keys = {k: KeyState.from_dict(v) for k, v in d.get("keys", {}).items()}
        pending = tuple((str(r), str(k), str(i), int(w)) for r, k, i, w in d.get("pending", []))
        return cls(keys, d.get("pending_at"), pending)


def plain(v: Any) -> Any:
    """Mappings and sequences as dicts and lists, so to_dict output is JSON-able."""
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v
