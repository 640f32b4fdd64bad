"""Token counting against Anthropic upstreams: `POST {base_url}/v1/messages/count_tokens`.

Kept apart from the Anthropic chat adapter: only the `/v1/messages/count_tokens` headend uses it, for
models routed to a provider of `type: anthropic`. The body is already in Anthropic's format, so it
goes upstream as is, with the upstream model name. One pooled HTTP client per such provider,
opened on first use and closed with the gateway.
"""

from __future__ import annotations

from typing import Any

from ..config import ProviderConfig
from ..hub import UpstreamResult
from .base import HttpUpstream

__all__ = ["AnthropicTokenCounter", "TokenCounters"]


class AnthropicTokenCounter:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.http = HttpUpstream(config)
        base = config.base_url.rstrip("/")
        # base_url is the SDK-style root (https://api.anthropic.com); tolerate one that ends in /v1.
        self.url = (base[:-3] if base.endswith("/v1") else base) + "/v1/messages/count_tokens"
        self._secrets = tuple(k.value for k in config.keys)

    async def count_tokens(self, body: dict[str, Any], model: str, key: str | None,
                           beta: str | None = None) -> UpstreamResult:
        await self.http.start()
        headers = {"Content-Type": "application/json", "anthropic-version": self.config.anthropic_version,
                   **self.config.headers}
        if key:
            headers["x-api-key"] = key
        if beta:
            headers["anthropic-beta"] = beta
        resp = await self.http.post(self.url, {**body, "model": model}, headers, False, self._secrets)
        request_id = resp.headers.get("request-id")
        return UpstreamResult(await self.http.read_json(resp), request_id)

    async def aclose(self) -> None:
        await self.http.aclose()


class TokenCounters:
    """The counters of every Anthropic provider of one gateway, by provider name."""

    def __init__(self, providers: dict[str, ProviderConfig]) -> None:
        self._by_name = {name: AnthropicTokenCounter(cfg) for name, cfg in providers.items()
                         if cfg.type == "anthropic"}

    def get(self, provider: str) -> AnthropicTokenCounter | None:
        return self._by_name.get(provider)

    def propagate_traces(self) -> None:
        """Tracing is configured: count requests carry the attempt's `traceparent` too."""
        for counter in self._by_name.values():
            counter.http.propagate = True

    async def aclose(self) -> None:
        for counter in self._by_name.values():
            await counter.aclose()
