"""What `calibration apply` and `accept` may publish (calibration/control.py): versions immutable and
never removed, history append-only, no accidental backdating, stale and repeated proposals refused,
and a proposal's status against the registry. Plus the CLI's checks that need no Kafka."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from calibration.control import ChangeRefused, accept_proposal, next_minute, plan_apply, proposal_status, sensor_message
from calibration.drift import HOUR_MS, propose
from calibration.registry import Registry, parse_registry, registry_from_messages
from jointwatch.cli import main
from schemas.calibration import CalibrationProposal
from schemas.models import validation_errors

NOW = 1_796_000_000_000  # 2026-11-30T..Z, a fixed "wall clock"
H = HOUR_MS
V1 = {"model_id": "colo-a", "version": 1, "effective_from": "2026-01-01T00:00:00Z", "type": "linear", "coefficients": {"gain": 1.0, "offset": -4.0}}
V2 = {"model_id": "colo-b", "version": 2, "effective_from": "2026-12-24T00:00:00Z", "type": "linear", "coefficients": {"gain": 0.9, "offset": -3.0}}


def doc(*sensors: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"version": 1, "registry_id": "demo", "unlisted_sensors": "pass",
            "sensors": [{"station_id": k.split("/")[0], "parameter": k.split("/")[1], "models": copy.deepcopy(m)} for k, m in sensors]}


def reg(*sensors: tuple[str, list[dict[str, Any]]]) -> Registry:
    return parse_registry(doc(*sensors), "cal.yaml")


def on_topic(r: Registry) -> Registry:
    """The registry as the topic carries it (epoch-ms messages), so equality is tested across the round trip."""
    return registry_from_messages(r.messages(), "jw.control.calibration", "pass")


TOPIC = on_topic(reg(("n-a03/pm25", [V1]), ("c-a08/no2", [V1])))


def test_apply_appends_new_versions_and_sensors_only() -> None:
    new_sensor = {**V1, "effective_from": "2026-12-01T00:00:00Z"}
    changes = plan_apply(reg(("n-a03/pm25", [V1, V2]), ("c-a08/no2", [V1]), ("s-a05/pm25", [new_sensor])), TOPIC, NOW)
    assert [(c.sensor.key, [v.version for v in c.added], c.new_sensor) for c in changes] == [
        ("n-a03/pm25", [2], False), ("s-a05/pm25", [1], True)]  # c-a08 unchanged: not republished
    assert [v.version for v in changes[0].sensor.versions] == [1, 2]  # the whole history goes out
    msg = sensor_message("demo", changes[0].sensor)
    assert validation_errors("calibration_model", msg) == [] and msg["sensor"] == "n-a03/pm25" and len(msg["models"]) == 2
    # the same file again: nothing to do; a file without c-a08 leaves it alone
    assert plan_apply(reg(("n-a03/pm25", [V1]), ("c-a08/no2", [V1])), TOPIC, NOW) == []
    assert plan_apply(reg(("n-a03/pm25", [V1])), TOPIC, NOW) == []


@pytest.mark.parametrize(("versions", "reason"), [
    ([{**V1, "coefficients": {"gain": 1.1, "offset": -4.0}}], "version 1 differs from the one on the topic (model linear"),
    ([{**V1, "model_id": "colo-x"}], "model_id 'colo-a' -> 'colo-x'"),
    ([{**V1, "effective_from": "2026-01-02T00:00:00Z"}], "effective_from 2026-01-01T00:00:00Z -> 2026-01-02T00:00:00Z"),
    ([{**V1, "description": "typo fixed"}], "description '' -> 'typo fixed'"),
    ([{**V2, "version": 2}], "version 1 (colo-a, from 2026-01-01T00:00:00Z) is on the topic but not in the file"),
])
def test_apply_refuses_to_rewrite_or_remove_a_version(versions: list[dict[str, Any]], reason: str) -> None:
    with pytest.raises(ChangeRefused) as err:
        plan_apply(reg(("n-a03/pm25", versions)), TOPIC, NOW)
    assert any(reason in r and r.startswith("n-a03/pm25: ") for r in err.value.reasons), err.value.reasons


def test_apply_refuses_inserting_before_the_latest_and_names_every_problem() -> None:
    topic = on_topic(reg(("n-a03/pm25", [V1, {**V2, "version": 3}]), ("c-a08/no2", [V1])))
    inserted = {**V2, "version": 2, "effective_from": "2026-12-10T00:00:00Z"}
    with pytest.raises(ChangeRefused) as err:
        plan_apply(reg(("n-a03/pm25", [V1, inserted, {**V2, "version": 3}]), ("c-a08/no2", [{**V1, "model_id": "other"}])), topic, NOW)
    assert err.value.reasons == [
        "c-a08/no2: version 1 differs from the one on the topic (model_id 'colo-a' -> 'other'): versions are immutable; add a new version instead",
        "n-a03/pm25: new version 2 comes before the topic's latest version 3: history is append-only",
    ]


def test_apply_refuses_a_backdated_new_version_unless_asked() -> None:
    past = {**V2, "effective_from": "2026-11-01T00:00:00Z"}  # before NOW
    with pytest.raises(ChangeRefused) as err:
        plan_apply(reg(("n-a03/pm25", [V1, past])), TOPIC, NOW)
    (reason,) = err.value.reasons
    assert "new version 2 (colo-b) takes effect at 2026-11-01T00:00:00Z, before now" in reason
    assert "reaches earlier readings only when they are replayed; pass --backdate" in reason
    assert [c.added[0].version for c in plan_apply(reg(("n-a03/pm25", [V1, past])), TOPIC, NOW, backdate=True)] == [2]
    # a version already on the topic is not new: its past effective_from needs no --backdate
    assert plan_apply(reg(("n-a03/pm25", [V1])), TOPIC, NOW) == []


def proposal(current: Registry, sensor: str = "n-a03/pm25", hours_ago: int = 0, gain: float = 1.2) -> CalibrationProposal:
    """A real proposal from drift.propose: 72 hourly bins ending hours_ago before NOW's hour, sensor = gain*ref + 4."""
    station, parameter = sensor.split("/")
    starts = (NOW - NOW % H) - (72 + hours_ago) * H + np.arange(72) * H
    ref = 30 + 10 * np.sin(np.arange(72) / 4)
    models = current.sensors.get(sensor)
    end = int(starts[-1]) + H
    p = propose(station, parameter, "n-a01", starts, gain * ref + 4, ref, models.at(end) if models else None)
    assert p is not None
    return p


