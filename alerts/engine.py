"""The alert engine: indices and rule updates in, tier transitions out, in event-time order.

The state machine must see observations in event-time order, and region-level
keys must see every station of an event time before they are evaluated: only
then does the same input give the same alerts however Kafka interleaved its
partitions. So observations wait in a buffer until the engine's watermark has
passed them (the slowest active input partition, minus a slack), and are then
released sorted by (event time, key). When the watermark crosses a minute mark
every station gets a no-data heartbeat at that mark, so silence is noticed
although a silent station sends nothing.

Rule updates carry `effective_from` (event time): they join the same ordered
stream and apply to observations whose window ends after it. An update whose
time has already been released applies from the watermark on (logged): history
is not rewritten.

No I/O here: the Kafka stage (alerts/stage.py) feeds it and persists snapshot().
Apportionment (optional, alerts/attribution.py): jw.apportionment messages fill a
table of region windows, and the watermark also waits until the apportionment
stage's progress markers cover the window an observation will be attributed by.

Processing time enters only through idleness (a partition silent for `idle_s`
stops holding the watermark back; an apportionment stage that has held it back
for `apportion_wait_s` stops doing so, counted), as in Flink.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerts.attribution import ApportionmentTable
from alerts.observations import observation_from_dict, observation_to_dict, observations
from alerts.tiers.model import MachineState, Observation, Transition
from alerts.tiers.rules import RuleSet, parse_rules
from alerts.tiers.state_machine import Apportion, heartbeat, own_region, run
from schemas.models import Index
from schemas.network import Network

log = logging.getLogger("jointwatch.alerts.engine")

SNAPSHOT_SCHEMA = "jw.alert_engine.v1"


class StaleRules(ValueError):
    """A rules update that is not newer than the rules it would replace."""


@dataclass(frozen=True)
class EngineConfig:
    order_slack_ms: int = 60_000  # how far input partitions may drift apart in event time (one minute mark)
    heartbeat_ms: int = 60_000
    idle_s: float = 30.0
    apportion_wait_s: float = 60.0  # longest the watermark waits for apportionment before going on without it


@dataclass(frozen=True)
class PendingRules:
    effective_from: int
    rules: RuleSet
    doc: Mapping[str, Any]


class AlertEngine:
    def __init__(
        self, network: Network, rules: RuleSet, rules_doc: Mapping[str, Any],
        config: EngineConfig = EngineConfig(), apportion: Apportion = own_region, table: ApportionmentTable | None = None,
    ) -> None:
        self.network, self.config, self.apportion, self.table = network, config, apportion, table
        self.rules, self.rules_doc = rules, rules_doc
        self.state = MachineState()
        self.buffer: list[Observation] = []
        self.pending_rules: list[PendingRules] = []
        self.partition_max: dict[str, int] = {}  # input partition -> latest window_end seen
        self.released_to: int | None = None  # event time up to which observations were released
        self.next_beat: int | None = None
        self.behind = 0  # observations that arrived after their time was released (counted, still stepped)
        self._seen_at: dict[str, float] = {}  # processing time each partition last had data (not persisted)
        self._held_since: float | None = None  # processing time apportionment started holding the watermark back
        self._gave_up_at: float | None = None  # the _held_since of the hold given up on (counted once)
        self.apportion_timeouts = 0  # times the watermark went on without apportionment
        self.apportion_late = 0  # apportionment records read after observations that needed them were released

    # ------------------------------------------------------------------ input

    def offer(self, partition: str, index: Index, now: float) -> int:
        """Buffer the observations of one index read from `partition`; returns how many."""
        end = index["window_end"]
        self.partition_max[partition] = max(self.partition_max.get(partition, end), end)
        self._seen_at[partition] = now
        obs = observations(index)
        if self.released_to is not None and end <= self.released_to:
            self.behind += len(obs)
        self.buffer.extend(obs)
        return len(obs)

    def offer_apportionment(self, partition: str, doc: Mapping[str, Any]) -> str:
        """Take one valid jw.apportionment message (needs a table); returns what it was."""
        assert self.table is not None, "engine built without an apportionment table"
        kind = self.table.offer(partition, doc)
        if kind == "record" and self.table.needed_since(doc["window_end"], self.released_to):
            self.apportion_late += 1
            log.warning("apportionment %s arrived after alerts that needed it were released", doc["record_id"])
        return kind

    def offer_rules(self, doc: Mapping[str, Any], effective_from: int | None, source: str = "<message>") -> PendingRules:
        """Validate a rules document (ConfigError) and schedule it; StaleRules if not newer."""
        rules = parse_rules(dict(doc), self.network, source)
        latest = self.pending_rules[-1].rules if self.pending_rules else self.rules
        if rules.rule_set_id == latest.rule_set_id and rules.version <= latest.version:
            raise StaleRules(f"{source}: rule set {rules.rule_set_id} v{rules.version} is not newer than v{latest.version}")
        floor = self.released_to if self.released_to is not None else 0
        eff = floor if effective_from is None else effective_from
        if eff < floor:
            log.warning("%s: effective_from %d is already past; rules v%d apply from event time %d on", source, eff, rules.version, floor)
            eff = floor
        pending = PendingRules(eff, rules, dict(doc))
        self.pending_rules = sorted([*self.pending_rules, pending], key=lambda p: p.effective_from)
        return pending

    # ------------------------------------------------------------------ time

    def watermark(self, now: float) -> int | None:
        if not self.partition_max:
            return None
        active = [m for p, m in self.partition_max.items() if now - self._seen_at.get(p, -math.inf) < self.config.idle_s]
        # all idle: nothing more is on its way, release everything received
        wm = min(active) - self.config.order_slack_ms if active else max(self.partition_max.values())
        held = self._apportion_hold(wm, now)
        if held is None:
            return self.released_to
        return held if self.released_to is None else max(held, self.released_to)

    def _apportion_hold(self, wm: int, now: float) -> int | None:
        """The watermark, held back to what the apportionment read so far can attribute (None:
        nothing yet, the stage's first progress marker has not arrived on every partition).

        After apportion_wait_s of holding it gives up (the apportionment stage is down or far
        behind: alerts must not wait for it) until apportionment has caught up again.
        """
        if self.table is None or not self.table.partitions:
            return wm
        bound = self.table.bound()
        if bound is not None and bound >= wm:
            self._held_since = None
            return wm
        if self._held_since is None:
            self._held_since = now
        waited = now - self._held_since
        if waited < self.config.apportion_wait_s:
            return bound
        if self._gave_up_at != self._held_since:
            self.apportion_timeouts += 1
            self._gave_up_at = self._held_since
            log.warning("no apportionment beyond event time %s for %.0f s: alerts go on without it until it catches up", bound, waited)
        return wm

    def advance(self, now: float) -> list[Transition]:
        """Release what the watermark has passed, in order, through the state machine."""
        wm = self.watermark(now)
        if wm is None or (self.released_to is not None and wm <= self.released_to):
            return []
        ready = sorted((o for o in self.buffer if o.window_end <= wm), key=lambda o: (o.window_end, 0, str(o.key)))
        self.buffer = [o for o in self.buffer if o.window_end > wm]
        events: list[tuple[tuple[int, int, str], Observation | RuleSet]] = [((o.window_end, 0, str(o.key)), o) for o in ready]
        events += [((hb.window_end, 1, hb.subject), hb) for hb in self._heartbeats(ready, wm)]
        due = [p for p in self.pending_rules if p.effective_from <= wm]
        self.pending_rules = self.pending_rules[len(due):]
        events += [((p.effective_from, 2, f"{i:06d}"), p.rules) for i, p in enumerate(due)]
        events.sort(key=lambda e: e[0])
        self.state, transitions = run((e for _, e in events), self.rules, self.state, network=self.network, apportion=self.apportion, final=False)
        if due:
            self.rules, self.rules_doc = due[-1].rules, due[-1].doc
            log.info("tier rules %s v%d in force from event time %d", self.rules.rule_set_id, self.rules.version, due[-1].effective_from)
        self.released_to = wm
        if self.table is not None:
            self.table.prune(wm)
        return transitions

    def _heartbeats(self, ready: list[Observation], wm: int) -> list[Observation]:
        step = self.config.heartbeat_ms
        first = self.next_beat
        if first is None:
            if not ready:  # beats start at the first data released, whatever the watermark did before it
                return []
            start = min(o.window_end for o in ready)
            first = -(-start // step) * step  # the first mark at or after the first data
        marks = range(first, wm + 1, step)
        if marks:
            self.next_beat = marks[-1] + step
        elif self.next_beat is None:
            self.next_beat = first
        return [heartbeat(s.id, s.region, t) for t in marks for s in sorted(self.network.stations.values(), key=lambda s: s.id)]

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly here (JSON-able)."""
        return {
            "schema": SNAPSHOT_SCHEMA,
            "state": self.state.to_dict(),
            "buffer": [observation_to_dict(o) for o in self.buffer],
            "partition_max": dict(sorted(self.partition_max.items())),
            "released_to": self.released_to,
            "next_beat": self.next_beat,
            "rules": self.rules_doc,
            "pending_rules": [[p.effective_from, p.doc] for p in self.pending_rules],
            "apportionment": self.table.snapshot() if self.table is not None else None,
        }

    @classmethod
    def restore(cls, snap: Mapping[str, Any], network: Network, config: EngineConfig = EngineConfig(), apportion: Apportion = own_region,
                table: ApportionmentTable | None = None) -> AlertEngine:
        if snap.get("schema") != SNAPSHOT_SCHEMA:
            raise ValueError(f"not an alert engine snapshot: schema {snap.get('schema')!r}")
        doc = snap["rules"]
        engine = cls(network, parse_rules(doc, network, "<snapshot>"), doc, config, apportion, table)
        if table is not None and snap.get("apportionment"):
            table.restore(snap["apportionment"])
        engine.state = MachineState.from_dict(snap["state"])
        engine.buffer = [observation_from_dict(o) for o in snap["buffer"]]
        engine.partition_max = {str(k): int(v) for k, v in snap["partition_max"].items()}
        engine.released_to, engine.next_beat = snap["released_to"], snap["next_beat"]
        engine.pending_rules = [PendingRules(int(eff), parse_rules(d, network, "<snapshot>"), d) for eff, d in snap["pending_rules"]]
        return engine
