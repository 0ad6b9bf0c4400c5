"""Standard Webhooks signing and verification of callbacks."""

from __future__ import annotations

import pytest

from kling_tui.api.webhooks import generate_secret, sign, signed_headers, verify

# The published test vector of kling-protocol.md.
SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
MSG_ID = "9876543210"
TIMESTAMP = 1781080794
BODY = b'{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}'
SIGNATURE = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def vector_headers(signature: str = SIGNATURE) -> dict[str, str]:
    return {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": signature}


def test_published_vector_signs_as_documented():
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_published_vector_verifies():
    verify(SECRET, vector_headers(), BODY, now=TIMESTAMP + 10)


def test_any_of_several_signatures_during_rotation_is_enough():
    verify(SECRET, vector_headers(f"v1,c29tZXRoaW5nIGVsc2U= {SIGNATURE}"), BODY, now=TIMESTAMP)


def test_header_names_are_case_insensitive_in_plain_dicts():
    headers = {k.title(): v for k, v in vector_headers().items()}
    verify(SECRET, headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    "secret, headers, body, now, reason",
    [
        (SECRET, vector_headers(), BODY + b" ", TIMESTAMP, "no matching"),
        (generate_secret(), vector_headers(), BODY, TIMESTAMP, "no matching"),
        (SECRET, vector_headers("v2,abc"), BODY, TIMESTAMP, "no matching"),
        (SECRET, vector_headers(), BODY, TIMESTAMP + 301, "away from now"),
        (SECRET, vector_headers(), BODY, TIMESTAMP - 301, "away from now"),
        (SECRET, {"webhook-id": MSG_ID, "webhook-signature": SIGNATURE}, BODY, TIMESTAMP, "missing webhook-timestamp"),
        (SECRET, {**vector_headers(), "webhook-timestamp": "soon"}, BODY, TIMESTAMP, "not an integer"),
    ],
    ids=["tampered-body", "other-secret", "unknown-version", "too-old", "too-new", "missing-header", "bad-timestamp"],
)
def test_bad_callbacks_are_rejected_with_a_reason(secret, headers, body, now, reason):
    with pytest.raises(ValueError, match=reason):
        verify(secret, headers, body, now=now)


def test_signed_headers_round_trip_with_a_fresh_and_a_hand_typed_secret():
    for secret in (generate_secret(), "not base64 at all!"):
        headers = signed_headers(secret, "msg_1", 1_700_000_000, b"{}")
        verify(secret, headers, b"{}", now=1_700_000_000)
