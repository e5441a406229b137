"""Origin and affected regions of an alert from the apportionment stream (issue 6).

The rule for cross-border episodes: the origin region leads, the affected regions
assist. The apportionment stage (apportion/stage.py) says, per region, pollutant and
hourly window, whether part of a region's pollution came from another region
(`origin_region` of its region-scope transport records). An air alert then names:

- origin: the other region the window attributes the alert's pollutant to (the largest
  such share among the index's primary pollutants; any pollutant for region-level
  alerts), else the alert's own region;
- affected: the alert's region when the origin is elsewhere, every region whose same
  window names that origin too, and the regions the wind-based fallback
  (alerts.affected.NetworkAssist) finds downwind.

A water alert at a river section is led by the region that answers for the reach
ending at that section in the water apportionment (its `water_reach` record): for a
border section that is the upstream region, whose delivery the section measures
(apportion/water.py); the downstream regions assist as before.

Which window, deterministically: an observation ending at t uses the windows ending at
W(t) = floor((t - delay) / 1 h) h, the last hour the apportionment stage can have
solved `delay` after it (it solves hour H once its input is 5 min past H). The alert
engine releases t only when the stage's progress marker on every partition of
jw.apportionment has reached W(t) (bound()), so every record of that window has been
read, and the same input gives the same alerts however the topics interleave. Health
alerts keep the network fallback (own region, no assist).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from alerts.affected import NetworkAssist
from alerts.tiers.model import Observation
from schemas.models import is_progress

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class WindowEntry:
    """What one record of a window says: a region's transport record of one pollutant (its origin
    region, if any) or a river reach's record of one parameter (the region answering for the reach)."""

    origin_region: str | None
    share: float  # the origin region's share of the window mean (0 without an origin)
    record_id: str


Key = tuple[str, str, str]  # (kind, region or a reach's downstream section, pollutant)


class ApportionmentTable:
    """The recent region windows of jw.apportionment, and how far the stage has published."""

    def __init__(self, delay_ms: int = 10 * 60_000, keep_windows: int = 3) -> None:
        self.delay_ms, self.keep_windows = delay_ms, keep_windows
        self.windows: dict[int, dict[Key, WindowEntry]] = {}  # window_end -> key -> entry
        self.progress: dict[str, int] = {}  # partition -> emitted_through of its last marker
        self.partitions: tuple[str, ...] = ()

    def expect(self, partitions: Iterable[str]) -> None:
        """The partitions of jw.apportionment: bound() needs a marker from each."""
        self.partitions = tuple(sorted(partitions))

    def offer(self, partition: str, doc: Mapping[str, Any]) -> Literal["progress", "record", "ignored"]:
        """Take one valid jw.apportionment message (record or progress marker)."""
        if is_progress(doc):
            self.progress[partition] = max(self.progress.get(partition, doc["emitted_through"]), doc["emitted_through"])
            return "progress"
        if doc["kind"] == "transport" and doc["scope"] == "region":
            key, origin = doc["region"], doc["origin_region"]
        elif doc["kind"] == "water_reach" and doc["shares"]:
            key = doc["receptor"].split(">")[-1]  # 'upstream>downstream' section ids
            origin = min(doc["shares"], key=lambda r: (-doc["shares"][r], r))  # the region answering for the reach
        else:
            return "ignored"
        share = float(doc["shares"].get(origin, 0.0)) if origin else 0.0
        self.windows.setdefault(doc["window_end"], {})[(doc["kind"], key, doc["pollutant"])] = WindowEntry(origin, share, doc["record_id"])
        return "record"

    def window_for(self, t: int) -> int:
        return (t - self.delay_ms) // HOUR_MS * HOUR_MS

    def bound(self) -> int | None:
        """The latest observation end whose window is complete here; None while some partition
        has no marker yet (nothing published, or the stage not started: the engine waits, up to a limit)."""
        if not self.partitions or any(p not in self.progress for p in self.partitions):
            return None
        return min(self.progress[p] for p in self.partitions) + self.delay_ms + HOUR_MS - 1

    def needed_since(self, window_end: int, released_to: int | None) -> bool:
        """True when observations that should have used this window were already released."""
        return released_to is not None and released_to >= window_end + self.delay_ms

    def prune(self, released_to: int) -> None:
        """Forget windows no observation still to be released can use."""
        oldest = self.window_for(released_to) - (self.keep_windows - 1) * HOUR_MS
        for end in [e for e in self.windows if e < oldest]:
            del self.windows[end]

    def at(self, t: int, kind: str) -> dict[tuple[str, str], WindowEntry]:
        """The entries of one kind in the window an observation ending at t uses: (key, pollutant) -> entry."""
        return {(k, p): e for (knd, k, p), e in self.windows.get(self.window_for(t), {}).items() if knd == kind}

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": [[end, *key, w.origin_region, w.share, w.record_id]
                        for end, items in sorted(self.windows.items()) for key, w in sorted(items.items())],
            "progress": dict(sorted(self.progress.items())),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.windows = {}
        for end, kind, key, pollutant, origin, share, record_id in snap["windows"]:
            self.windows.setdefault(int(end), {})[(kind, key, pollutant)] = WindowEntry(origin, float(share), record_id)
        self.progress = {str(p): int(v) for p, v in snap["progress"].items()}


