"""The calibration registry: per sensor (station_id + parameter), versioned models
each in effect from an event time on, and the vectorised as-of lookup and
calibration of batches of readings.

Document (YAML, e.g. config/calibration.yaml)::

    version: 1
    registry_id: demo
    unlisted_sensors: pass        # pass: sensors not listed need no calibration; flag (default): calibration missing
    sensors:
      - station_id: n-a03
        parameter: pm25
        models:
          - model_id: epa-purpleair-2021
            version: 1
            effective_from: "2026-01-01T00:00:00+01:00"   # ISO-8601 with zone
            type: epa_purpleair_2021
            coefficients: {}

`description` (of a sensor or a version) is free text for people. Within a sensor,
versions and effective_from both strictly increase, so the model
in effect at time t is the one with the latest effective_from <= t. Before its first effective_from a listed sensor has
no model: its readings are flagged "calibration missing". The lookup is a pure
function of (sensor, event time, registry): replaying the same input gives the
same models, whatever the processing time or order.

On the control topic (jw.control.calibration, compacted, key = "station_id/parameter")
each message carries one sensor's whole version history (schemas/calibration_model.v1),
so compaction keeps everything a replay of old readings needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration.models import Covariates, Model, ModelParamError, model_from_dict, model_to_dict
from schemas.calibration import CalibrationModelMessage, ModelEntry
from schemas.errors import ConfigError, read_yaml
from schemas.network import ID_PATTERN, Network
from schemas.parameters import PARAMETERS

MESSAGE_SCHEMA = "jw.calibration_model.v1"
# The as-of search packs (sensor code, event time) into one int64: code << TIME_BITS | time.
# 2**42 ms is 139 years (1970 .. 2109); 2**21 sensors fit in the remaining bits.
TIME_BITS = 42
TIME_LIMIT = 1 << TIME_BITS
MAX_SENSORS = 1 << 21
ENTRY_KEYS = ("model_id", "version", "effective_from", "type", "coefficients", "description")
Unlisted = Literal["pass", "flag"]


@dataclass(frozen=True)
class ModelVersion:
    model_id: str
    version: int
    effective_from: int  # UTC epoch ms, event time
    model: Model
    description: str = ""


@dataclass(frozen=True)
class SensorModels:
    station_id: str
    parameter: str
    versions: tuple[ModelVersion, ...]  # ascending version and effective_from

    @property
    def key(self) -> str:
        return sensor_key(self.station_id, self.parameter)

    def at(self, event_time_ms: int) -> ModelVersion | None:
        """The version in effect at one event time (scalar; batches use Registry.lookup)."""
        current = None
        for v in self.versions:
            if v.effective_from <= event_time_ms:
                current = v
        return current


def sensor_key(station_id: str, parameter: str) -> str:
    return f"{station_id}/{parameter}"


@dataclass(frozen=True)
class Calibrated:
    """A batch's calibration, one element per reading."""

    value: NDArray[np.float64]  # NaN where missing; the raw value for unlisted sensors under 'pass'
    entry: NDArray[np.int64]  # index into Registry.entries, -1 when no model applied
    model_id: NDArray[np.object_]  # '' when no model applied
    version: NDArray[np.int64]  # 0 when no model applied
    missing: NDArray[np.bool_]  # calibration missing: no model in effect, or its covariates missing


