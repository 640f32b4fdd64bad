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