def _pollutants(obs: Observation) -> set[str] | None:
    """The index's primary pollutants (items such as 'pm25_1h'); None = any (region-level alerts)."""
    primary = obs.inputs.get("primary") if obs.scope == "station" else None
    return {str(item).split("_")[0] for item in primary} if primary else None


class ApportionedAssist:
    """The state machine's `Apportion`: (origin_region, affected_regions, basis) of an observation."""

    def __init__(self, table: ApportionmentTable, fallback: NetworkAssist) -> None:
        self.table, self.fallback = table, fallback

    def __call__(self, obs: Observation) -> tuple[str, tuple[str, ...], dict[str, Any] | None]:
        own, nearby = self.fallback(obs)[:2]  # downwind (air) or downstream (water) regions
        if obs.kind == "water" and obs.scope == "station":
            return self._water(obs, own, nearby)
        if obs.kind != "air":
            return own, nearby, None
        wanted = _pollutants(obs)
        window = self.table.window_for(obs.window_end)
        items = {k: w for k, w in self.table.at(obs.window_end, "transport").items() if wanted is None or k[1] in wanted}
        mine = sorted(((w.share, p, w) for (r, p), w in items.items()
                       if r == obs.region and w.origin_region not in (None, obs.region)), key=lambda x: (-x[0], x[1]))
        if mine:
            share, pollutant, lead = mine[0]
            origin = str(lead.origin_region)
            same = {r for (r, _), w in items.items() if w.origin_region == origin}
            affected = ({obs.region} | same | set(nearby)) - {origin}
            basis = {"method": "apportionment", "window_end": window, "pollutant": pollutant, "origin_share": round(share, 6),
                     "record_id": lead.record_id}
            return origin, tuple(sorted(affected)), basis
        reached = sorted({r for (r, _), w in items.items() if w.origin_region == obs.region and r != obs.region})
        basis = {"method": "apportionment", "window_end": window, "pollutant": None, "origin_share": None,
                 "record_id": None, "reaches": reached} if items else {"method": "wind", "window_end": window}
        return own, tuple(sorted(set(nearby) | set(reached))), basis

    def _water(self, obs: Observation, own: str, downstream: tuple[str, ...]) -> tuple[str, tuple[str, ...], dict[str, Any] | None]:
        """Led by the region answering for the reach ending at the section (the alert's parameter's
        record, else any parameter's: the reach's region is the same); downstream regions assist."""
        reaches = {p: e for (section, p), e in self.table.at(obs.window_end, "water_reach").items() if section == obs.subject}
        if not reaches:
            return own, downstream, None
        named = {obs.indicator, *(obs.inputs.get("primary") or ())} & set(reaches)
        pollutant = min(named or reaches)
        entry = reaches[pollutant]
        origin = entry.origin_region or own
        basis = {"method": "water_reach", "window_end": self.table.window_for(obs.window_end), "pollutant": pollutant,
                 "origin_share": round(entry.share, 6), "record_id": entry.record_id}
        return origin, tuple(sorted(({obs.region} | set(downstream)) - {origin})), basis