@dataclass(frozen=True)
class Registry:
    registry_id: str
    unlisted: Unlisted
    sensors: dict[str, SensorModels]  # by sensor key, sorted
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.sensors) >= MAX_SENSORS:
            raise ValueError(f"at most {MAX_SENSORS - 1} sensors per registry")
        codes = {key: i for i, key in enumerate(self.sensors)}
        entries = [(codes[key], v) for key, s in self.sensors.items() for v in s.versions]
        models: dict[Model, int] = {}  # identical models share one group in `calibrate`
        for _, v in entries:
            models.setdefault(v.model, len(models))
        composite = np.array([(c << TIME_BITS) | v.effective_from for c, v in entries], dtype=np.int64)
        compiled = {
            "_codes": codes,
            "_entries": tuple(v for _, v in entries),
            "_entry_sensor": np.array([c for c, _ in entries], dtype=np.int64),
            "_composite": composite,
            "_models": tuple(models),
            "_entry_model": np.array([models[v.model] for _, v in entries], dtype=np.int64),
            "_entry_model_id": np.array([v.model_id for _, v in entries] + [""], dtype=object),
            "_entry_version": np.array([v.version for _, v in entries] + [0], dtype=np.int64),
        }
        for name, value in compiled.items():
            object.__setattr__(self, name, value)
        if np.any(np.diff(composite) <= 0):  # the as-of search relies on it
            raise ValueError("each sensor's versions must be in strictly increasing effective_from order")

    @property
    def entries(self) -> tuple[ModelVersion, ...]:
        return self._entries  # type: ignore[attr-defined]

    def sensor_codes(self, station_ids: ArrayLike, parameters: ArrayLike) -> NDArray[np.int64]:
        """Registry code of each reading's sensor; -1 for sensors not in the registry.

        Dictionary look-ups run once per distinct station and parameter, not per reading.
        """
        st_u, st_inv = np.unique(np.asarray(station_ids), return_inverse=True)
        pa_u, pa_inv = np.unique(np.asarray(parameters), return_inverse=True)
        codes: dict[str, int] = self._codes  # type: ignore[attr-defined]
        table = np.array(
            [[codes.get(sensor_key(str(s), str(p)), -1) for p in pa_u] for s in st_u], dtype=np.int64
        ).reshape(len(st_u), len(pa_u))
        return table[st_inv.ravel(), pa_inv.ravel()]

    def lookup(self, codes: ArrayLike, event_time_ms: ArrayLike) -> NDArray[np.int64]:
        """Index into `entries` of the version in effect at each reading's event time, -1 for none.

        One np.searchsorted over (sensor, effective_from) packed into int64: the last
        entry at or before (sensor, t) is the sensor's latest version with
        effective_from <= t, unless it belongs to another sensor (t before the first version).
        """
        c = np.asarray(codes, dtype=np.int64)
        t = np.clip(np.asarray(event_time_ms, dtype=np.int64), 0, TIME_LIMIT - 1)
        composite: NDArray[np.int64] = self._composite  # type: ignore[attr-defined]
        if composite.size == 0:
            return np.full(c.shape, -1, dtype=np.int64)
        pos = np.searchsorted(composite, (np.maximum(c, 0) << TIME_BITS) | t, side="right") - 1
        safe = np.maximum(pos, 0)
        found = (c >= 0) & (pos >= 0) & (self._entry_sensor[safe] == c)  # type: ignore[attr-defined]
        return np.where(found, pos, -1)

    def calibrate(
        self, codes: ArrayLike, event_time_ms: ArrayLike, values: ArrayLike, covariates: Covariates | None = None
    ) -> Calibrated:
        """Calibrate a batch: each reading by the model in effect at its event time.

        `covariates` maps names (e.g. 'rh') to arrays aligned with `values`. Readings
        are grouped by model (identical models across sensors share a group), so the
        Python loop runs once per distinct model, never per reading.
        """
        c = np.asarray(codes, dtype=np.int64)
        raw = np.asarray(values, dtype=np.float64)
        entry = self.lookup(c, event_time_ms)
        out = np.full(raw.shape, np.nan)
        if self.unlisted == "pass":
            unlisted = c < 0
            out[unlisted] = raw[unlisted]
        entry_model: NDArray[np.int64] = self._entry_model  # type: ignore[attr-defined]
        group = np.where(entry >= 0, entry_model[np.maximum(entry, 0)], -1) if entry_model.size else np.full(raw.shape, -1)
        models: tuple[Model, ...] = self._models  # type: ignore[attr-defined]
        order = np.argsort(group.astype(np.int32), kind="stable")  # radix sort on small ints
        bounds = np.searchsorted(group[order], np.arange(len(models) + 1))
        for m, model in enumerate(models):
            idx = order[bounds[m] : bounds[m + 1]]
            if idx.size == 0:
                continue
            cov = {name: np.asarray(covariates[name])[idx] for name in model.covariates if covariates and name in covariates}
            out[idx] = model.apply(raw[idx], cov)
        applied = entry >= 0
        no_model = (c >= 0) & ~applied if self.unlisted == "pass" else ~applied
        missing = no_model | (applied & np.isnan(out) & ~np.isnan(raw))
        return Calibrated(
            value=out,
            entry=entry,
            model_id=self._entry_model_id[entry],  # type: ignore[attr-defined]  # index -1 is ''
            version=self._entry_version[entry],  # type: ignore[attr-defined]  # index -1 is 0
            missing=missing,
        )

    def at(self, event_time_ms: int) -> dict[str, ModelVersion | None]:
        """Every sensor's version in effect at one event time."""
        return {key: s.at(event_time_ms) for key, s in self.sensors.items()}

    def messages(self) -> list[CalibrationModelMessage]:
        """One control-topic message per sensor (its whole history), in key order."""
        return [
            CalibrationModelMessage(
                schema=MESSAGE_SCHEMA,
                sensor=s.key,
                station_id=s.station_id,
                parameter=s.parameter,
                registry_id=self.registry_id,
                models=[
                    ModelEntry(
                        model_id=v.model_id,
                        version=v.version,
                        effective_from=v.effective_from,
                        description=v.description,
                        **model_to_dict(v.model),  # type: ignore[typeddict-item]
                    )
                    for v in s.versions
                ],
            )
            for s in self.sensors.values()
        ]


