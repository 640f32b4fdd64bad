"""The one error type of the gateway and its OpenAI JSON envelope.

Every failure on the request path is raised as a `GatewayError`; the HTTP layer turns it into the
OpenAI shape `{"error": {"message", "type", "param", "code"}}` with the status the SDKs map to
exception classes. Upstream failures are translated into it once, in the provider adapters.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = [
    "GatewayError",
    "bad_request",
    "internal_error",
    "model_not_found",
    "redact_secrets",
    "unencodable_request",
    "upstream_error",
]

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class GatewayError(Exception):
    """An error with everything needed to answer the client in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        self.param = param
        self.code = code
        self.headers = headers or {}
        # Whether another attempt (retry or fallback) could succeed; the router reads this.
        self.retryable = retryable if retryable is not None else (status in (408, 409, 429) or status >= 500)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.message!r}, type={self.type!r}, code={self.code!r})"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", param=param, code=code)


# The JSON encoder writes at most this many levels of nested arrays and objects (the decoder reads
# more), so a request nested deeper cannot be forwarded.
MAX_JSON_DEPTH = 254


def _deeper_than(value: Any, levels: int) -> bool:
    if value.__class__ is not dict and value.__class__ is not list:
        return False
    if levels <= 0:
        return True
    return any(_deeper_than(child, levels - 1) for child in (value.values() if value.__class__ is dict else value))


def unencodable_request(body: Any, exc: Exception, where: str | None = None) -> GatewayError:
    """The 400 for a request the JSON encoder could not write (`exc`): its body came from the client.
    Names `where`, else the top-level field of `body` nested too deeply to be written."""
    param = where
    if param is None and isinstance(body, dict):
        param = next((name for name, value in body.items() if _deeper_than(value, MAX_JSON_DEPTH - 1)), None)
    if param is None:
        return bad_request(f"The request cannot be forwarded as JSON: {exc}.", code="invalid_value")
    return bad_request(f"Invalid '{param}': arrays and objects nest deeper than the {MAX_JSON_DEPTH} levels a "
                       "request can be forwarded with.", param=param, code="invalid_value")


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        param="model",
        code="model_not_found",
    )


def internal_error(message: str = "Internal server error") -> GatewayError:
    return GatewayError(500, message, "api_error", retryable=False)


# Provider credentials look like these; an upstream that echoes a key (OpenAI does, masked, in its
# 401 message) must not leak it to our clients.
_SECRET_PATTERNS = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|sk_[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)")


def redact_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    return _SECRET_PATTERNS.sub("[REDACTED]", text)


def upstream_error(
    status: int,
    body: Any,
    provider: str,
    secrets: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
) -> GatewayError:
    """Map an upstream error response to the same status with the upstream's message preserved."""
    message: str | None = None
    err_type: str | None = None
    param: str | None = None
    code: str | None = None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]  # Google's APIs (Gemini's OpenAI endpoint) wrap the error object in a list
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            raw = err.get("message")
            message = raw if isinstance(raw, str) else None
            if isinstance(raw, dict | list) and raw:  # Mistral's validation errors: a detail object
                message = orjson.dumps(raw).decode()[:2000]
            err_type = err.get("type") if isinstance(err.get("type"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
            raw_code = err.get("code")
            code = str(raw_code) if raw_code is not None else None
        elif isinstance(err, str):
            message = err
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:2000]
    if not message:
        message = f"Upstream provider `{provider}` returned HTTP {status}"
    message = redact_secrets(message, secrets)
    if status < 400 or status > 599:
        status = 502
    out_headers: dict[str, str] = {}
    if headers:
        lowered = {k.lower(): v for k, v in headers.items()}  # servers send `Retry-After` as often as not
        for name in ("retry-after", "retry-after-ms"):
            if name in lowered:
                out_headers[name] = lowered[name]
    return GatewayError(status, message, err_type, param=param, code=code, headers=out_headers)
