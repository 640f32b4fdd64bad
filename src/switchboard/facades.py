"""Endpoint facades: a named entry point that exposes chosen models or agents at a path prefix or
on a port of its own, with its own defaults, for clients that cannot be configured beyond a URL
(a voice assistant's custom-LLM endpoint, an agent CLI's OpenAI headend).

A facade changes only routing and defaults; errors, streaming, limits, usage and logs work as on
every other route:
- the request's `model`, when it names none (always, with `pin_model`), and its `stream` when it
  does not say; `defaults` fill the fields the request lacks; `limits` cap numeric fields (clamped,
  or a 400 with `on_limit: reject`);
- `models` bounds what the facade serves and lists (globs); other models are 404 there;
- `auth`: the gateway's keys (default), its own `keys` (each may use the facade's models), or
  `none` for a trusted network;
- `max_in_flight` (+ `queue`) bounds the requests in flight through the facade, streams included,
  on top of any agent's own limit; beyond the queue: 503.
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Any

from .access.auth import Principal
from .config import Config, FacadeConfig
from .errors import GatewayError, bad_request, model_not_found
from .routing.limits import Limiter

__all__ = ["Facade", "Facades"]

_STREAMING = frozenset({"/chat/completions", "/completions", "/messages", "/responses"})
# The request field that names the output bound, per API (for `limits.max_tokens`).
_INTEGER_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "max_output_tokens", "n"})


class Facade:
    __slots__ = ("config", "keys", "limiter", "name", "open_principal")

    def __init__(self, config: FacadeConfig) -> None:
        self.config = config
        self.name = config.name
        models = config.models or ["*"]
        # One caller per key (its own stored responses, body budget, usage rows), named by its position.
        self.keys = {hashlib.sha256(k.encode()).digest(): Principal(key_id=f"facade:{config.name}#{i}",
                                                                    name=config.name, models=list(models))
                     for i, k in enumerate(config.keys)}
        self.open_principal = Principal(key_id=f"facade:{config.name}", name=config.name, models=list(models))
        self.limiter = (Limiter("facade", config.name, config.max_in_flight, config.queue)
                        if config.max_in_flight is not None else None)

    def allows(self, model: str) -> bool:
        patterns = self.config.models
        return patterns is None or any(fnmatch.fnmatchcase(model, p) for p in patterns)

    def check_model(self, model: str) -> None:
        if not self.allows(model):
            raise model_not_found(model)

    def shape(self, body: dict[str, Any], endpoint: str) -> None:
        """The request body as this facade serves it: model, stream, defaults, limits."""
        config = self.config
        if config.model is not None and (config.pin_model or not body.get("model")):
            body["model"] = config.model
        if config.stream is not None and "stream" not in body and endpoint in _STREAMING:
            body["stream"] = config.stream
        for name, value in config.defaults.items():
            if name not in body:
                body[name] = value
        for name, limit in config.limits.items():
            value = body.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= limit:
                continue
            if config.on_limit == "reject":
                raise bad_request(f"`{name}` is at most {limit:g} on this endpoint.", param=name, code="invalid_value")
            body[name] = int(limit) if name in _INTEGER_FIELDS else limit


class Facades:
    """The configured facades, found by the port a request came in on or by its path prefix."""

    def __init__(self, config: Config) -> None:
        self.all = {name: Facade(f) for name, f in config.facades.items()}
        self.by_port = {f.config.port: f for f in self.all.values() if f.config.port is not None}
        self.by_prefix = sorted(((f.config.prefix, f) for f in self.all.values() if f.config.prefix is not None),
                                key=lambda item: len(item[0]), reverse=True)

    def for_request(self, port: int | None, path: str) -> tuple[Facade | None, str]:
        """The facade of a request and its path within the facade (the prefix removed)."""
        facade = self.by_port.get(port) if port is not None else None
        if facade is not None:
            return facade, path
        for prefix, candidate in self.by_prefix:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return candidate, path[len(prefix):] or "/"
        return None, path

    @staticmethod
    def principal(facade: Facade, token: str | None) -> Principal | None:
        """The caller of a facade with its own auth (`keys` or `none`); None when it uses the gateway's."""
        if facade.config.auth == "none":
            return facade.open_principal
        if facade.config.auth != "keys":
            return None
        principal = facade.keys.get(hashlib.sha256(token.encode()).digest()) if token else None
        if principal is None:
            raise GatewayError(401, "Incorrect API key provided for this endpoint.", "authentication_error",
                               code="invalid_api_key", retryable=False)
        return principal
