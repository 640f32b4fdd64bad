"""The structured access log: one JSON line per API request on the `switchboard.access` logger.

Written by a gateway observer from the `RequestRecord`. The client's key appears only as its id
(the configured key name), never its value. The logger writes bare JSON lines to stderr unless the
deployment configured handlers of its own for `switchboard.access`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from ..gateway import Gateway, RequestRecord

__all__ = ["ACCESS_LOGGER", "AccessLog", "access_entry"]

ACCESS_LOGGER = "switchboard.access"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def access_entry(record: RequestRecord) -> dict[str, Any]:
    usage = record.usage
    return {
        "ts": round(record.started_wall, 3),
        "request_id": record.request_id,
        "endpoint": record.endpoint,
        "key_id": record.key_id,
        "model": record.model,
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "error_type": record.error_type,
        "stream": record.stream,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "latency_ms": _ms(record.latency_s),
        "ttft_ms": _ms(record.first_token_s),
        "attempts": record.attempts,
        "fallback": record.fallback,
    }


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)
        if not self.logger.handlers:
            # A bare JSON line, not wrapped in the human log format of the root handler.
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
            self.logger.propagate = False
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO)

    def install(self, gateway: Gateway) -> None:
        gateway.observers.append(self.observe)

    def observe(self, record: RequestRecord) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("%s", orjson.dumps(access_entry(record)).decode())
