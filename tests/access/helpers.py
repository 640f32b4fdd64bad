"""Config and small HTTP helpers shared by the access tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.fakes.openai_upstream import FakeOpenAI

MASTER = "sk-test-master-access"
STATIC = "sk-test-static-access"
ADMIN = {"authorization": f"Bearer {MASTER}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def access_config(fake: FakeOpenAI, store_url: str, shared_state: str = "") -> str:
    # Each response costs (5 x 40000 + 3 x 40000) / 1e6 = $0.32 for gpt-4o-mini.
    return f"""
auth:
  master_key: {MASTER}
  keys: [{{name: static, value: {STATIC}}}]
providers:
  up:
    type: openai
    base_url: {fake.base_url}
    keys: [sk-upstream-access]
    retries: {{max: 0}}
models:
  gpt-4o-mini: {{route: up/gpt-4o-mini}}
  other: {{route: up/other}}
  limited: {{route: up/limited, rpm: 1}}
prices:
  gpt-4o-mini: {{input: 40000, output: 40000}}
  up/other: {{input: 1, output: 2}}
store: {{url: "{store_url}"}}
{shared_state}
"""


def create_key(client: httpx.Client, base: str, **fields: Any) -> tuple[str, str]:
    r = client.post(base + "/admin/keys", json={"name": "k", **fields}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `check` until it holds (for effects that are asynchronous by design, e.g. another instance)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def burst(urls: list[str], secret: str, n: int) -> list[int]:
    """`n` chat requests sent at once, spread over `urls`; their statuses."""
    import asyncio

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*(client.post(urls[i % len(urls)] + "/v1/chat/completions", json=CHAT,
                                                         headers=bearer(secret)) for i in range(n)))
        return [r.status_code for r in answers]

    return asyncio.run(run())
