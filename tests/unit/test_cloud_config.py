"""Config of the cloud providers: `type: azure`, `type: bedrock` and `preset:` on `type: openai`."""

from __future__ import annotations

import subprocess
import sys

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


def test_bedrock_region_and_default_endpoint() -> None:
    p = provider("type: bedrock\nregion: eu-central-1")
    assert p.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com" and p.region == "eu-central-1"
    p = provider("type: bedrock\nregion: ${AWS_REGION:-us-east-1}\naws_access_key_id: ${ID}\n"
                 "aws_secret_access_key: ${SECRET}", environ={"ID": "AKIA1", "SECRET": "s"})
    assert (p.region, p.aws_access_key_id, p.aws_secret_access_key, p.aws_session_token) == ("us-east-1", "AKIA1",
                                                                                           "s", None)
    with pytest.raises(ConfigError, match=r"providers\.p\.region` is required"):
        provider("type: bedrock")
    with pytest.raises(ConfigError, match="needs both `aws_access_key_id` and `aws_secret_access_key`"):
        provider("type: bedrock\nregion: us-east-1\naws_access_key_id: AKIA1")


def test_bedrock_keys_and_access_keys_exclude_each_other() -> None:
    from switchboard.providers import build_provider

    with pytest.raises(ConfigError, match="either `keys`"):
        build_provider(provider("type: bedrock\nregion: us-east-1\nkeys: [k]\naws_access_key_id: A\n"
                                "aws_secret_access_key: s"))


def test_bedrock_without_botocore_is_a_config_error_naming_the_extra() -> None:
    code = ("import sys; sys.modules['botocore'] = None\n"
            "from switchboard.config import parse_config\n"
            "from switchboard.providers import build_provider\n"
            "cfg = parse_config('providers:\\n  p: {type: bedrock, region: us-east-1}\\n', environ={})\n"
            "try:\n    build_provider(cfg.providers['p'])\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith("ConfigError") and "pip install 'switchboard[bedrock]'" in out
