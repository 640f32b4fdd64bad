"""Secrets out of bodies the dashboard shows (observability.log_bodies)."""

from __future__ import annotations

from switchboard.dashboard.redact import MAX_BODY_CHARS, REDACTED, redact, redacted_body


def test_credential_shapes_and_secret_keys_are_redacted() -> None:
    body = {"messages": [{"role": "user", "content": "use sk-ant-api03-abcdefghijklmnop12345 and AKIAABCDEFGHIJKLMNOP"},
                         {"role": "user", "content": "Authorization: Bearer abcdef123456.xyz and ghp_" + "a" * 36}],
            "headers": {"X-Api-Key": "short", "Authorization": "anything", "accept": "json"},
            "nested": [[{"password": "hunter2", "token": None}]], "n": 3, "text": "a plain sentence"}
    clean = redact(body)
    assert clean["messages"][0]["content"] == f"use {REDACTED} and {REDACTED}"
    assert clean["messages"][1]["content"] == f"Authorization: {REDACTED} and {REDACTED}"
    assert clean["headers"] == {"X-Api-Key": REDACTED, "Authorization": REDACTED, "accept": "json"}
    assert clean["nested"] == [[{"password": REDACTED, "token": None}]]
    assert clean["n"] == 3 and clean["text"] == "a plain sentence"


def test_long_bodies_are_cut_and_bytes_parsed() -> None:
    long = redacted_body({"content": "x" * (MAX_BODY_CHARS * 2)})
    assert isinstance(long, str) and len(long) < MAX_BODY_CHARS + 100 and long.endswith("chars)")
    assert redacted_body(b'{"a": "sk-' + b"b" * 30 + b'"}') == {"a": REDACTED}
    assert redacted_body(b"not json sk-" + b"c" * 30) == f"not json {REDACTED}"


def test_log_bodies_is_read_from_the_config() -> None:
    import pytest

    from switchboard.config import ConfigError, parse_config

    assert parse_config("observability: {log_bodies: true}\n").observability.log_bodies is True
    assert parse_config("server: {port: 8080}\n").observability.log_bodies is False
    with pytest.raises(ConfigError, match=r"observability\.log_bodies"):
        parse_config("observability: {log_bodies: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key `observability\.log_body`"):
        parse_config("observability: {log_body: true}\n")
