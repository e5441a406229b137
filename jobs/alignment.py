"""The job's event-time settings (config/alignment.yaml), validated with errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError, read_yaml

# Upper bounds keep a typo (ms for s, hours for minutes) from silently holding state for days.
LIMITS = {"out_of_orderness_s": 3600, "allowed_lateness_min": 24 * 60, "source_idle_s": 3600}


@dataclass(frozen=True)
class Alignment:
    out_of_orderness_s: int = 30  # the watermark trails the largest event time by this much
    allowed_lateness_min: int = 10  # an emitted minute may still be revised this long after it closed
    source_idle_s: int = 30  # a silent partition stops holding the watermark back after this


def parse_alignment(doc: Any, file: str | Path) -> Alignment:
    if not isinstance(doc, dict):
        raise ConfigError(file, "<root>", "must be a mapping")
    if doc.get("version") != 1:
        raise ConfigError(file, "version", f"must be 1, got {doc.get('version')!r}")
    known = {f.name for f in fields(Alignment)}
    values: dict[str, int] = {}
    for key, value in doc.items():
        if key == "version":
            continue
        if key not in known:
            raise ConfigError(file, key, f"unknown setting (known: {sorted(known)})")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LIMITS[key]:
            raise ConfigError(file, key, f"must be a whole number within 0..{LIMITS[key]}, got {value!r}")
        values[key] = value
    if values.get("source_idle_s", 1) == 0:
        raise ConfigError(file, "source_idle_s", "must be at least 1 (0 would mark every partition idle)")
    return Alignment(**values)


def load_alignment(path: str | Path) -> Alignment:
    return parse_alignment(read_yaml(path), path)
