"""The `responses:` config section: defaults, every key, and errors that name the key and its line."""

from __future__ import annotations

import pytest

from switchboard.config import ConfigError, ResponsesConfig, parse_config


def test_defaults_when_the_section_is_absent_or_empty() -> None:
    for text in ("", "responses:\n", "responses: {}\n"):
        cfg = parse_config(text, environ={}).responses
        assert cfg == ResponsesConfig(ttl_days=30.0, max_stored_bytes=8 * 1024 * 1024, hosted_tools="drop",
                                      allowed_mcp_urls=[])
        assert cfg.ttl_s == 30 * 86400


def test_every_key() -> None:
    text = """
responses:
  ttl_days: 7
  max_stored_bytes: 65536
  hosted_tools: reject
  allowed_mcp_urls: [https://mcp.example.com/mcp, "http://127.0.0.1:9000/sse"]
"""
    cfg = parse_config(text, environ={}).responses
    assert cfg.ttl_days == 7.0 and isinstance(cfg.ttl_days, float) and cfg.ttl_s == 7 * 86400
    assert cfg.max_stored_bytes == 65536 and cfg.hosted_tools == "reject"
    assert cfg.allowed_mcp_urls == ["https://mcp.example.com/mcp", "http://127.0.0.1:9000/sse"]
    assert parse_config("responses: {ttl_days: 0.5}\n", environ={}).responses.ttl_s == 43200
    one = parse_config("responses: {allowed_mcp_urls: 'https://one.example/mcp'}\n", environ={}).responses
    assert one.allowed_mcp_urls == ["https://one.example/mcp"]
    assert parse_config("responses:\n  ttl_days: ${TTL:-3}\n", environ={}).responses.ttl_days == 3.0


@pytest.mark.parametrize(("text", "message"), [
    ("responses:\n  ttl_days: 0\n", ":2: `responses.ttl_days` must be > 0"),
    ("responses:\n  ttl_days: -1\n", ":2: `responses.ttl_days` must be > 0"),
    ("responses:\n  ttl_days: forever\n", ":2: `responses.ttl_days` must be float, got str"),
    ("responses:\n  max_stored_bytes: 0\n", ":2: `responses.max_stored_bytes` must be > 0"),
    ("responses:\n  max_stored_bytes: 1.5\n", ":2: `responses.max_stored_bytes` must be int, got float"),
    ("responses:\n  hosted_tools: ignore\n", ":2: `responses.hosted_tools` must be `drop` or `reject`"),
    ("responses:\n  hosted_tools: true\n", ":2: `responses.hosted_tools` must be str, got bool"),
    ("responses:\n  allowed_mcp_urls: [ftp://x.example]\n",
     ":2: `responses.allowed_mcp_urls` must list http:// or https:// URLs, got `ftp://x.example`"),
    ("responses:\n  allowed_mcp_urls: {a: 1}\n", ":2: `responses.allowed_mcp_urls` must be a list of strings"),
    ("responses:\n  ttl_days: 1\n  ttl_day: 2\n", ":3: unknown key `responses.ttl_day`"),
    ("responses: [1]\n", ":1: `responses` must be a mapping"),
])
def test_errors_name_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "sb.yaml", environ={})
    assert str(err.value).startswith("sb.yaml")
    assert message in str(err.value)
