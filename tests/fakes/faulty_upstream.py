"""A fault-injecting OpenAI-compatible upstream: FakeOpenAI plus faults chosen by model name.

Chat faults (stream and non-stream; anything else falls through to FakeOpenAI):

- `fail-<n>-<status>-<tag>`: the first n requests with this exact model name fail with `status`
  (a 429 carries `retry-after: 0`), later ones succeed
- `ratelimited-<seconds>`: 429 with `retry-after: <seconds>`
- `reset`: the connection is aborted before any byte of the response
- `reset-after`: stream: one chunk, then the connection is aborted; non-stream: the headers and half
  the body (content-length promises more), then aborted
- `malformed`: stream: the first event is not JSON; non-stream: 200 with a body that is not JSON
- `stall`: stream: one chunk, then silence until the client goes away
- `gate-<tag>`: stream: one chunk, then waits until the test calls `open_gate(tag)`; non-stream: waits
  for the gate before answering
- `keyfail`: 500 while the request's key is in `bad_keys`, a normal answer otherwise

`open_handlers` counts chat requests still being handled, so tests can check nothing is left hanging.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAI


class FaultyOpenAI(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__()  # routes /v1/chat/completions to self.chat, the fault layer below
        self.open_handlers = 0
        self.failures_left: dict[str, int] = {}
        self.bad_keys: set[str] = set()
        self._gates: dict[str, asyncio.Event] = {}

    # -- test controls (called from the test thread)
    def open_gate(self, tag: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._gate(tag).set)

    def count(self, model: str, key: str | None = None) -> int:
        return sum(1 for r in self.requests if r["body"] and r["body"].get("model") == model
                   and (key is None or r["headers"].get("Authorization") == f"Bearer {key}"))

    def _gate(self, tag: str) -> asyncio.Event:
        if tag not in self._gates:
            self._gates[tag] = asyncio.Event()
        return self._gates[tag]

    # -- the fault layer
    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.open_handlers += 1
        try:
            return await self._faulty_chat(request)
        finally:
            self.open_handlers -= 1

    async def _faulty_chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        model = str(body.get("model", ""))
        stream = bool(body.get("stream"))
        transport = request.transport
        assert transport is not None
        if model.startswith("fail-"):
            _, n, status, _tag = model.split("-", 3)
            left = self.failures_left.setdefault(model, int(n))
            if left > 0:
                self.failures_left[model] = left - 1
                self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
                headers = {"retry-after": "0"} if status == "429" else None
                return web.json_response({"error": {"message": f"injected {status}", "type": "server_error",
                                                    "param": None, "code": None}}, status=int(status), headers=headers)
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if model.startswith("ratelimited-"):
            return web.json_response({"error": {"message": "slow down", "type": "rate_limit_exceeded", "param": None,
                                                "code": None}}, status=429,
                                     headers={"retry-after": model.split("-", 1)[1]})
        if model == "keyfail" and request.headers.get("Authorization", "").removeprefix("Bearer ") in self.bad_keys:
            return web.json_response({"error": {"message": "key broken", "type": "server_error", "param": None,
                                                "code": None}}, status=500)
        if model == "reset":
            transport.abort()
            return web.Response()
        if model == "malformed" and not stream:
            return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
        if model == "reset-after" and not stream:
            resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "400"})
            await resp.prepare(request)
            await resp.write(b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [')
            transport.abort()
            return resp
        if model.startswith("gate-") and not stream:
            await self._gate(model[len("gate-"):]).wait()
        if stream and (model in ("malformed", "reset-after", "stall") or model.startswith("gate-")):
            return await self._faulty_stream(request, model)
        self.requests.pop()  # FakeOpenAI.chat records it again (aiohttp caches the body it reads)
        return await super().chat(request)

    async def _faulty_stream(self, request: web.Request, model: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        transport = request.transport
        assert transport is not None
        if model == "malformed":
            await resp.write(b"data: {not json\n\n")
            await resp.write(b"data: [DONE]\n\n")
            return resp
        chunk = {"id": "chatcmpl-faulty", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                              "logprobs": None, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if model == "reset-after":
            transport.abort()
            return resp
        if model == "stall":
            # aiohttp (without handler cancellation) signals a departed client only through its transport.
            while not transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            return resp
        await self._gate(model[len("gate-"):]).wait()
        done = dict(chunk, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        await resp.write(b"data: " + json.dumps(done).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

