"""A cooldown that opens on one instance rests the deployment on the others (through Redis)."""

from __future__ import annotations

import httpx

from tests.access.backends import REDIS_URL, redis_prefix
from tests.access.helpers import ADMIN, CHAT, MASTER, eventually
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess


def test_cooldown_opened_on_one_instance_applies_to_the_other(fake_openai: FakeOpenAI) -> None:
    with redis_prefix() as prefix:
        config = f"""
auth: {{master_key: {MASTER}}}
providers:
  bad:
    type: openai
    base_url: {fake_openai.base_url}
    keys: [sk-bad]
    retries: {{max: 0}}
    cooldown: {{failures: 1, seconds: 30}}
  good:
    type: openai
    base_url: {fake_openai.base_url}
    retries: {{max: 0}}
models:
  m: {{route: bad/error-500, fallbacks: [good/m]}}
shared_state: {{url: "{REDIS_URL}", key_prefix: "{prefix}"}}
"""
        a, b = SwitchboardProcess(config).start(), SwitchboardProcess(config).start()
        try:
            with httpx.Client(timeout=10, headers=ADMIN) as c:
                first = c.post(a.url + "/v1/chat/completions", json={**CHAT, "model": "m"})
                assert first.status_code == 200
                assert first.headers["x-switchboard-attempts"] == "2"  # bad failed, its breaker opened
                failing_calls = sum(r["body"] and r["body"].get("model") == "error-500" for r in fake_openai.requests)
                open_line = 'switchboard_deployment_circuit_state{deployment="bad#0",provider="bad"} 1.0'
                # b has never called `bad`: only the shared mark can open its breaker
                assert open_line not in c.get(b.url + "/metrics").text
                assert eventually(lambda: open_line in c.get(b.url + "/metrics").text)
                r = c.post(b.url + "/v1/chat/completions", json={**CHAT, "model": "m"})
                assert r.status_code == 200
                assert r.headers["x-switchboard-attempts"] == "1" and r.headers["x-switchboard-fallback"] == "true"
                now_failing = sum(r["body"] and r["body"].get("model") == "error-500" for r in fake_openai.requests)
                assert now_failing == failing_calls
        finally:
            a.stop()
            b.stop()