# --- loading and validation -------------------------------------------------------------


def epoch_ms(value: Any, file: Path | str, key: str) -> int:
    """ISO-8601 text (or a YAML timestamp) with a zone -> UTC epoch ms; ConfigError otherwise."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, date):
        raise ConfigError(file, key, f"{value.isoformat()} is a date: give a time and a zone (e.g. {value.isoformat()}T00:00:00+01:00)")
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(file, key, f"not ISO-8601: {value!r}") from None
    else:
        raise ConfigError(file, key, f"must be an ISO-8601 time with zone, got {type(value).__name__} {value!r}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ConfigError(file, key, f"{t.isoformat()} has no zone offset (e.g. +01:00 or Z)")
    ms = round(t.timestamp() * 1000)
    if not 0 < ms < TIME_LIMIT:
        raise ConfigError(file, key, f"{t.isoformat()} is outside 1970 .. 2109")
    return ms


def _model_versions(raw: Any, file: Path | str, where: str, iso_times: bool) -> tuple[ModelVersion, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(file, where, "must be a non-empty list of model versions")
    out: list[ModelVersion] = []
    for j, m in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(m, Mapping):
            raise ConfigError(file, at, "must be a mapping")
        extra = sorted(set(m) - set(ENTRY_KEYS))
        if extra:
            raise ConfigError(file, f"{at}.{extra[0]}", f"unknown key (allowed: {', '.join(ENTRY_KEYS)})")
        model_id = m.get("model_id")
        if not isinstance(model_id, str) or not model_id.strip():
            raise ConfigError(file, f"{at}.model_id", "is required (a non-empty string)")
        version = m.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(file, f"{at}.version", f"must be an integer >= 1, got {version!r}")
        if "effective_from" not in m:
            raise ConfigError(file, f"{at}.effective_from", "is required (ISO-8601 with zone)")
        if iso_times:
            eff = epoch_ms(m["effective_from"], file, f"{at}.effective_from")
        else:
            eff = m["effective_from"]
            if isinstance(eff, bool) or not isinstance(eff, int) or not 0 < eff < TIME_LIMIT:
                raise ConfigError(file, f"{at}.effective_from", f"must be UTC epoch ms within 1970 .. 2109, got {eff!r}")
        try:
            model = model_from_dict(m)
        except ModelParamError as exc:
            raise ConfigError(file, f"{at}.{exc.key}", exc.reason) from None
        description = m.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(file, f"{at}.description", "must be a string")
        if out and version <= out[-1].version:
            raise ConfigError(file, f"{at}.version", f"{version} must be greater than the previous entry's {out[-1].version}")
        if out and eff <= out[-1].effective_from:
            raise ConfigError(file, f"{at}.effective_from", f"must be later than version {out[-1].version}'s effective_from")
        out.append(ModelVersion(model_id.strip(), version, eff, model, description))
    return tuple(out)


def _check_against_network(s: SensorModels, network: Network, file: Path | str, where: str) -> None:
    station = network.stations.get(s.station_id)
    if station is None:
        raise ConfigError(file, f"{where}.station_id", f"unknown station {s.station_id!r} (not in {network.source or 'the network'})")
    if s.parameter not in station.parameters:
        raise ConfigError(file, f"{where}.parameter", f"station {s.station_id} does not measure {s.parameter!r}")
    for j, v in enumerate(s.versions):
        for cov in v.model.covariates:
            if cov not in station.parameters:
                raise ConfigError(file, f"{where}.models[{j}]", f"covariate {cov!r} is not measured at station {s.station_id}")


def parse_registry(doc: Any, file: Path | str, network: Network | None = None) -> Registry:
    """Validate a registry document; ConfigError names `file: key: reason` of the first problem.

    With a network, every sensor's station must exist and measure the parameter
    and the covariates its models use.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(file, "<root>", "must be a mapping with version, registry_id and sensors")
    if doc.get("version") != 1:
        raise ConfigError(file, "version", f"must be 1, got {doc.get('version')!r}")
    registry_id = doc.get("registry_id")
    if not isinstance(registry_id, str) or not ID_PATTERN.match(registry_id):
        raise ConfigError(file, "registry_id", f"must match {ID_PATTERN.pattern}, got {registry_id!r}")
    unlisted = doc.get("unlisted_sensors", "flag")
    if unlisted not in ("pass", "flag"):
        raise ConfigError(file, "unlisted_sensors", f"must be 'pass' or 'flag', got {unlisted!r}")
    # `drift` (the drift detector's settings and sensor/reference pairs) is validated by calibration/drift_config.py.
    extra = sorted(set(doc) - {"version", "registry_id", "unlisted_sensors", "sensors", "drift"})
    if extra:
        raise ConfigError(file, extra[0], "unknown key (allowed: version, registry_id, unlisted_sensors, sensors, drift)")
    raw_sensors = doc.get("sensors")
    if not isinstance(raw_sensors, list):
        raise ConfigError(file, "sensors", "is required (a list)")
    sensors: dict[str, SensorModels] = {}
    for i, s in enumerate(raw_sensors):
        where = f"sensors[{i}]"
        if not isinstance(s, Mapping):
            raise ConfigError(file, where, "must be a mapping with station_id, parameter and models")
        extra = sorted(set(s) - {"station_id", "parameter", "models", "description"})
        if extra:
            raise ConfigError(file, f"{where}.{extra[0]}", "unknown key (allowed: station_id, parameter, models, description)")
        sid = s.get("station_id")
        if not isinstance(sid, str) or not ID_PATTERN.match(sid):
            raise ConfigError(file, f"{where}.station_id", f"must match {ID_PATTERN.pattern}, got {sid!r}")
        param = s.get("parameter")
        if param not in PARAMETERS:
            raise ConfigError(file, f"{where}.parameter", f"unknown parameter {param!r}")
        sm = SensorModels(sid, param, _model_versions(s.get("models"), file, f"{where}.models", iso_times=True))
        if sm.key in sensors:
            raise ConfigError(file, where, f"duplicate sensor {sm.key!r}: list all its versions under one entry")
        if network is not None:
            _check_against_network(sm, network, file, where)
        sensors[sm.key] = sm
    return Registry(registry_id, unlisted, dict(sorted(sensors.items())), str(file))


