"""Webhook signatures: HMAC-SHA256 over "<unix seconds>.<body>", and their verification.

Header format (one line, like Stripe's): `X-Jointwatch-Signature: t=1700000000,v1=<hex>`.
The timestamp is signed too, so a captured request cannot be replayed after the
tolerance window; `X-Jointwatch-Delivery` is stable across retries so the
receiver can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Jointwatch-Signature"
DELIVERY_HEADER = "X-Jointwatch-Delivery"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """The request is not authentic (missing, malformed, wrong or stale signature)."""


def delivery_id(alert_id: str, responder_id: str, role: str) -> str:
    """Same alert, responder and role give the same id, on every retry and every router."""
    return hashlib.sha256(f"{alert_id}\x1f{responder_id}\x1f{role}".encode()).hexdigest()[:32]


def _mac(body: bytes, key: bytes, timestamp: int) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, key: bytes, timestamp: int) -> str:
    """The signature header value for a body sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_mac(body, key, timestamp)}"


def signed_headers(body: bytes, key: bytes, delivery: str, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, key, timestamp),
        DELIVERY_HEADER: delivery,
    }


def verify(body: bytes, header: str | None, key: bytes, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> int:
    """Check a signature header against the body; return its timestamp or raise SignatureError."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header: {part.strip()!r} is not name=value")
        fields.setdefault(name, []).append(value)
    if len(fields.get("t", [])) != 1 or not fields["t"][0].isdigit():
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: needs exactly one t=<unix seconds>")
    if not fields.get("v1"):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: no v1=<hex> signature")
    timestamp = int(fields["t"][0])
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise SignatureError(f"stale signature: timestamp {timestamp} is {age:+.0f} s from now (tolerance {tolerance_s:.0f} s)")
    expected = _mac(body, key, timestamp)
    # Several v1 values are allowed so a sender can sign with old and new key during rotation.
    if not any(hmac.compare_digest(expected, candidate) for candidate in fields["v1"]):
        raise SignatureError("signature mismatch: body or key differs")
    return timestamp
