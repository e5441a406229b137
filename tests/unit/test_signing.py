"""Webhook signatures: round trip, and every way a request can fail to be authentic."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from alerts.signing import DELIVERY_HEADER, SIGNATURE_HEADER, SignatureError, delivery_id, sign, signed_headers, verify

KEY = b"k" * 32
BODY = b'{"alert_id":"a-1","tier":"red"}'
NOW = 1_700_000_000


def test_round_trip() -> None:
    headers = signed_headers(BODY, KEY, "d-1", now=NOW)
    assert headers[DELIVERY_HEADER] == "d-1"
    assert headers[SIGNATURE_HEADER].startswith(f"t={NOW},v1=")
    assert verify(BODY, headers[SIGNATURE_HEADER], KEY, now=NOW + 10) == NOW


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(KEY, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, KEY, NOW) == f"t={NOW},v1={expected}"


def test_tampered_body() -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verify(BODY.replace(b"red", b"green"), sign(BODY, KEY, NOW), KEY, now=NOW)


def test_wrong_key() -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verify(BODY, sign(BODY, b"other", NOW), KEY, now=NOW)


def test_tampered_timestamp() -> None:
    forged = sign(BODY, KEY, NOW).replace(f"t={NOW}", f"t={NOW + 1}")
    with pytest.raises(SignatureError, match="mismatch"):
        verify(BODY, forged, KEY, now=NOW)


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301])
def test_stale_or_future_timestamp(now: int) -> None:
    with pytest.raises(SignatureError, match="stale"):
        verify(BODY, sign(BODY, KEY, NOW), KEY, tolerance_s=300, now=now)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "not name=value"),
        ("v1=abc", "t=<unix seconds>"),
        ("t=abc,v1=abc", "t=<unix seconds>"),
        (f"t={NOW},t={NOW},v1=abc", "exactly one"),
        (f"t={NOW}", "no v1"),
    ],
)
def test_malformed_headers(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(BODY, header, KEY, now=NOW)


def test_any_of_several_signatures_may_match_during_key_rotation() -> None:
    old = sign(BODY, b"old-key", NOW).split("v1=")[1]
    header = f"{sign(BODY, KEY, NOW)},v1={old}"
    assert verify(BODY, header, b"old-key", now=NOW) == NOW


def test_delivery_id_is_deterministic_and_distinguishes_roles_and_responders() -> None:
    a = delivery_id("alert-1", "north-duty", "lead")
    assert a == delivery_id("alert-1", "north-duty", "lead")
    assert len({a, delivery_id("alert-1", "north-duty", "assist"), delivery_id("alert-1", "central-duty", "lead"), delivery_id("alert-2", "north-duty", "lead")}) == 4