def load_registry(path: str | Path, network: Network | None = None) -> Registry:
    return parse_registry(read_yaml(path), Path(path), network)


def registry_from_messages(
    messages: Iterable[Mapping[str, Any]], registry_id: str, unlisted: Unlisted = "flag", source: str = "<messages>"
) -> Registry:
    """Rebuild a registry from the latest control-topic message of each sensor
    (later messages for the same sensor replace earlier ones)."""
    sensors: dict[str, SensorModels] = {}
    for n, msg in enumerate(messages):
        where = f"message[{n}]"
        if msg.get("schema") != MESSAGE_SCHEMA:
            raise ConfigError(source, f"{where}.schema", f"must be {MESSAGE_SCHEMA!r}, got {msg.get('schema')!r}")
        sid, param = msg.get("station_id"), msg.get("parameter")
        if not isinstance(sid, str) or param not in PARAMETERS or msg.get("sensor") != sensor_key(str(sid), str(param)):
            raise ConfigError(source, f"{where}.sensor", "must be station_id/parameter of a known parameter")
        sm = SensorModels(sid, param, _model_versions(msg.get("models"), source, f"{where}.models", iso_times=False))
        sensors[sm.key] = sm
    return Registry(registry_id, unlisted, dict(sorted(sensors.items())), source)
