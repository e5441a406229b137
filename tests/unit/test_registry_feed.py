"""The job's registry feed: which control-topic messages it takes (Kafka itself: tests/integration/test_calibration_job.py)."""

from __future__ import annotations

import json

from calibration.registry import parse_registry
from connectors.registry_feed import RegistryFeed

DOC = {"version": 1, "registry_id": "feed-test", "unlisted_sensors": "pass", "sensors": [
    {"station_id": "n-a03", "parameter": "pm25", "models": [
        {"model_id": "lin", "version": 1, "effective_from": "2026-01-01T00:00:00+00:00", "type": "linear",
         "coefficients": {"gain": 0.5, "offset": 1.0}}]}]}


def test_valid_messages_change_the_registry_invalid_ones_are_counted_and_skipped() -> None:
    feed = RegistryFeed("127.0.0.1:1", "jw.control.calibration")
    [message] = parse_registry(DOC, "test").messages()
    raw = json.dumps(message).encode()
    assert feed._take(b"n-a03/pm25", raw)
    assert not feed._take(b"n-a03/pm25", raw)  # the same history again changes nothing
    broken = {**message, "models": [{**message["models"][0], "coefficients": {"gain": "x"}}]}
    for bad in (b"{not json", None, json.dumps(broken).encode(), json.dumps({**message, "schema": "other"}).encode()):
        assert not feed._take(b"n-a03/pm25", bad)
    assert feed.invalid == 4
    registry = feed._build()
    assert list(registry.sensors) == ["n-a03/pm25"] and registry.sensors["n-a03/pm25"].versions[0].model.coefficients() == {"gain": 0.5, "offset": 1.0}
