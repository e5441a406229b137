"""Changes to the calibration registry on jw.control.calibration, decided without Kafka: what
`jointwatch calibration apply FILE` and `accept ID` may publish, and a proposal's status.

Rules (the registry is an event-time history that replays depend on):
- Versions are immutable: a version number on the topic keeps its model_id, effective_from,
  model and description forever, and is never removed. A file that lists a sensor must list
  every version the topic has for it, unchanged; a sensor the file does not list is left as it is.
- History is append-only: a new version comes after the sensor's latest (higher number, later
  effective_from).
- No backdating by accident: the running job calibrates each minute with the registry it has
  loaded when it calibrates that minute, so a version whose effective_from is already past
  reaches the earlier readings only when they are replayed. A new version effective before now
  (wall clock) needs an explicit `backdate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from calibration.models import ModelParamError, model_from_dict
from calibration.registry import ModelVersion, Registry, SensorModels
from schemas.calibration import CalibrationModelMessage, CalibrationProposal

MINUTE_MS = 60_000
Status = Literal["pending", "accepted", "superseded"]


class ChangeRefused(ValueError):
    """The change would break a rule above; `reasons` lists every violation found."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("\n".join(reasons))


@dataclass(frozen=True)
class SensorChange:
    """A sensor's new whole history, and the versions it adds to what the topic had."""

    sensor: SensorModels
    added: tuple[ModelVersion, ...]
    new_sensor: bool


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def next_minute(now_ms: int) -> int:
    """The first whole minute at or after now: the default effective_from of an accepted proposal."""
    return -(-now_ms // MINUTE_MS) * MINUTE_MS


def _differences(old: ModelVersion, new: ModelVersion) -> str:
    parts = []
    if old.model_id != new.model_id:
        parts.append(f"model_id {old.model_id!r} -> {new.model_id!r}")
    if old.effective_from != new.effective_from:
        parts.append(f"effective_from {iso(old.effective_from)} -> {iso(new.effective_from)}")
    if old.model != new.model:
        parts.append(f"model {old.model.kind} {old.model.coefficients()} -> {new.model.kind} {new.model.coefficients()}")
    if old.description != new.description:
        parts.append(f"description {old.description!r} -> {new.description!r}")
    return ", ".join(parts)


def _backdated(sensor: str, v: ModelVersion, now_ms: int) -> str:
    return (f"{sensor}: new version {v.version} ({v.model_id}) takes effect at {iso(v.effective_from)}, before now ({iso(now_ms)}). "
            "The running job applies a version to the readings it calibrates after it has loaded it, so a backdated "
            "version reaches earlier readings only when they are replayed; pass --backdate if that is intended.")


def plan_apply(file_registry: Registry, current: Registry, now_ms: int, backdate: bool = False) -> list[SensorChange]:
    """The sensors whose history FILE changes (new versions appended, or new sensors), in key order.

    ChangeRefused with every rewritten, removed or inserted version, and (without `backdate`)
    every new version effective before now_ms."""
    reasons: list[str] = []
    changes: list[SensorChange] = []
    for key, wanted in file_registry.sensors.items():
        have = current.sensors.get(key)
        existing = {v.version: v for v in have.versions} if have is not None else {}
        listed = {v.version: v for v in wanted.versions}
        for number, old in existing.items():
            new = listed.get(number)
            if new is None:
                reasons.append(f"{key}: version {number} ({old.model_id}, from {iso(old.effective_from)}) is on the topic but not in "
                               "the file: versions are never removed; add it to the file unchanged")
            elif new != old:
                reasons.append(f"{key}: version {number} differs from the one on the topic ({_differences(old, new)}): "
                               "versions are immutable; add a new version instead")
        latest = have.versions[-1] if have is not None else None
        added = tuple(v for v in wanted.versions if v.version not in existing)
        for v in added:
            if latest is not None and v.version < latest.version:
                reasons.append(f"{key}: new version {v.version} comes before the topic's latest version {latest.version}: "
                               "history is append-only")
            elif not backdate and v.effective_from < now_ms:
                reasons.append(_backdated(key, v, now_ms))
        if added:
            changes.append(SensorChange(wanted, added, have is None))
    if reasons:
        raise ChangeRefused(reasons)
    return changes


def proposed_version(proposal: CalibrationProposal, version: int, effective_from: int) -> ModelVersion:
    entry = proposal["proposed"]
    try:
        model = model_from_dict(entry)  # type: ignore[arg-type]
    except ModelParamError as exc:
        raise ChangeRefused([f"proposal {proposal['proposal_id']}: proposed.{exc.key}: {exc.reason}"]) from None
    description = f"{entry['description']}; accepted from proposal {proposal['proposal_id']} (window {iso(proposal['window_start'])} .. {iso(proposal['window_end'])})"
    return ModelVersion(entry["model_id"], version, effective_from, model, description)


def accept_proposal(proposal: CalibrationProposal, current: Registry, effective_from: int, now_ms: int, backdate: bool = False) -> SensorModels:
    """The sensor's history with the proposal's model appended as its next version, effective from
    `effective_from`. ChangeRefused when the proposal is stale (its `replaces` is no longer the
    sensor's latest version), already accepted, or (without `backdate`) effective before now_ms."""
    key = proposal["sensor"]
    have = current.sensors.get(key)
    versions = have.versions if have is not None else ()
    pid = proposal["proposal_id"]
    done = [v for v in versions if v.model_id == proposal["proposed"]["model_id"]]
    if done:
        raise ChangeRefused([f"proposal {pid} is already accepted: {key} version {done[0].version} ({done[0].model_id})"])
    latest = versions[-1] if versions else None
    replaces = proposal["replaces"]
    now_latest = None if latest is None else {"model_id": latest.model_id, "version": latest.version}
    if replaces != now_latest:
        was = f"version {replaces['version']} ({replaces['model_id']})" if replaces else "no model"
        now = f"version {latest.version} ({latest.model_id})" if latest else "no model"
        raise ChangeRefused([f"proposal {pid} is stale: it was fitted to replace {was} of {key}, but the registry's latest is now {now}. "
                             "Wait for a proposal judged on the current model (or apply a new version by hand)."])
    new = proposed_version(proposal, (latest.version if latest else 0) + 1, effective_from)
    if not backdate and effective_from < now_ms:
        raise ChangeRefused([_backdated(key, new, now_ms)])
    if latest is not None and effective_from <= latest.effective_from:
        raise ChangeRefused([f"{key}: effective_from {iso(effective_from)} must be after version {latest.version}'s ({iso(latest.effective_from)})"])
    station_id, parameter = key.split("/", 1)
    return SensorModels(station_id, parameter, (*versions, new))


def proposal_status(proposal: CalibrationProposal, current: Registry, newest_window_end: int) -> Status:
    """accepted: its model is a version of the sensor; superseded: the sensor's latest version is no
    longer the one it replaces, or a proposal for the sensor with a later window exists; else pending."""
    have = current.sensors.get(proposal["sensor"])
    versions = have.versions if have is not None else ()
    if any(v.model_id == proposal["proposed"]["model_id"] for v in versions):
        return "accepted"
    latest = versions[-1] if versions else None
    now_latest = None if latest is None else {"model_id": latest.model_id, "version": latest.version}
    if proposal["replaces"] != now_latest or proposal["window_end"] < newest_window_end:
        return "superseded"
    return "pending"


def sensor_message(registry_id: str, sensor: SensorModels) -> CalibrationModelMessage:
    """The control-topic message carrying the sensor's whole history."""
    return Registry(registry_id, "pass", {sensor.key: sensor}).messages()[0]
