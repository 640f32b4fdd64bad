"""The dashboard's instance-local APIs through a real server: `/admin/requests` (SSE, filters, no message
contents), `/admin/requests/{id}`, `/admin/health` (breakers, recent upstream errors), `/admin/agents`, `/admin/me`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.access.helpers import ADMIN, MASTER, bearer, create_key
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

SECRET_WORDS = "private-words-7f3a"


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {MASTER}}}
server: {{path_prefixes: [/openai]}}
providers:
  up:
    type: openai
    base_url: {fake_openai.base_url}
    keys: [sk-upstream-dash]
    retries: {{max: 0}}
    cooldown: {{failures: 2, seconds: 30}}
models:
  gpt-4o-mini: {{route: up/gpt-4o-mini, fallbacks: [up/other]}}
  broken: {{route: up/error-500}}
store: {{url: "sqlite:///data/switchboard.db"}}
"""
    proc = SwitchboardProcess(config).start()
    yield proc
    proc.stop()


def chat(server: SwitchboardProcess, model: str, request_id: str) -> int:
    r = httpx.post(server.url + "/v1/chat/completions", headers={**ADMIN, "x-request-id": request_id},
                   json={"model": model, "messages": [{"role": "user", "content": SECRET_WORDS}]}, timeout=10)
    return r.status_code


def read_events(response: httpx.Response, until: str, out: list[tuple[str, dict[str, object]]]) -> None:
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            out.append((event, data))
            if data.get("request_id") == until:
                return


def test_live_requests_stream_with_filters_and_no_contents(server: SwitchboardProcess) -> None:
    assert chat(server, "gpt-4o-mini", "req-before") == 200  # already buffered: sent first on connect
    seen: list[tuple[str, dict[str, object]]] = []
    with httpx.stream("GET", server.url + "/admin/requests", params={"status": "5xx"}, headers=ADMIN,
                      timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        reader = threading.Thread(target=read_events, args=(response, "req-broken", seen))
        reader.start()
        assert chat(server, "gpt-4o-mini", "req-ok") == 200
        assert chat(server, "broken", "req-broken") == 500
        reader.join(10)
        assert not reader.is_alive()
    assert seen[0][0] == "instance" and ":" in str(seen[0][1]["instance"])
    requests = [data for event, data in seen if event == "request"]
    assert [r["request_id"] for r in requests] == ["req-broken"]  # the filter: 5xx only
    assert requests[0]["model"] == "broken" and requests[0]["status"] == 500
    record = httpx.get(server.url + "/admin/requests/req-ok", headers=ADMIN).json()
    assert record["model"] == "gpt-4o-mini" and record["provider"] == "up" and record["prompt_tokens"] == 5
    assert SECRET_WORDS not in json.dumps(seen) + json.dumps(record)
    assert httpx.get(server.url + "/admin/requests/req-nope", headers=ADMIN).status_code == 404
    assert httpx.get(server.url + "/admin/requests", params={"status": "bad"}, headers=ADMIN).status_code == 400


def test_health_shows_breakers_and_recent_errors(server: SwitchboardProcess) -> None:
    for i in range(2):
        chat(server, "broken", f"req-fail-{i}")
    health = httpx.get(server.url + "/admin/health", headers=ADMIN).json()
    assert health["scope"] == "instance" and health["instance"]
    provider = health["providers"][0]
    assert provider["name"] == "up" and provider["max_in_flight"] == 1000 and provider["queue_depth"] == 0
    assert provider["requests_5m"] >= 2 and provider["errors_5m"] >= 2
    deployment = provider["deployments"][0]
    assert deployment["id"] == "up#0" and deployment["state"] == "open"
    assert 0 < deployment["cooldown_remaining_s"] <= 30
    assert deployment["recent_errors"][0]["status"] == 500
    assert "sk-upstream-dash" not in json.dumps(health)
    models = {m["name"]: m for m in health["models"]}
    assert models["gpt-4o-mini"]["fallbacks"] == ["up/other"]


def test_agents_me_and_roles(server: SwitchboardProcess) -> None:
    agents = httpx.get(server.url + "/admin/agents", headers=ADMIN).json()
    assert agents == {"object": "agents", "scope": "instance", "instance": agents["instance"], "agents": [],
                      "mcp_servers": []}
    assert httpx.get(server.url + "/admin/me", headers=ADMIN).json() == {"key_id": "master", "name": "master",
                                                                         "role": "admin"}
    with httpx.Client(base_url=server.url) as client:
        _, viewer = create_key(client, "", name="dash-viewer", role="viewer")
        _, plain = create_key(client, "", name="dash-plain")
    assert httpx.get(server.url + "/admin/me", headers=bearer(viewer)).json()["role"] == "viewer"
    for path in ("/admin/health", "/admin/agents", "/admin/requests/req-ok", "/admin/me"):
        assert httpx.get(server.url + path, headers=bearer(plain)).status_code == 403, path
        assert httpx.get(server.url + path).status_code == 401, path


def test_the_dashboard_under_a_path_prefix(server: SwitchboardProcess) -> None:
    page = httpx.get(server.url + "/openai/ui")
    assert page.status_code == 200 and 'src="ui/app.js"' in page.text  # relative: resolves under the prefix
    assert httpx.get(server.url + "/openai/ui/app.js").status_code == 200
    assert httpx.get(server.url + "/openai/ui/", follow_redirects=False).headers["location"] == "/openai/ui"
    assert httpx.get(server.url + "/openai/admin/health", headers=ADMIN).json()["object"] == "health"


def test_bodies_only_with_log_bodies_and_then_redacted(fake_openai: FakeOpenAI) -> None:
    config = f"""
auth: {{master_key: {MASTER}}}
observability: {{log_bodies: true}}
providers:
  up: {{type: openai, base_url: "{fake_openai.base_url}", keys: [sk-upstream-dash], retries: {{max: 0}}}}
models:
  gpt-4o-mini: up/gpt-4o-mini
store: {{url: "sqlite:///data/switchboard.db"}}
"""
    leaked = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2"
    proc = SwitchboardProcess(config).start()
    try:
        r = httpx.post(proc.url + "/v1/chat/completions", headers={**ADMIN, "x-request-id": "req-body"}, json={
            "model": "gpt-4o-mini", "metadata": {"api_key": "plain-secret-value"},
            "messages": [{"role": "user", "content": f"{SECRET_WORDS}; my key is {leaked}"}]})
        assert r.status_code == 200
        record = httpx.get(proc.url + "/admin/requests/req-body", headers=ADMIN).json()
    finally:
        proc.stop()
    body = record["request_body"]
    assert body["messages"][0]["content"] == f"{SECRET_WORDS}; my key is [REDACTED]"
    assert body["metadata"] == {"api_key": "[REDACTED]"}
    assert record["response_body"]["choices"][0]["message"]["content"] == "Hello from gpt-4o-mini"
    assert leaked not in json.dumps(record) and "plain-secret-value" not in json.dumps(record)
