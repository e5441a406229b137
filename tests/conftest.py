"""Shared fixtures. Integration tests get a real local stack (Mosquitto, Kafka,
InfluxDB) started once per session on its own ports and state directory; if it
cannot start, the tests fail with the reason (they never skip)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from jointwatch.settings import Settings, load_settings
from jointwatch.stack.local import LocalStack
from jointwatch.stack.processes import StackError
from jointwatch.stack.secrets import Secrets
from schemas.network import Network

TEST_PORT_BASE = int(os.environ.get("JW_TEST_PORT_BASE", "24000"))  # clear of the demo's 17000


@dataclass
class RunningStack:
    settings: Settings
    secrets: Secrets
    network: Network
    local: LocalStack

    def isolated(self) -> Settings:
        """Settings with a fresh Kafka topic namespace, so tests never see each other's messages."""
        from connectors.kafka_io import ensure_topics

        s = self.settings.with_(namespace=f"t{uuid.uuid4().hex[:10]}")
        ensure_topics(s.kafka_bootstrap, namespace=s.namespace)
        return s


def _up(local: LocalStack, attempts: int = 10) -> None:
    # A previous run's brokers may still be releasing the test ports; wait for them, then fail loudly.
    for attempt in range(attempts):
        try:
            local.up(tied=True)
            return
        except StackError as exc:
            if "is taken" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(3)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    settings = load_settings(state_dir=tmp_path_factory.mktemp("stack"), port_base=TEST_PORT_BASE)
    local = LocalStack(settings)
    _up(local)
    try:
        yield RunningStack(settings, local.secrets, local.network, local)
    finally:
        local.down()
