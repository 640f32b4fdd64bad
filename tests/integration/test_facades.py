"""Endpoint facades through the real server: the voice-assistant shape (a prefix, no model, no
`stream` field, trailing slash), a facade on a port of its own with its own key and model list,
limits (clamped or refused), defaults the request overrides, concurrency, and unknown URLs in the
access log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.fixtures import running_gateway
from tests.server import SwitchboardProcess, free_port

MASTER = "sk-facades-master"
CHAT_KEY = "sk-facade-chat-key"
CHAT_KEY_2 = "sk-facade-chat-key-2"


@pytest.fixture(scope="module")
def chat_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream, fake_openai: FakeOpenAI, chat_port: int) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {MASTER}}}
providers:
  up: {{type: openai, base_url: "{upstream.base_url}", keys: [sk-up], retries: {{max: 0}}}}
  plain: {{type: openai, base_url: "{fake_openai.base_url}", keys: [sk-plain], retries: {{max: 0}}}}
models:
  paced: plain/paced-model
  small: up/small-model
  other: up/other-model
agents: {{dir: agents}}
facades:
  bank:
    prefix: /api
    model: banker
    stream: true
    defaults: {{temperature: 0.7, max_tokens: 2048}}
    limits: {{max_tokens: 4096}}
  strict:
    prefix: /strict
    model: paced
    pin_model: true
    limits: {{max_tokens: 100}}
    on_limit: reject
    auth: none
    max_in_flight: 1
    queue: 0
  chat:
    port: {chat_port}
    models: [small, banker]
    auth: {{keys: ["{CHAT_KEY}", "{CHAT_KEY_2}"]}}
"""
    agents = {"agents/banker.md": "---\nmodel: small\n---\nYou are a bank assistant.\n"}
    with running_gateway(config, extra_files=agents) as server:
        yield server


def _events(body: str) -> list[str]:
    return [line[6:] for line in body.split("\n") if line.startswith("data: ")]


def test_voice_assistant_shape_streams_from_the_facades_agent(gateway: SwitchboardProcess,
                                                              upstream: FakeAgentUpstream) -> None:
    headers = {"Authorization": f"Bearer {MASTER}"}
    with httpx.stream("POST", gateway.url + "/api/chat/completions/", headers=headers,
                      json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = _events(resp.read().decode())
    assert events[-1] == "[DONE]" and json.loads(events[0])["model"] == "banker"
    sent = upstream.last()["body"]
    assert sent["messages"][0] == {"role": "system", "content": "You are a bank assistant."}
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 2048
    plain = httpx.post(gateway.url + "/api/chat/completions", headers=headers,
                       json={"stream": False, "messages": [{"role": "user", "content": "hi"}]})
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"] == "Plain answer."
    # the request's own values win over the defaults; a larger max_tokens is clamped
    httpx.post(gateway.url + "/api/chat/completions", headers=headers,
               json={"stream": False, "temperature": 0.1, "max_tokens": 9999,
                     "messages": [{"role": "user", "content": "hi"}]})
    sent = upstream.last()["body"]
    assert sent["temperature"] == 0.1 and sent["max_tokens"] == 4096
    # under the facade's prefix the /v1 form works too, and a named model is used
    named = httpx.post(gateway.url + "/api/v1/chat/completions", headers=headers,
                       json={"model": "small", "stream": False, "messages": [{"role": "user", "content": "x"}]})
    assert named.status_code == 200 and upstream.last()["body"]["model"] == "small-model"


def test_pinned_model_refused_limit_no_auth_and_concurrency(gateway: SwitchboardProcess,
                                                            fake_openai: FakeOpenAI) -> None:
    url = gateway.url + "/strict/chat/completions"
    ok = httpx.post(url, json={"model": "other", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and fake_openai.last()["body"]["model"] == "paced-model"  # pinned, no key needed
    big = httpx.post(url, json={"max_tokens": 101, "messages": [{"role": "user", "content": "hi"}]})
    assert big.status_code == 400 and big.json()["error"]["param"] == "max_tokens"
    results: list[int] = []
    slow = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "fake_chunk_delay": 0.3}

    def hold() -> None:
        with httpx.stream("POST", url, json=slow, timeout=10) as resp:
            results.append(resp.status_code)
            resp.read()

    holder = threading.Thread(target=hold)
    holder.start()
    for _ in range(100):
        if results:
            break
        time.sleep(0.02)
    busy = httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]})
    holder.join(10)
    assert results == [200] and busy.status_code == 503 and busy.json()["error"]["code"] == "queue_full"
    after = httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]})
    assert after.status_code == 200  # the slot came back when the stream ended


def test_a_facade_on_its_own_port_with_its_own_key_and_models(gateway: SwitchboardProcess, chat_port: int) -> None:
    base = f"http://127.0.0.1:{chat_port}/v1"
    client = openai.OpenAI(base_url=base, api_key=CHAT_KEY, max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["banker", "small"]
    answer = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Plain answer."
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    client.close()
    master = openai.OpenAI(base_url=base, api_key=MASTER, max_retries=0)
    with pytest.raises(openai.AuthenticationError):  # this facade takes its own keys only
        master.models.list()
    master.close()
    assert httpx.get(f"http://127.0.0.1:{chat_port}/health").status_code == 200
    # the facade's key is not a key of the gateway's own port
    assert httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {CHAT_KEY}"}).status_code == 401


def test_facades_and_unknown_urls_in_the_access_log(gateway: SwitchboardProcess) -> None:
    missing = httpx.post(gateway.url + "/v1/chat/complete", json={})
    assert missing.status_code == 404
    lines: list[dict[str, object]] = []
    for _ in range(200):
        lines = [json.loads(raw) for raw in gateway.logs().splitlines() if raw.startswith('{"ts"')]
        if any(line.get("path") == "/v1/chat/complete" for line in lines):
            break
        time.sleep(0.02)
    unknown = [line for line in lines if line.get("path") == "/v1/chat/complete"]
    assert unknown and unknown[0]["status"] == 404 and unknown[0]["endpoint"] == "(unknown)"
    assert any(line.get("facade") == "bank" for line in lines)


def test_check_config_and_the_banner_list_the_facades(gateway: SwitchboardProcess) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "check-config", str(gateway.config_path)],
                         capture_output=True, text=True, timeout=60, cwd=gateway.dir)
    assert out.returncode == 0, out.stderr
    assert "facade bank: prefix /api; model banker" in out.stdout
    assert "facade strict: prefix /strict; model paced (pinned); NO AUTH; max_in_flight 1" in out.stdout
    assert "own key(s)" in out.stdout
    assert "facade: chat: port" in gateway.logs()


def test_requests_through_a_facade_are_counted_with_its_name(gateway: SwitchboardProcess) -> None:
    httpx.post(gateway.url + "/strict/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    text = httpx.get(gateway.url + "/metrics").text
    line = next(ln for ln in text.splitlines()
                if ln.startswith('switchboard_facade_requests_total{endpoint="/chat/completions",facade="strict",'
                                 'status="200"}'))
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_each_key_of_a_facade_is_its_own_caller(chat_port: int) -> None:
    base = f"http://127.0.0.1:{chat_port}/v1"
    first = openai.OpenAI(base_url=base, api_key=CHAT_KEY, max_retries=0)
    second = openai.OpenAI(base_url=base, api_key=CHAT_KEY_2, max_retries=0)
    made = first.responses.create(model="small", input="mine")
    assert first.responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):  # another key of the same facade cannot read it
        second.responses.retrieve(made.id)
    first.close()
    second.close()
