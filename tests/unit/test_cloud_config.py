"""Config of the cloud providers: `type: azure`, `type: bedrock` and `preset:` on `type: openai`."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(("preset", "base_url"), [
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai"), ("groq", "https://api.groq.com/openai/v1"),
    ("mistral", "https://api.mistral.ai/v1"), ("deepseek", "https://api.deepseek.com"),
    ("together", "https://api.together.xyz/v1"), ("fireworks", "https://api.fireworks.ai/inference/v1"),
    ("openrouter", "https://openrouter.ai/api/v1"), ("xai", "https://api.x.ai/v1"),
    ("ollama", "http://localhost:11434/v1"), ("vllm", "http://localhost:8000/v1"),
    ("lmstudio", "http://localhost:1234/v1")])
def test_preset_base_urls(preset: str, base_url: str) -> None:
    p = provider(f"type: openai\npreset: {preset}")
    assert (p.preset, p.base_url, p.key_header) == (preset, base_url, "authorization")


def test_explicit_values_win_over_the_preset() -> None:
    p = provider("type: openai\npreset: mistral")
    assert p.forward_unknown_params is False and p.stream_usage is False
    assert p.rename_params == {"max_completion_tokens": "max_tokens", "seed": "random_seed"}
    assert "messages[].name" in p.drop_params
    p = provider("type: openai\npreset: mistral\nbase_url: https://eu.example.com/v1\nforward_unknown_params: true\n"
                 "stream_usage: true\ndrop_params: [seed]\nrename_params: {}")
    assert p.base_url == "https://eu.example.com/v1" and p.forward_unknown_params is True and p.stream_usage is True
    assert p.drop_params == ["seed"] and p.rename_params == {}


@pytest.mark.parametrize(("body", "message"), [
    ("type: openai\npreset: nope", "unknown preset `nope` (one of deepseek, fireworks, gemini"),
    ("type: anthropic\npreset: groq", "`providers.p.preset` applies to `type: openai` providers only"),
])
def test_preset_errors(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        provider(body)
