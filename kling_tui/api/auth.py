"""Kling's two ways to authenticate: a short-lived HS256 JWT (access + secret key) or a static API key.

Both end up as `Authorization: Bearer <token>`. Nothing here ever puts a key or a token in a
repr, a str or an exception text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import jwt

ENV_ACCESS_KEY = "KLING_ACCESS_KEY"
ENV_SECRET_KEY = "KLING_SECRET_KEY"
ENV_API_KEY = "KLING_API_KEY"

# kling-protocol.md: exp = now + 1800, nbf = now - 5 (a little slack for the server's clock).
JWT_LIFETIME = 1800
JWT_NOT_BEFORE_SLACK = 5


class MissingCredentials(ValueError):
    """No usable credentials; the message says what to set."""


def _mark(value: str | None) -> str:
    return "set" if value else "unset"


@dataclass(frozen=True, repr=False)
class Credentials:
    """Keys for the Kling API; any may be absent. Never printed."""

    access_key: str | None = None
    secret_key: str | None = None
    api_key: str | None = None

    def __repr__(self) -> str:
        return (
            f"Credentials(access_key={_mark(self.access_key)}, secret_key={_mark(self.secret_key)}, "
            f"api_key={_mark(self.api_key)})"
        )

    __str__ = __repr__

    @property
    def has_key_pair(self) -> bool:
        return bool(self.access_key and self.secret_key)

    @property
    def is_empty(self) -> bool:
        return not (self.access_key or self.secret_key or self.api_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = (env.get(name) or "").strip()
            return value or None

        return cls(get(ENV_ACCESS_KEY), get(ENV_SECRET_KEY), get(ENV_API_KEY))


class Auth(Protocol):
    """What the client needs of a credential: a header to send, and a way to drop a stale one."""

    scheme: str

    def authorization_header(self) -> str: ...

    def invalidate(self) -> None: ...


class JwtAuth:
    """Signs `{"iss", "exp", "nbf"}` with the secret key; caches the token and re-signs it
    `refresh_margin` seconds before it expires (or at once after `invalidate()`)."""

    scheme = "jwt"

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        lifetime: int = JWT_LIFETIME,
        refresh_margin: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not access_key or not secret_key:
            raise MissingCredentials("a JWT needs both an access key and a secret key")
        if not 0 <= refresh_margin < lifetime:
            raise ValueError("refresh_margin must be at least 0 and less than lifetime")
        self.access_key = access_key
        self._secret_key = secret_key
        self.lifetime = lifetime
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._signed_at = 0
        self._expires_at = 0
        self.signed_count = 0  # how many tokens were signed (tests and diagnostics)

    def __repr__(self) -> str:
        return f"JwtAuth(lifetime={self.lifetime}, refresh_margin={self.refresh_margin})"

    @property
    def expires_at(self) -> int | None:
        """`exp` of the cached token, if any."""
        return self._expires_at if self._token else None

    def token(self) -> str:
        now = int(self._clock())
        fresh = self._token is not None and self._signed_at <= now < self._expires_at - self.refresh_margin
        if not fresh:
            self._sign(now)
        assert self._token is not None
        return self._token

    def _sign(self, now: int) -> None:
        claims = {"iss": self.access_key, "exp": now + self.lifetime, "nbf": now - JWT_NOT_BEFORE_SLACK}
        self._token = jwt.encode(claims, self._secret_key, algorithm="HS256", headers={"alg": "HS256", "typ": "JWT"})
        # A clock that jumps back before the signing time also forces a new token (see token()).
        self._signed_at = now
        self._expires_at = now + self.lifetime
        self.signed_count += 1

    def invalidate(self) -> None:
        """Forget the cached token; the next request signs a new one."""
        self._token = None

    def authorization_header(self) -> str:
        return f"Bearer {self.token()}"


class ApiKeyAuth:
    """The static API key, sent as a bearer token."""

    scheme = "api_key"

    def __init__(self, api_key: str) -> None:
        if not api_key:
            raise MissingCredentials("the API key is empty")
        self._api_key = api_key

    def __repr__(self) -> str:
        return "ApiKeyAuth()"

    def invalidate(self) -> None:
        """A static key cannot be refreshed; present for symmetry with JwtAuth."""

    def authorization_header(self) -> str:
        return f"Bearer {self._api_key}"


def auth_from(credentials: Credentials, *, clock: Callable[[], float] = time.time) -> JwtAuth | ApiKeyAuth:
    """The authentication to use: the API key when there is one, else the access/secret key pair.

    The API key wins because a static key cannot fail on clock skew (codes 1003/1004).
    """
    if credentials.api_key:
        return ApiKeyAuth(credentials.api_key)
    if credentials.has_key_pair:
        return JwtAuth(credentials.access_key or "", credentials.secret_key or "", clock=clock)
    if credentials.access_key and not credentials.secret_key:
        raise MissingCredentials(
            f"an access key is set but no secret key: set {ENV_SECRET_KEY} or add it to the config"
        )
    if credentials.secret_key and not credentials.access_key:
        raise MissingCredentials(f"a secret key is set but no access key: set {ENV_ACCESS_KEY} or add it to the config")
    raise MissingCredentials(
        f"no Kling credentials: set {ENV_API_KEY}, or {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or add them to the config"
    )
