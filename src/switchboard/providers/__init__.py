"""Provider adapters: each converts hub <-> one upstream format and owns its connection pool."""

from __future__ import annotations

from ..config import ConfigError, ProviderConfig
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
    if config.type == "bedrock":
        try:
            from .bedrock import BedrockProvider
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("botocore"):
                raise
            raise ConfigError(f"provider `{config.name}`: type bedrock needs botocore, the `bedrock` extra: "
                              "pip install 'switchboard[bedrock]'") from None
        return BedrockProvider(config)
    raise ValueError(f"unknown provider type {config.type!r}")
