"""The bridge's validation and normalisation (pure), including agreement with the JSON Schema."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from connectors.clock_skew import ClockSkew
from connectors.normalize import MAX_PAYLOAD_BYTES, Rejected, _check_shape, normalize, normalize_message, parse_device_time
from schemas.models import validation_errors
from schemas.network import load_network, parse_network

NET = parse_network(
    {
        "version": 1,
        "regions": [{"id": "north", "timezone": "Europe/Berlin"}, {"id": "south", "timezone": "Asia/Shanghai"}],
        "stations": [
            {"id": "n-a01", "region": "north", "medium": "air", "lat": 52.5, "lon": 13.4, "parameters": ["pm25", "no2", "temp"]},
            {"id": "s-w01", "region": "south", "medium": "water", "lat": 31.2, "lon": 121.5, "river_km": 3, "parameters": ["nh3n", "ph"]},
        ],
    },
    Path("test-network.yaml"),
)
RECEIVED = int(datetime(2026, 11, 22, 10, 0, 5, tzinfo=timezone.utc).timestamp() * 1000)
T0 = int(datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc).timestamp() * 1000)


def msg(**doc) -> bytes:
    return json.dumps({"station_id": "n-a01", "seq": 7, "ts": "2026-11-22T10:00:00Z", "values": {"pm25": 35.5, "no2": 20}} | doc).encode()


def rejected(topic: str, payload: bytes) -> Rejected:
    with pytest.raises(Rejected) as info:
        normalize(topic, payload, NET, RECEIVED)
    return info.value


UP = "jw/v1/north/n-a01/up"


def test_valid_message_explodes_into_schema_valid_readings() -> None:
    readings = normalize(UP, msg(status={"no2": "M"}), NET, RECEIVED)
    assert [(r["parameter"], r["value"], r["status"]) for r in readings] == [("pm25", 35.5, "N"), ("no2", 20.0, "M")]
    for r in readings:
        assert validation_errors("reading", r) == []
        assert r["event_time"] == T0 and r["received_at"] == RECEIVED and r["region"] == "north"
        assert r["reading_id"] == f"n-a01/{r['parameter']}/{T0}"
        assert r["unit"] == {"pm25": "ug/m3", "no2": "ug/m3"}[r["parameter"]]
        assert (r["schema"], r["clock_corrected"], r["clock_offset_ms"]) == ("jw.reading.v2", False, 0)


def test_gateway_time_is_the_receive_time_when_present() -> None:
    (r, _) = normalize(UP, msg(gw_ts="2026-11-22T10:00:02.500Z"), NET, RECEIVED)
    assert r["received_at"] == T0 + 2500


@pytest.mark.parametrize(
    ("ts", "zone", "expected", "basis"),
    [
        ("2026-11-22T10:00:00Z", "Europe/Berlin", T0, "iso8601"),
        ("2026-11-22T18:00:00+08:00", "Europe/Berlin", T0, "iso8601"),
        (T0 / 1000, "Europe/Berlin", T0, "epoch_s"),
        (T0, "Europe/Berlin", T0, "epoch_ms"),
        ("2026-11-22 11:00:00", "Europe/Berlin", T0, "local"),  # CET, UTC+1 in November
        ("20261122180000", "Asia/Shanghai", T0, "local"),  # HJ 212 DataTime, UTC+8
        ("2026-07-01 12:00:00", "Europe/Berlin", int(datetime(2026, 7, 1, 10, tzinfo=timezone.utc).timestamp() * 1000), "local"),  # CEST
    ],
)
def test_device_time_forms(ts, zone, expected, basis) -> None:
    assert parse_device_time(ts, zone) == (expected, basis)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize(
    ("ts", "reference", "expected"),
    [
        # 2026-10-25, Europe/Prague: 03:00 CEST -> 02:00 CET, so 02:00..02:59 happens twice.
        ("2026-10-25 02:30:00", utc_ms(2026, 10, 25, 0, 30, 5), utc_ms(2026, 10, 25, 0, 30)),  # the first time (CEST)
        ("2026-10-25 02:30:00", utc_ms(2026, 10, 25, 1, 30, 5), utc_ms(2026, 10, 25, 1, 30)),  # the second time (CET)
        ("2026-10-25 02:30:00", None, utc_ms(2026, 10, 25, 0, 30)),  # no reference: the earlier
        ("2026-10-25 02:59:59", utc_ms(2026, 10, 25, 2, 10), utc_ms(2026, 10, 25, 1, 59, 59)),  # sent 10 min late: still the nearer
        # 2026-03-29: 02:00 CET -> 03:00 CEST, 02:00..02:59 never happens on a DST clock; a clock kept on
        # standard time shows it, and its reference says which reading was meant.
        ("2026-03-29 02:30:00", utc_ms(2026, 3, 29, 1, 30, 5), utc_ms(2026, 3, 29, 1, 30)),
        ("2026-03-29 02:30:00", utc_ms(2026, 3, 29, 0, 30, 5), utc_ms(2026, 3, 29, 0, 30)),
        ("2026-10-25 04:30:00", utc_ms(2026, 10, 25, 9, 0), utc_ms(2026, 10, 25, 3, 30)),  # unambiguous: the reference is not used
    ],
)
def test_daylight_saving_overlap_and_gap_resolve_to_the_reading_nearest_the_receive_time(ts, reference, expected) -> None:
    assert parse_device_time(ts, "Europe/Prague", reference) == (expected, "local")


def test_the_repeated_local_hour_gives_distinct_readings() -> None:
    # A local-time device reporting every 10 min through the autumn change: 12 distinct UTC
    # instants (and reading ids), though only 6 distinct local times.
    net = load_network(Path(__file__).resolve().parents[2] / "config" / "network.yaml")
    sid = "n-a04"
    times = [utc_ms(2026, 10, 25, 0, 0) + k * 600_000 for k in range(12)]
    readings = [
        normalize(f"jw/v1/north/{sid}/up", json.dumps({"station_id": sid, "ts": datetime.fromtimestamp(t / 1000, ZoneInfo("Europe/Prague"))
                  .strftime("%Y-%m-%d %H:%M:%S"), "values": {"pm25": 10.0}}).encode(), net, t + 2_000)[0]
        for t in times
    ]
    assert len({r["device_time"] for r in readings}) == 6
    assert [r["event_time"] for r in readings] == times
    assert len({r["reading_id"] for r in readings}) == 12


def test_local_time_uses_the_station_zone() -> None:
    (r, *_) = normalize(UP, msg(ts="2026-11-22 11:00:00"), NET, RECEIVED)
    assert (r["event_time"], r["time_basis"], r["device_time"]) == (T0, "local", "2026-11-22 11:00:00")


@pytest.mark.parametrize(
    ("topic", "payload", "code", "fragment"),
    [
        (UP, b"{not json", "malformed_json", "Expecting"),
        (UP, b"\xff\xfe", "malformed_json", ""),
        (UP, b"[1, 2]", "schema_violation", "must be an object"),
        (UP, msg(values={"pm25": "35"}), "schema_violation", "values/pm25: must be a number"),
        (UP, msg(values={"pm25": True}), "schema_violation", "values/pm25: must be a number"),
        (UP, msg(seq=-1), "schema_violation", "seq"),
        (UP, msg(extra=1), "schema_violation", "extra: unexpected property"),
        (UP, msg(status={"pm25": "X"}), "schema_violation", "status/pm25"),
        ("jw/v1/north/n-zz9/up", msg(station_id="n-zz9"), "unknown_station", "'n-zz9' is not in the registry"),
        ("jw/v1/south/s-w01/up", msg(), "station_mismatch", "payload of n-a01"),
        ("jw/v1/south/n-a01/up", msg(), "station_mismatch", "region north"),
        (UP, msg(values={"pm25": 99999}), "out_of_range", "pm25: 99999 ug/m3 outside the physical range [0.0, 2000.0]"),
        (UP, msg(values={"pm25": -1}), "out_of_range", "outside the physical range"),
        (UP, msg(values={"nh3n": 1}), "unknown_parameter", "nh3n: not measured by n-a01"),
        (UP, msg(values={"bogus": 1}), "unknown_parameter", "bogus"),
        (UP, msg(status={"temp": "N"}), "unknown_parameter", "status/temp: no such value"),
        (UP, msg(ts="yesterday noon"), "bad_timestamp", "neither ISO-8601"),
        (UP, msg(ts=0), "bad_timestamp", "implausible"),
        (UP, msg(ts="2026-11-30T00:00:00Z"), "bad_timestamp", "implausible"),
        (UP, msg(gw_ts="2026-11-22 10:00:00"), "bad_timestamp", "gw_ts"),
        ("jw/v1/north/n-a01/down", msg(), "bad_topic", "not jw/v1"),
        (UP, b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "oversized", f"> {MAX_PAYLOAD_BYTES}"),
    ],
)
def test_bad_input_is_rejected_with_a_precise_reason(topic, payload, code, fragment) -> None:
    rej = rejected(topic, payload)
    assert rej.code == code
    assert fragment in rej.detail


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=45))
payloads = st.fixed_dictionaries(
    {},
    optional={
        "station_id": st.one_of(st.sampled_from(["n-a01", "N-A01", "x", "a" * 40]), json_scalars),
        "seq": json_scalars,
        "ts": st.one_of(st.sampled_from(["2026-11-22T10:00:00Z", "short"]), json_scalars),
        "gw_ts": json_scalars,
        "values": st.one_of(st.dictionaries(st.sampled_from(["pm25", "no2", "x"]), json_scalars, max_size=3), json_scalars),
        "status": st.one_of(st.dictionaries(st.sampled_from(["pm25", "no2"]), st.sampled_from(["N", "D", "Q", 1]), max_size=2), json_scalars),
        "unexpected": json_scalars,
    },
)


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_hand_written_checks_agree_with_the_json_schema(doc) -> None:
    assert (_check_shape(doc) == []) == (validation_errors("device_payload", doc) == [])


SOUTH = "jw/v1/south/s-w01/up"
MINUTE = 60_000


def south(minute: int, ts: str | int | None = None, gw_delay_ms: int | None = 1500, **extra) -> bytes:
    """A message of s-w01 (Asia/Shanghai) measured at T0 + `minute`; by default its clock writes
    Shanghai wall time with a 'Z' (local time sent as UTC: 8 h fast)."""
    true = T0 + minute * MINUTE
    doc = {"station_id": "s-w01", "seq": minute, "values": {"nh3n": 0.5, "ph": 7.5}}
    doc["ts"] = ts if ts is not None else datetime.fromtimestamp(true / 1000 + 8 * 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if gw_delay_ms is not None:
        doc["gw_ts"] = datetime.fromtimestamp((true + gw_delay_ms) / 1000, timezone.utc).isoformat(timespec="milliseconds")
    return json.dumps(doc | extra).encode()


def test_local_time_sent_as_utc_is_corrected_and_flagged_keeping_device_time() -> None:
    clocks = ClockSkew()
    out = [normalize_message(SOUTH, south(m), NET, RECEIVED, clocks) for m in range(8)]
    healths = [h for _, h in out if h is not None]
    assert len(healths) == 1 and out[4][1] is healths[0]  # the 5th message establishes the estimate
    h = healths[0]
    assert validation_errors("device_health", h) == []
    assert (h["station_id"], h["region"], h["kind"], h["reference"], h["samples"]) == ("s-w01", "south", "clock_skew", "gateway", 5)
    assert (h["offset_ms"], h["applied_offset_ms"], h["reference_time"]) == (8 * 3_600_000 - 1500, 8 * 3_600_000 - 1000, T0 + 4 * MINUTE + 1500)
    for m, (readings, _) in enumerate(out):
        true = T0 + m * MINUTE
        device_ms = true + 8 * 3_600_000
        for r in readings:
            assert validation_errors("reading", r) == []
            assert r["clock_corrected"] and r["received_at"] == true + 1500
            assert r["device_time"] == south_ts(m) and r["time_basis"] == "iso8601"
            assert r["reading_id"] == f"s-w01/{r['parameter']}/{device_ms}"  # the device's time: stable for re-sent copies
            if m < 4:  # before the estimate: never after the gateway's receipt
                assert (r["event_time"], r["clock_offset_ms"]) == (true + 1500, 8 * 3_600_000 - 1500)
            else:
                assert (r["event_time"], r["clock_offset_ms"]) == (true + 1000, 8 * 3_600_000 - 1000)
                assert r["event_time"] == device_ms - r["clock_offset_ms"]


def south_ts(minute: int) -> str:
    return json.loads(south(minute))["ts"]


def test_without_gateway_time_the_bridge_receipt_is_the_reference() -> None:
    clocks = ClockSkew()
    for m in range(6):
        readings, health = normalize_message(SOUTH, south(m, ts=T0 + m * MINUTE - 10 * MINUTE, gw_delay_ms=None), NET, T0 + m * MINUTE + 800, clocks)
        assert readings[0]["received_at"] == T0 + m * MINUTE + 800
        if health is not None:
            assert (health["reference"], health["offset_ms"]) == ("bridge", -10 * MINUTE - 800)
    assert readings[0]["event_time"] == T0 + 5 * MINUTE + 1000 and readings[0]["time_basis"] == "epoch_ms"


def test_rejected_messages_never_reach_the_estimator() -> None:
    clocks = ClockSkew()
    for m in range(10):
        with pytest.raises(Rejected):
            normalize_message(SOUTH, south(m, values={"nh3n": -1.0}), NET, RECEIVED, clocks)
    assert clocks.estimate("s-w01") is None


def test_without_an_estimator_nothing_is_corrected() -> None:
    for m in range(8):
        (r, _) = normalize(SOUTH, south(m), NET, RECEIVED)
        assert (r["event_time"], r["clock_corrected"], r["clock_offset_ms"]) == (T0 + m * MINUTE + 8 * 3_600_000, False, 0)


def test_re_sent_copies_keep_their_id_and_event_time() -> None:
    clocks = ClockSkew()
    first = [normalize(SOUTH, south(m), NET, RECEIVED, clocks) for m in range(12)]
    again = [normalize(SOUTH, south(m), NET, RECEIVED, clocks) for m in range(6, 12)]  # store-and-forward re-sends
    for a, b in zip(first[6:], again):
        assert [(r["reading_id"], r["event_time"], r["clock_offset_ms"]) for r in a] == [(r["reading_id"], r["event_time"], r["clock_offset_ms"]) for r in b]
