"""Config of the cloud providers: `type: azure`, `type: bedrock` and `preset:` on `type: openai`."""

from __future__ import annotations

import pytest

from switchboard.config import ConfigError, ProviderConfig, parse_config


def provider(body: str, environ: dict[str, str] | None = None) -> ProviderConfig:
    cfg = parse_config("providers:\n  p:\n" + "".join(f"    {line}\n" for line in body.strip().splitlines()),
                       environ=environ or {})
    return cfg.providers["p"]


def test_azure_defaults() -> None:
    p = provider("type: azure\nbase_url: https://res.openai.azure.com/\nkeys: [k]\n"
                 "deployments: {gpt-4o: prod-4o}\napi_version: '2024-10-21'")
    assert p.key_header == "api-key"
    assert p.forward_unknown_params is False  # Azure rejects unknown fields
    assert p.deployments == {"gpt-4o": "prod-4o"}
    assert p.api_version == "2024-10-21"
    assert p.base_url == "https://res.openai.azure.com"
    p = provider("type: azure\nbase_url: https://res.openai.azure.com\nkey_header: Authorization")
    assert p.key_header == "authorization" and p.api_version is None


def test_azure_needs_its_endpoint() -> None:
    with pytest.raises(ConfigError, match=r"providers\.p\.base_url` is required"):
        provider("type: azure\nkeys: [k]")
