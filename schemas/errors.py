"""The error every configuration loader raises (which file, which key, why), and YAML reading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    def __init__(self, file: str | Path, key: str, reason: str) -> None:
        self.file, self.key, self.reason = str(file), key, reason
        super().__init__(f"{file}: {key}: {reason}")


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error becomes a ConfigError."""
    file = Path(path)
    try:
        return yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(file, "<file>", "does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, "<yaml>", str(exc).replace("\n", " ")) from None