def test_accept_appends_the_proposed_model_as_the_next_version() -> None:
    p = proposal(TOPIC)
    assert p["replaces"] == {"model_id": "colo-a", "version": 1}
    eff = next_minute(NOW)
    history = accept_proposal(p, TOPIC, eff, NOW)
    new = history.versions[-1]
    assert [v.version for v in history.versions] == [1, 2] and history.versions[0] == TOPIC.sensors["n-a03/pm25"].versions[0]
    assert (new.model_id, new.effective_from, new.model.kind) == (p["proposed"]["model_id"], eff, "linear")
    assert new.model.coefficients() == pytest.approx({"gain": 1 / 1.2, "offset": -4 / 1.2})
    assert p["proposal_id"] in new.description
    assert eff % 60_000 == 0 and NOW <= eff < NOW + 60_000
    # accepted: the status says so, and accepting again is refused
    accepted = registry_from_messages([sensor_message("demo", history), *TOPIC.messages()[:1]], "t", "pass")
    assert proposal_status(p, accepted, p["window_end"]) == "accepted"
    with pytest.raises(ChangeRefused, match=f"proposal {p['proposal_id']} is already accepted: n-a03/pm25 version 2"):
        accept_proposal(p, accepted, eff + 60_000, NOW)


def test_accept_refuses_a_stale_proposal() -> None:
    """The proposal replaces version 1; version 2 was applied since: it was judged on a model no longer in use."""
    p = proposal(TOPIC)
    moved_on = on_topic(reg(("n-a03/pm25", [V1, V2]), ("c-a08/no2", [V1])))
    with pytest.raises(ChangeRefused) as err:
        accept_proposal(p, moved_on, next_minute(NOW), NOW)
    assert "is stale: it was fitted to replace version 1 (colo-a) of n-a03/pm25, but the registry's latest is now version 2 (colo-b)" in str(err.value)
    assert proposal_status(p, moved_on, p["window_end"]) == "superseded"
    # a proposal for a sensor with no model is stale once the sensor has one
    fresh = proposal(Registry("x", "pass", {}), sensor="s-a05/pm25")
    assert fresh["replaces"] is None
    accept_proposal(fresh, TOPIC, next_minute(NOW), NOW)  # fine while s-a05 has no model
    with pytest.raises(ChangeRefused, match="replace no model of s-a05/pm25, but the registry's latest is now version 1"):
        accept_proposal(fresh, on_topic(reg(("s-a05/pm25", [V1]))), next_minute(NOW), NOW)


def test_accept_backdating_and_effective_from_order() -> None:
    p = proposal(TOPIC)
    with pytest.raises(ChangeRefused, match="before now .* pass --backdate"):
        accept_proposal(p, TOPIC, p["window_end"], NOW)
    assert accept_proposal(p, TOPIC, p["window_end"], NOW, backdate=True).versions[-1].effective_from == p["window_end"]
    # (the same version 1, but effective after now: the new version must still come after it)
    late_v1 = on_topic(reg(("n-a03/pm25", [{**V1, "effective_from": "2026-12-30T00:00:00Z"}])))
    with pytest.raises(ChangeRefused, match="must be after version 1's"):
        accept_proposal(p, late_v1, next_minute(NOW), NOW)


def test_status_pending_until_a_later_proposal_exists() -> None:
    older, newer = proposal(TOPIC, hours_ago=24), proposal(TOPIC)
    assert newer["window_end"] > older["window_end"]
    assert proposal_status(newer, TOPIC, newer["window_end"]) == "pending"
    assert proposal_status(older, TOPIC, newer["window_end"]) == "superseded"


# --- the CLI's checks that need no Kafka -----------------------------------------------------


def test_apply_validates_the_file_before_touching_kafka(tmp_path: Path) -> None:
    f = tmp_path / "cal.yaml"
    bad = doc(("n-a03/pm25", [{**V1, "coefficients": {"gain": "high", "offset": 0}}]))
    f.write_text(yaml.safe_dump(bad))
    # port 1 has no broker: the file's error comes first, exit 1
    result = CliRunner().invoke(main, ["calibration", "apply", str(f), "--port-base", "1"])
    assert result.exit_code == 1
    assert f"{f}: sensors[0].models[0].coefficients.gain: must be a number" in result.output
    bad = doc(("n-a03/pm25", [V1]))
    bad["drift"] = {"window_bins": 1}
    f.write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(main, ["calibration", "validate", str(f)])
    assert result.exit_code == 1 and f"{f}: drift.window_bins: must be an integer >= 3, got 1" in result.output


def test_accept_rejects_an_effective_from_without_zone() -> None:
    result = CliRunner().invoke(main, ["calibration", "accept", "cp-0", "--effective-from", "2026-12-24T00:00:00", "--port-base", "1"])
    assert result.exit_code == 2 and "has no zone offset" in result.output
