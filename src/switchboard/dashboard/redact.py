"""Secrets taken out of request and response bodies before the dashboard keeps them (`observability.log_bodies`).

Values under keys that name a secret (`api_key`, `authorization`, `password`, `secret`, `token`...) are
replaced whole; in every other string, anything shaped like a known credential (OpenAI / Anthropic /
Switchboard `sk-` keys, AWS access key ids, GitHub and Slack tokens, `Bearer ...`, JWTs) is replaced.
A body is cut to `MAX_BODY_CHARS` of JSON after redaction.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["MAX_BODY_CHARS", "REDACTED", "redact", "redacted_body", "redacted_text"]

REDACTED = "[REDACTED]"
MAX_BODY_CHARS = 32 * 1024
_SECRET_KEY = re.compile(r"(api[-_]?key|authorization|password|passwd|secret|token|credential|cookie)", re.I)
_SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|sk-ant-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})")


def redacted_text(text: str) -> str:
    return _SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any, depth: int = 0) -> Any:
    """`value` (parsed JSON) with its secrets replaced; nesting past 64 levels is dropped."""
    if depth > 64:
        return REDACTED
    if isinstance(value, str):
        return redacted_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                else redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    return value


def redacted_body(value: Any) -> Any:
    """A body for display: redacted, and as cut JSON text when it is longer than MAX_BODY_CHARS."""
    if isinstance(value, bytes | bytearray):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return redacted_text(bytes(value[:MAX_BODY_CHARS]).decode("utf-8", "replace"))
    clean = redact(value)
    text = orjson.dumps(clean).decode()
    if len(text) <= MAX_BODY_CHARS:
        return clean
    return text[:MAX_BODY_CHARS] + f"...(truncated, {len(text)} chars)"
