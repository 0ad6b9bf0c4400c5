"""Kling's two authentication schemes, checked against the sandbox clock.

`Authorization: Bearer <token>` where the token is either an HS256 JWT (it starts with
"eyJ" and has two dots) signed with the secret key of the access key in `iss`, or the static
API key. Returns Kling's error code, or None when the caller is authenticated.
"""

from __future__ import annotations

import hmac

import jwt

from kling_tui.sandbox.config import SandboxConfig


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def check_authorization(header: str | None, config: SandboxConfig, now: float) -> int | None:
    if header is None or not header.strip():
        return 1001
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return 1002
    token = parts[1]
    if not looks_like_jwt(token):
        if config.api_key and hmac.compare_digest(token.encode(), config.api_key.encode()):
            return None
        return 1000
    return _check_jwt(token, config, now)


def _check_jwt(token: str, config: SandboxConfig, now: float) -> int | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return 1002
    if claims.get("iss") != config.access_key:
        return 1000
    try:
        # Times are checked below against the sandbox clock, not the host's.
        claims = jwt.decode(
            token,
            config.secret_key,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp"]},
        )
    except jwt.PyJWTError:
        return 1000
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not isinstance(exp, (int, float)) or (nbf is not None and not isinstance(nbf, (int, float))):
        return 1000
    if nbf is not None and nbf > now:
        return 1003
    if exp <= now:
        return 1004
    return None
