"""An in-process fake provider and an in-process app, in the spirit of httpx's `MockTransport`.

`ScriptedProvider` stands in for a configured provider (it keeps that provider's config, so the
router treats it like the real one): each call takes the next scripted `Reply` (a chat body, a
stream of chunk batches, or an error; optionally held until an `asyncio.Event` is set) and records
what it was asked. `InProcessGateway` builds the real ASGI app around such providers and drives it
with ASGI messages: no thread, no subprocess, no socket. Wire-level behaviour is tested with the
real server and the official SDKs elsewhere; these are for headends, router and agents.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from switchboard.app import SwitchboardApp, create_app
from switchboard.config import ProviderConfig, parse_config
from switchboard.errors import GatewayError
from switchboard.gateway import Gateway
from switchboard.hub import ChatRequest, Chunk, UpstreamResult
from switchboard.providers.base import ChatProvider

__all__ = ["AsgiResponse", "InProcessGateway", "Reply", "ScriptedProvider", "chunk"]


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None,
          usage: dict[str, int] | None = None, tool_calls: list[dict[str, Any]] | None = None,
          cid: str = "chatcmpl-scripted") -> Chunk:
    """One `chat.completion.chunk` (a usage-only one when only `usage` is given)."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    choices = [] if usage is not None and not delta and finish is None else [
        {"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": cid, "object": "chat.completion.chunk", "created": 1, "model": "scripted", "choices": choices,
            "usage": usage}


def completion(content: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": 1, "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage or {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@dataclass
class Reply:
    """What one call answers: `body` (non-stream), `batches` (a stream, one list per upstream read),
    or `error` (raised before anything is sent; `error_after` raises it after the batches instead)."""

    body: dict[str, Any] | None = None
    batches: list[list[Chunk]] | None = None
    error: GatewayError | None = None
    error_after: GatewayError | None = None
    hold: asyncio.Event | None = None  # the call waits for this first
    hold_after_first: asyncio.Event | None = None  # a stream waits for this after its first batch


class _Stream:
    request_id = "up-req-1"

    def __init__(self, reply: Reply, closed: list[bool]) -> None:
        self._reply = reply
        self._closed = closed

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        async for batch in self.batches():
            for c in batch:
                yield c

    async def batches(self) -> AsyncIterator[list[Chunk]]:
        for i, batch in enumerate(self._reply.batches or []):
            if i == 1 and self._reply.hold_after_first is not None:
                await self._reply.hold_after_first.wait()
            yield [dict(c) if isinstance(c, dict) else c for c in batch]
        if self._reply.error_after is not None:
            raise self._reply.error_after

    async def aclose(self) -> None:
        self._closed.append(True)


@dataclass
class Call:
    kind: str
    body: dict[str, Any]
    model: str
    key: str | None


class ScriptedProvider:
    """A `ChatProvider` (with completions and embeddings) answering from a script."""

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.config = config
        self.replies: collections.deque[Reply] = collections.deque()
        self.calls: list[Call] = []
        self.closed_streams: list[bool] = []

    def script(self, *replies: Reply) -> ScriptedProvider:
        self.replies.extend(replies)
        return self

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def _next(self, kind: str, body: dict[str, Any], model: str, key: str | None) -> Reply:
        self.calls.append(Call(kind, body, model, key))
        if not self.replies:
            raise AssertionError(f"provider {self.name}: no scripted reply left for a {kind} call")
        reply = self.replies.popleft()
        if reply.hold is not None:
            await reply.hold.wait()
        if reply.error is not None:
            raise reply.error
        return reply

    async def chat(self, request: ChatRequest, model: str, key: str | None) -> UpstreamResult:
        reply = await self._next("chat", request.body, model, key)
        assert reply.body is not None, "a non-stream call needs a scripted body"
        return UpstreamResult(reply.body, "up-req-1")

    async def open_chat_stream(self, request: ChatRequest, model: str, key: str | None) -> _Stream:
        return _Stream(await self._next("chat_stream", request.body, model, key), self.closed_streams)

    async def completions(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        reply = await self._next("completions", body, model, key)
        assert reply.body is not None
        return UpstreamResult(reply.body, "up-req-1")

    async def open_completions_stream(self, body: dict[str, Any], model: str, key: str | None) -> _Stream:
        return _Stream(await self._next("completions_stream", body, model, key), self.closed_streams)

    async def embeddings(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        reply = await self._next("embeddings", body, model, key)
        assert reply.body is not None
        return UpstreamResult(reply.body, "up-req-1")


@dataclass
class AsgiResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def sse_data(self) -> list[Any]:
        """The `data:` payloads of an SSE body, parsed (`[DONE]` kept as the string)."""
        out: list[Any] = []
        for line in self.body.decode().split("\n"):
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else orjson.loads(payload))
        return out


class InProcessGateway:
    """The real app for a config, with some providers replaced by `ScriptedProvider`s."""

    def __init__(self, config_text: str, tmp_path: Path, scripted: tuple[str, ...] = ("fake",)) -> None:
        self.config = parse_config(config_text, base_dir=tmp_path)
        self.fakes = {name: ScriptedProvider(self.config.providers[name]) for name in scripted}
        providers: dict[str, ChatProvider] = dict(self.fakes)
        self.gateway = Gateway(self.config, providers=providers)
        self.app: SwitchboardApp = create_app(self.config, self.gateway)
        self.records: list[Any] = []
        self.gateway.observers.append(self.records.append)

    async def __aenter__(self) -> InProcessGateway:
        await self.gateway.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.gateway.aclose()

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                      disconnect_after: int | None = None) -> AsgiResponse:
        """Send one request; `disconnect_after=N` makes the client leave after N body messages."""
        raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        scope = {"type": "http", "method": method, "path": path, "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
        sent_body = False
        gone = asyncio.Event()
        response = AsgiResponse(0, {})

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                piece = message.get("body", b"")
                if piece:
                    response.chunks.append(piece)
                    response.body += piece
                if disconnect_after is not None and len(response.chunks) >= disconnect_after:
                    gone.set()
                if not message.get("more_body", False):
                    gone.set()

        await asyncio.wait_for(self.app(scope, receive, send), timeout=10)
        self.gateway.flush_finished()
        return response
