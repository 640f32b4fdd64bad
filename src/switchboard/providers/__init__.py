"""Provider adapters: each converts hub <-> one upstream format and owns its connection pool."""

from __future__ import annotations

from ..config import ProviderConfig
from .base import ChatProvider
from .openai import OpenAIProvider

__all__ = ["build_provider"]


def build_provider(config: ProviderConfig) -> ChatProvider:
    if config.type == "openai":
        return OpenAIProvider(config)
    if config.type == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(config)
    if config.type == "azure":
        from .azure import AzureProvider

        return AzureProvider(config)
    raise ValueError(f"unknown provider type {config.type!r}")
