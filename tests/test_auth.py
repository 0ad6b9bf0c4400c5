"""Authentication: the JWT as an independent decoder sees it, the API key, and re-signing on 1003/1004."""

from __future__ import annotations

import time

import jwt
import pytest

from kling_tui.api.auth import ApiKeyAuth, Credentials, JwtAuth, MissingCredentials, auth_from
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import KlingError
from kling_tui.api.types import GenerationRequest
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_API_KEY, DEFAULT_SECRET_KEY

SECRET = "a-secret-key-that-is-long-enough-for-hs256"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_of(auth: JwtAuth) -> str:
    header = auth.authorization_header()
    assert header.startswith("Bearer ")
    return header.removeprefix("Bearer ")


def test_jwt_has_the_exact_header_and_claims():
    clock = FakeClock(1_700_000_000.4)
    token = token_of(JwtAuth("my-access-key", SECRET, clock=clock))

    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims == {"iss": "my-access-key", "exp": 1_700_000_000 + 1800, "nbf": 1_700_000_000 - 5}


def test_jwt_is_valid_now_for_an_independent_decoder():
    token = token_of(JwtAuth("ak", SECRET))
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["iss"] == "ak"
    assert 1790 <= claims["exp"] - time.time() <= 1800


def test_jwt_signed_with_another_secret_is_refused_by_the_decoder():
    token = token_of(JwtAuth("ak", SECRET))
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-key-also-long-enough-for-hs256", algorithms=["HS256"])


def test_jwt_is_cached_then_re_signed_before_it_expires():
    clock = FakeClock()
    auth = JwtAuth("ak", SECRET, clock=clock)
    first = token_of(auth)

    clock.now += 1800 - 300 - 1  # still outside the refresh margin
    assert token_of(auth) == first
    assert auth.signed_count == 1

    clock.now += 1  # now within 300 s of exp: a new token, well before the old one expires
    second = token_of(auth)
    assert second != first
    assert auth.signed_count == 2
    claims = jwt.decode(second, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims["exp"] == int(clock.now) + 1800


def test_invalidate_forces_a_new_token():
    clock = FakeClock()
    auth = JwtAuth("ak", SECRET, clock=clock)
    first = token_of(auth)
    clock.now += 10
    auth.invalidate()
    assert token_of(auth) != first
    assert auth.signed_count == 2


def test_a_clock_that_jumps_back_gets_a_new_token():
    clock = FakeClock()
    auth = JwtAuth("ak", SECRET, clock=clock)
    token_of(auth)
    clock.now -= 3600
    claims = jwt.decode(
        token_of(auth), SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims["nbf"] == int(clock.now) - 5


def test_api_key_is_sent_as_a_bearer_token():
    assert ApiKeyAuth("key-123").authorization_header() == "Bearer key-123"


def test_secrets_never_show_in_repr_or_str():
    creds = Credentials("access-visible?", "secret-value-xyz", "api-key-value-xyz")
    auth = JwtAuth("access-visible?", "secret-value-xyz-long-enough-for-hs256-hmac")
    token = token_of(auth)
    for text in (repr(creds), str(creds), repr(auth), str(auth), repr(ApiKeyAuth("api-key-value-xyz"))):
        assert "secret-value" not in text
        assert "api-key-value" not in text
        assert token not in text
    assert "secret_key=set" in repr(creds)


def test_auth_from_picks_a_scheme_or_says_what_is_missing():
    assert isinstance(auth_from(Credentials(api_key="k")), ApiKeyAuth)
    assert isinstance(auth_from(Credentials("ak", SECRET)), JwtAuth)
    # The API key wins: it cannot fail on clock skew.
    assert isinstance(auth_from(Credentials("ak", SECRET, "k")), ApiKeyAuth)
    with pytest.raises(MissingCredentials, match="KLING_API_KEY"):
        auth_from(Credentials())
    with pytest.raises(MissingCredentials, match="no secret key"):
        auth_from(Credentials(access_key="ak"))
    with pytest.raises(MissingCredentials, match="no access key"):
        auth_from(Credentials(secret_key=SECRET))


def test_credentials_from_environment():
    env = {"KLING_ACCESS_KEY": " ak ", "KLING_SECRET_KEY": SECRET, "KLING_API_KEY": ""}
    creds = Credentials.from_env(env)
    assert (creds.access_key, creds.secret_key, creds.api_key) == ("ak", SECRET, None)
    assert Credentials.from_env({}).is_empty


# -- against the sandbox -------------------------------------------------------------------


async def test_sandbox_accepts_both_schemes(sandbox):
    for auth in (JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), ApiKeyAuth(DEFAULT_API_KEY)):
        async with KlingClient(sandbox.base_url, auth, backoff=0.01) as client:
            task = await client.create(GenerationRequest(prompt="a lighthouse"))
            assert (await client.get(task.task_id)).task_id == task.task_id
    assert sandbox.state.counters()["auth_failed"] == 0


async def test_wrong_secret_is_1000_and_the_secret_stays_out_of_the_error(sandbox):
    secret = "wrong-secret-key-long-enough-for-hs256-hmac"
    async with KlingClient(sandbox.base_url, JwtAuth(DEFAULT_ACCESS_KEY, secret), backoff=0.01) as client:
        with pytest.raises(KlingError) as caught:
            await client.list()
    err = caught.value
    assert (err.code, err.http_status, err.retryable) == (1000, 401, False)
    assert secret not in str(err) and secret not in repr(err)


async def test_wrong_api_key_is_refused(sandbox):
    async with KlingClient(sandbox.base_url, ApiKeyAuth("not-the-key"), backoff=0.01) as client:
        with pytest.raises(KlingError) as caught:
            await client.list()
    assert caught.value.code == 1000
    assert "not-the-key" not in str(caught.value)


async def test_token_expired_on_the_server_clock_is_re_signed_and_sent_once_more(sandbox):
    offset = [0.0]
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, clock=lambda: time.time() + offset[0])
    async with KlingClient(sandbox.base_url, auth, backoff=0.01) as client:
        await client.list()
        assert auth.signed_count == 1
        # Our clock moved a little (the cached token still looks fresh to us) while the
        # server's moved past the token's exp: the server answers 1004.
        offset[0] = 100
        sandbox.state.clock.advance(1850)
        tasks = await client.list()

    assert tasks == []
    assert auth.signed_count == 2
    assert client.stats.resigns == 1
    assert sandbox.state.counters()["auth_failed"] == 1


async def test_token_not_yet_valid_is_re_signed_once_then_reported(sandbox):
    # Our clock runs a minute ahead of the server's: nbf is in the server's future (1003).
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, clock=lambda: time.time() + 60)
    async with KlingClient(sandbox.base_url, auth, backoff=0.01) as client:
        with pytest.raises(KlingError) as caught:
            await client.list()

    assert (caught.value.code, caught.value.http_status) == (1003, 401)
    assert auth.signed_count == 2  # re-signed exactly once
    assert sandbox.state.counters()["auth_failed"] == 2
