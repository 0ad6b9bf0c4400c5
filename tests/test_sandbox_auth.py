"""Both authentication schemes and every 1000-1004 answer, checked on the sandbox clock."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_API_KEY, DEFAULT_SECRET_KEY, Sandbox, SandboxConfig

LIST = "/v1/images/generations"


def kling_jwt(
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    *,
    now: float | None = None,
    exp_in: int = 1800,
    nbf_in: int = -5,
) -> str:
    """Exactly as kling-protocol.md says: HS256, iss = access key, exp = now+1800, nbf = now-5."""
    now = int(time.time() if now is None else now)
    claims = {"iss": access_key, "exp": now + exp_in, "nbf": now + nbf_in}
    return jwt.encode(claims, secret_key, algorithm="HS256", headers={"alg": "HS256", "typ": "JWT"})


def ask(sb: Sandbox, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(sb.base_url + LIST, headers=headers, timeout=10)


def assert_refused(answer: httpx.Response, code: int) -> None:
    body = answer.json()
    assert (answer.status_code, body["code"]) == (401, code), body
    assert "data" not in body


def test_a_jwt_signed_as_documented_is_accepted(sandbox):
    token = kling_jwt()
    assert token.startswith("eyJ") and token.count(".") == 2
    answer = ask(sandbox, f"Bearer {token}")
    assert answer.status_code == 200
    assert answer.json()["data"] == []


def test_the_static_api_key_is_accepted(sandbox):
    assert ask(sandbox, f"Bearer {DEFAULT_API_KEY}").status_code == 200


@pytest.mark.parametrize(
    "authorization, code",
    [
        (None, 1001),
        ("", 1001),
        ("Token abc", 1002),
        ("Bearer", 1002),
        ("Bearer two words", 1002),
        ("Bearer eyJ.not-a.jwt", 1002),
        ("Bearer wrong-api-key", 1000),
    ],
)
def test_malformed_or_missing_credentials(sandbox, authorization, code):
    assert_refused(ask(sandbox, authorization), code)


def test_a_jwt_with_the_wrong_secret_or_an_unknown_access_key_fails(sandbox):
    assert_refused(ask(sandbox, f"Bearer {kling_jwt(secret_key='not-the-secret-but-long-enough-for-hs256')}"), 1000)
    assert_refused(ask(sandbox, f"Bearer {kling_jwt(access_key='someone-else')}"), 1000)


def test_a_jwt_from_the_future_is_not_yet_valid(sandbox):
    assert_refused(ask(sandbox, f"Bearer {kling_jwt(nbf_in=600)}"), 1003)


def test_a_jwt_expires_on_the_sandbox_clock(sandbox):
    token = kling_jwt(now=sandbox.state.clock.now())
    assert ask(sandbox, f"Bearer {token}").status_code == 200
    sandbox.state.clock.advance(1801)
    assert_refused(ask(sandbox, f"Bearer {token}"), 1004)
    assert sandbox.state.counters()["auth_failed"] == 1


def test_a_sandbox_without_an_api_key_accepts_only_jwts():
    with Sandbox(
        SandboxConfig(api_key=None, access_key="ak-2", secret_key="sk-2-a-second-secret-of-32-bytes-or-more")
    ) as sb:
        assert_refused(ask(sb, f"Bearer {DEFAULT_API_KEY}"), 1000)
        assert_refused(ask(sb, f"Bearer {kling_jwt()}"), 1000)
        assert ask(sb, f"Bearer {kling_jwt('ak-2', 'sk-2-a-second-secret-of-32-bytes-or-more')}").status_code == 200


def test_secrets_stay_out_of_reprs():
    config = SandboxConfig(secret_key="s3cr3t-value", api_key="api-k3y-value", webhook_secret="whsec_abc")
    text = repr(config) + repr(Sandbox(config))
    for secret in ("s3cr3t-value", "api-k3y-value", "whsec_abc"):
        assert secret not in text
