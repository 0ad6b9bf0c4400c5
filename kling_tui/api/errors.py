"""Kling's error codes and the one exception type the client raises for API failures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeInfo:
    http_status: int
    meaning: str
    retry: str  # "no", "yes", "reads" (reads yes, a create only after a lookup), "resign"


# kling-protocol.md, "Error codes".
CODES: dict[int, CodeInfo] = {
    1000: CodeInfo(401, "Authentication failed", "no"),
    1001: CodeInfo(401, "Authorization header is empty", "no"),
    1002: CodeInfo(401, "Authorization header is invalid", "no"),
    1003: CodeInfo(401, "Authorization token is not yet valid", "resign"),
    1004: CodeInfo(401, "Authorization token has expired", "resign"),
    1100: CodeInfo(429, "Account exception", "no"),
    1101: CodeInfo(429, "Account in arrears", "no"),
    1102: CodeInfo(429, "Account balance not enough", "no"),
    1103: CodeInfo(403, "No permission for this API or model", "no"),
    1200: CodeInfo(400, "Invalid request parameters", "no"),
    1201: CodeInfo(400, "Invalid parameter value", "no"),
    1202: CodeInfo(404, "Invalid request method", "no"),
    1203: CodeInfo(404, "Requested resource does not exist", "no"),
    1300: CodeInfo(400, "Blocked by platform policy", "no"),
    1301: CodeInfo(400, "Content security policy triggered", "no"),
    1302: CodeInfo(429, "Too many requests", "yes"),
    1303: CodeInfo(429, "Parallel task over resource pack limit", "yes"),
    1304: CodeInfo(429, "IP whitelist policy", "no"),
    5000: CodeInfo(500, "Internal server error", "reads"),
    5001: CodeInfo(503, "Service temporarily unavailable", "yes"),
    5002: CodeInfo(504, "Internal server timeout", "reads"),
}

# A create that got one of these may have created the task: look it up before re-sending.
CREATE_AMBIGUOUS = frozenset({5000, 5002})


def http_status_for(code: int) -> int:
    info = CODES.get(code)
    return info.http_status if info else 500


class KlingError(Exception):
    """An API or network failure.

    `code` is Kling's code (None for network failures and non-JSON answers), `retryable`
    says whether sending the same request again is safe.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.retryable = retryable

    def __str__(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(f"Kling {self.code}")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        head = f"[{', '.join(parts)}] " if parts else ""
        tail = f" (request_id {self.request_id})" if self.request_id else ""
        return f"{head}{self.message}{tail}"

    @classmethod
    def from_response(
        cls, http_status: int, code: int | None, message: str | None, request_id: str | None, *, is_read: bool
    ) -> KlingError:
        info = CODES.get(code) if code is not None else None
        if info is None:
            retry = http_status >= 500 and is_read
        elif info.retry == "yes":
            retry = True
        elif info.retry == "reads":
            retry = is_read
        else:
            retry = False
        text = message or (info.meaning if info else f"HTTP {http_status}")
        return cls(text, http_status=http_status, code=code, request_id=request_id, retryable=retry)


class NetworkError(KlingError):
    """The request did not get a usable answer (timeout, dropped connection, bad JSON)."""

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message, retryable=True)
        # True when the server may have received the request (a create may exist).
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class Problem:
    """One broken validation rule: the field it concerns and the rule, in words."""

    field: str
    rule: str
    code: int = 1201  # Kling's code the service answers with: 1200 shape, 1201 value, 1203 model

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


class InvalidRequest(ValueError):
    """A request that breaks the spec's rules; nothing was sent."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
