"""The one call path, in process: headends -> router -> (scripted provider | agent) -> relay.

No thread, no subprocess, no socket: `InProcessGateway` drives the real ASGI app, with the
configured provider replaced by a `ScriptedProvider`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from switchboard.errors import GatewayError
from tests.fakes.scripted_provider import InProcessGateway, Reply, chunk, completion

KEY = "sk-call-path"
AUTH = {"authorization": f"Bearer {KEY}"}
USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}

CONFIG = f"""
auth: {{master_key: {KEY}}}
providers:
  fake: {{type: openai, base_url: "http://127.0.0.1:9/v1", keys: [sk-upstream-secret], retries: {{max: 0}}}}
models:
  m: fake/up-model
"""


def _chat(stream: bool = False, model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_chat_goes_through_the_router_with_the_providers_key(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(body=completion("hello")))
        resp = await gw.request("POST", "/v1/chat/completions", _chat(), AUTH)
    assert resp.status == 200 and resp.json()["choices"][0]["message"]["content"] == "hello"
    call = gw.fakes["fake"].calls[0]
    assert (call.kind, call.model, call.key) == ("chat", "up-model", "sk-upstream-secret")
    assert resp.headers["x-switchboard-provider"] == "fake" and resp.headers["x-upstream-request-id"] == "up-req-1"
    record = gw.records[-1]
    assert (record.provider, record.upstream_model, record.attempts, record.usage.total_tokens) == (
        "fake", "up-model", 1, 5)


async def test_stream_relay_batches_usage_and_done(tmp_path: Path) -> None:
    batches = [[chunk(role="assistant", cid="a")], [chunk("Hel", cid="b"), chunk("lo", cid="c")],
               [chunk(finish="stop", cid="d"), chunk(usage=USAGE, cid="e")]]
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(batches=batches))
        resp = await gw.request("POST", "/v1/chat/completions", _chat(True), AUTH)
    events = resp.sse_data()
    assert events[-1] == "[DONE]" and all(e["id"] == "a" for e in events[:-1])  # one id
    assert all(e["usage"] is None for e in events[:-1])  # not asked for: the usage chunk is not sent
    assert len(resp.chunks) == 4  # one write per upstream read, then [DONE]
    assert gw.records[-1].usage.total_tokens == 6 and gw.fakes["fake"].closed_streams


async def test_time_to_first_token_is_the_first_content_not_the_role_chunk(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(batches=[[chunk(role="assistant")], [chunk(finish="stop")]]),
                                Reply(batches=[[chunk(role="assistant")], [chunk("x")], [chunk(finish="stop")]]))
        await gw.request("POST", "/v1/chat/completions", _chat(True), AUTH)
        silent = gw.records[-1]
        await gw.request("POST", "/v1/chat/completions", _chat(True), AUTH)
        spoke = gw.records[-1]
    assert silent.first_token_s is None  # a role chunk and a finish carry no token
    assert spoke.first_token_s is not None and spoke.first_token_s <= spoke.latency_s


async def test_mid_stream_failure_ends_with_an_error_frame_in_each_encoding(tmp_path: Path) -> None:
    broken = GatewayError(502, "Upstream broke.", "api_error", code="upstream_connection_error")
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(batches=[[chunk(role="assistant"), chunk("a")]], error_after=broken),
                                Reply(batches=[[chunk(role="assistant"), chunk("a")]], error_after=broken))
        openai_resp = await gw.request("POST", "/v1/chat/completions", _chat(True), AUTH)
        anthropic_resp = await gw.request(
            "POST", "/v1/messages", {"model": "m", "max_tokens": 5, "stream": True,
                                     "messages": [{"role": "user", "content": "hi"}]}, AUTH)
    events = openai_resp.sse_data()
    assert events[-1]["error"]["code"] == "upstream_connection_error" and "[DONE]" not in events
    text = anthropic_resp.body.decode()
    assert text.startswith("event: message_start") and text.rstrip().split("\n")[-2] == "event: error"
    assert "message_stop" not in text
    assert [r.status for r in gw.records[-2:]] == [502, 502]


async def test_anthropic_headend_and_legacy_completions_share_the_router(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(body=completion("from chat")),
                                Reply(body={"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "x",
                                            "choices": [{"index": 0, "text": "done", "finish_reason": "stop"}]}))
        message = await gw.request("POST", "/v1/messages", {"model": "m", "max_tokens": 5,
                                                             "messages": [{"role": "user", "content": "hi"}]}, AUTH)
        legacy = await gw.request("POST", "/v1/completions", {"model": "m", "prompt": "p"}, AUTH)
    assert message.json()["content"] == [{"type": "text", "text": "from chat"}]
    assert message.headers["x-switchboard-provider"] == "fake" and message.headers["request-id"]
    assert legacy.json()["choices"][0]["text"] == "done"
    assert [c.kind for c in gw.fakes["fake"].calls] == ["chat", "completions"]


AGENT_CONFIG = CONFIG + """
server: {request_timeout_s: 0.3}
agents: {dir: agents}
"""


def _agent(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "solo.md").write_text("---\nmodel: m\nmax_in_flight: 1\nqueue: 4\n---\nYou are solo.\n")


async def test_agent_queue_wait_is_bounded_by_the_request_deadline(tmp_path: Path) -> None:
    _agent(tmp_path)
    release = asyncio.Event()
    async with InProcessGateway(AGENT_CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(batches=[[chunk(role="assistant"), chunk("busy")], [chunk(finish="stop")]],
                                      hold_after_first=release))
        first = asyncio.ensure_future(gw.request("POST", "/v1/chat/completions", _chat(True, "solo"), AUTH))
        while not gw.fakes["fake"].calls:  # noqa: ASYNC110 (polling the fake's own record)
            await asyncio.sleep(0.01)
        second = await gw.request("POST", "/v1/chat/completions", _chat(False, "solo"), AUTH)
        release.set()
        done = await first
    assert second.status == 504 and second.json()["error"]["code"] == "deadline_exceeded"
    assert done.status == 200 and "busy" in done.body.decode()


async def test_agent_answers_every_headend_in_process(tmp_path: Path) -> None:
    _agent(tmp_path)
    async with InProcessGateway(AGENT_CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(*[Reply(batches=[[chunk(role="assistant"), chunk("agent says")],
                                                 [chunk(finish="stop"), chunk(usage=USAGE)]]) for _ in range(3)])
        chat = await gw.request("POST", "/v1/chat/completions", _chat(False, "solo"), AUTH)
        legacy = await gw.request("POST", "/v1/completions", {"model": "solo", "prompt": "hi"}, AUTH)
        message = await gw.request("POST", "/v1/messages", {"model": "solo", "max_tokens": 9,
                                                             "messages": [{"role": "user", "content": "hi"}]}, AUTH)
    assert chat.json()["choices"][0]["message"]["content"] == "agent says"
    assert legacy.json()["object"] == "text_completion" and legacy.json()["choices"][0]["text"] == "agent says"
    assert message.json()["content"][-1] == {"type": "text", "text": "agent says"}
    assert all(c.body["messages"][0] == {"role": "system", "content": "You are solo."} for c in gw.fakes["fake"].calls)
    for record in gw.records[-3:]:
        assert record.agent == "solo" and record.turns is not None and len(record.turns) == 1
        assert record.usage.total_tokens == 6


# -- authentication before the body (issue 10, defect 1)

async def test_no_body_is_read_before_the_key_is_checked(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        received: list[str] = []

        async def receive() -> dict[str, Any]:
            received.append("body")
            await asyncio.Event().wait()  # a client holding back its body forever
            raise AssertionError("unreachable")

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
                 "headers": [(b"content-length", b"15000000"), (b"content-type", b"application/json")]}
        await asyncio.wait_for(gw.app(scope, receive, send), timeout=5)
    assert sent[0]["status"] == 401 and received == []


BODY_CONFIG = CONFIG + """
server: {max_body_memory_per_key_bytes: 3000, max_body_memory_bytes: 5000}
"""


async def _send_in_pieces(gw: InProcessGateway, pieces: list[bytes], hold: asyncio.Event | None = None) -> int:
    queue = list(pieces)
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if hold is not None and len(queue) == 1:
            await hold.wait()
        piece = queue.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(queue)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {KEY}".encode())]}
    await asyncio.wait_for(gw.app(scope, receive, send), timeout=5)
    return status[0]


async def test_body_memory_is_bounded_per_key_and_given_back(tmp_path: Path) -> None:
    async with InProcessGateway(BODY_CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(body=completion("ok")))
        hold = asyncio.Event()
        first = asyncio.ensure_future(_send_in_pieces(gw, [b'{"model": "m", ' + b" " * 2000, b"x"], hold))
        while gw.app.body_memory.in_use == 0:  # noqa: ASYNC110 (polling the gateway's counter)
            await asyncio.sleep(0.01)
        second = await _send_in_pieces(gw, [b" " * 1500, b" " * 10])  # the same key: 2,000 + 1,500 > 3,000
        hold.set()
        assert await first == 400  # its body was read whole (and is not JSON)
        assert second == 429
        assert gw.app.body_memory.in_use == 0  # everything was given back
        ok = await gw.request("POST", "/v1/chat/completions", _chat(), AUTH)
        assert ok.status == 200


@pytest.mark.parametrize("size", [6000])
async def test_body_memory_is_bounded_across_requests(tmp_path: Path, size: int) -> None:
    async with InProcessGateway(BODY_CONFIG.replace("3000", "100000"), tmp_path) as gw:
        status = await _send_in_pieces(gw, [b" " * (size // 2), b" " * (size // 2), b""])
        assert status == 503 and gw.app.body_memory.in_use == 0


TITLE_PROMPT = ("### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
                "### Guidelines:\n- Keep it short.\n### Output:\n"
                "JSON format: { \"title\": \"your concise title here\" }\n"
                "### Chat History:\n<chat_history>\nUSER: hi\nASSISTANT: hello\n</chat_history>")


async def test_open_webui_task_prompts_reach_the_plain_model_without_the_header(tmp_path: Path) -> None:
    _agent(tmp_path)
    async with InProcessGateway(AGENT_CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(body=completion('{"title": "Hi"}')),
                                Reply(batches=[[chunk(role="assistant"), chunk("agent")], [chunk(finish="stop")]]))
        task = await gw.request("POST", "/v1/chat/completions",
                                {"model": "solo", "messages": [{"role": "user", "content": TITLE_PROMPT}]}, AUTH)
        normal = await gw.request("POST", "/v1/chat/completions",
                                  {"model": "solo", "messages": [{"role": "user", "content": "### Task: not a task"}]},
                                  AUTH)
    assert task.json()["choices"][0]["message"]["content"] == '{"title": "Hi"}'
    plain, looped = gw.fakes["fake"].calls
    assert plain.kind == "chat" and plain.body["messages"] == [{"role": "user", "content": TITLE_PROMPT}]
    assert looped.kind == "chat_stream" and looped.body["messages"][0]["role"] == "system"  # the agent ran
    assert normal.status == 200 and gw.records[-2].agent is None and gw.records[-1].agent == "solo"



async def test_a_failure_of_ours_mid_stream_is_a_500_not_a_client_disconnect(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        broken: Any = ["not", "a", "chunk"]  # what a buggy adapter could hand on
        gw.fakes["fake"].script(Reply(batches=[[chunk(role="assistant"), chunk("a")], [broken]]))
        with pytest.raises(AttributeError):
            await gw.request("POST", "/v1/chat/completions", _chat(True), AUTH)
        gw.gateway.flush_finished()
    record = gw.records[-1]
    assert (record.status, record.error_type) == (500, "api_error")
