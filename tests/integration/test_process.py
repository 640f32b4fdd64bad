"""Whole-process behaviour: auth disabled warning, several workers."""

from __future__ import annotations

import time

import httpx

from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess


def _config(fake: FakeOpenAI) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: "{fake.base_url}"}}
models:
  m: {{route: up/m}}
"""


def test_no_master_key_means_open_access_with_a_loud_warning(fake_openai: FakeOpenAI) -> None:
    server = SwitchboardProcess(_config(fake_openai)).start()
    try:
        r = httpx.post(server.url + "/v1/chat/completions",
                       json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200
        assert "AUTHENTICATION IS DISABLED" in server.logs()
    finally:
        server.stop()


def test_several_workers(fake_openai: FakeOpenAI) -> None:
    server = SwitchboardProcess(_config(fake_openai), workers=2).start()
    try:
        with httpx.Client() as client:
            for _ in range(20):
                r = client.post(server.url + "/v1/chat/completions",
                                json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello from m"
        # /health answered as soon as one worker was up; the other may still be starting
        deadline = time.monotonic() + 15
        while server.logs().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.logs().count("Application startup complete") == 2
    finally:
        server.stop()
