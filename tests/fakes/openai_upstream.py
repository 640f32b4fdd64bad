"""A fake OpenAI-compatible upstream that speaks the real wire format, served on 127.0.0.1.

Behaviour is chosen by the requested model name, so one server covers every test:

- any model: a normal answer; the reply text is "Hello from <model>" (split into 3 stream chunks)
- `tools`: the answer is two parallel tool calls (streamed as real argument fragments)
- `cut`: the stream is cut after two chunks (connection closed, no [DONE])
- `truncated`: the stream ends cleanly at the HTTP level but without [DONE]
- `error-<status>`: an OpenAI error body with that status (`error-429` adds retry-after: 0)
- `slow-<ms>`: waits that long before answering
- `leaky`: a 401 whose message echoes the API key, as OpenAI does
- `midstream-error`: a data event with an error object after one chunk
- `garbage`: 200 with invalid JSON
- `json-error`: 200 with an OpenAI error body (JSON, also for a stream request), as some servers do
- `json-for-stream`: a chat stream request is answered with the plain JSON completion, no event stream
- `embed-float`: embeddings always returned as floats, whatever encoding_format says
- `usage-details`: usage of 1000 prompt tokens (600 of them cached) and 300 completion tokens (200 of
  them reasoning), in `prompt_tokens_details` / `completion_tokens_details` as OpenAI reports them
- a body field `fake_chunk_delay` (seconds; unknown fields are forwarded) paces the stream chunks

Every request is recorded (`requests`), with headers, for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

REPLY_PARTS = ["Hello", " from", " {model}"]


def _usage(prompt: int = 5, completion: int = 3) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


DETAILED_USAGE = {"prompt_tokens": 1000, "completion_tokens": 300, "total_tokens": 1300,
                  "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 200, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _model_usage(model: str, prompt: int = 5, completion: int = 3) -> dict[str, Any]:
    return DETAILED_USAGE if model == "usage-details" else _usage(prompt, completion)


def _error(status: int, message: str, etype: str = "invalid_request_error", code: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _check_n(n: Any) -> web.Response | None:
    """OpenAI's limit on `n` (a fake that looped over any `n` would never answer)."""
    if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128:
        return None
    return _error(400, f"Invalid 'n': expected an integer from 1 to 128, got {n}.", code="invalid_value")


class FakeOpenAI(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_post("/v1/completions", self.completions)
        self.app.router.add_post("/v1/embeddings", self.embeddings)
        self.app.router.add_get("/v1/models", self.models)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- shared behaviour
    async def _record(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return body

    async def _common_faults(self, model: str, request: web.Request) -> web.StreamResponse | None:
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-")[1]) / 1000)
        if model.startswith("error-"):
            status = int(model.split("-")[1])
            headers = {"retry-after": "0"} if status == 429 else None
            etype = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                     429: "rate_limit_exceeded"}.get(status, "server_error")
            return _error(status, f"fake upstream error {status}", etype, code=f"fake_{status}", headers=headers)
        if model == "leaky":
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {key}. You can find your API key at ...",
                          "invalid_request_error", code="invalid_api_key")
        if model == "garbage":
            return web.Response(text="{not json", content_type="application/json")
        if model == "json-error":
            return web.json_response({"error": {"message": "fake error in a 200", "type": "server_error",
                                                "param": None, "code": "fake_error_in_200"}})
        return None

    # -- endpoints
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        fault = await self._common_faults(model, request)
        if fault is not None:
            return fault
        n = body.get("n") or 1
        if (bad_n := _check_n(n)) is not None:
            return bad_n
        created = int(time.time())
        cid = f"chatcmpl-fake{len(self.requests)}"
        if not body.get("stream") or model == "json-for-stream":
            choices = []
            for i in range(n):
                message: dict[str, Any] = {"role": "assistant", "content": "".join(REPLY_PARTS).format(model=model),
                                           "refusal": None, "annotations": []}
                finish = "stop"
                if model == "tools":
                    message["content"] = None
                    message["tool_calls"] = [
                        {"id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                        {"id": "call_b", "type": "function",
                         "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}},
                    ]
                    finish = "tool_calls"
                choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": choices, "usage": _model_usage(model), "system_fingerprint": "fp_fake",
                "service_tier": "default",
            }, headers={"x-request-id": f"upstream-{cid}"})
        return await self._chat_stream(request, body, cid, created, model, n)

    def _chunk(self, cid: str, created: int, model: str, choices: list[dict[str, Any]],
               usage: Any = None, with_usage_field: bool = True) -> bytes:
        obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "system_fingerprint": "fp_fake", "choices": choices}
        if with_usage_field:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    async def _chat_stream(self, request: web.Request, body: dict[str, Any], cid: str, created: int,
                           model: str, n: int) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": f"upstream-{cid}"})
        await resp.prepare(request)
        self.active_streams += 1
        try:
            def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
                return self._chunk(cid, created, model, choices, usage, include_usage)

            for i in range(n):
                await resp.write(chunk([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": None},
                                         "logprobs": None, "finish_reason": None}]))
            if model == "tools":
                frags = [
                    {"index": 0, "id": "call_a", "type": "function",
                     "function": {"name": "get_weather", "arguments": ""}},
                    {"index": 0, "function": {"arguments": '{"city":'}},
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                    {"index": 0, "function": {"arguments": '"Paris"}'}},
                    {"index": 1, "function": {"arguments": '{"tz":"CET"}'}},
                ]
                for frag in frags:
                    await resp.write(chunk([{"index": 0, "delta": {"tool_calls": [frag]}, "logprobs": None,
                                             "finish_reason": None}]))
                await resp.write(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]))
            else:
                delay = float(body.get("fake_chunk_delay", 0))
                for part_no, part in enumerate(REPLY_PARTS):
                    if model == "cut" and part_no == 2:
                        # Abort the connection mid-stream: no terminating chunk, no [DONE].
                        assert request.transport is not None
                        request.transport.close()
                        return resp
                    if model == "midstream-error" and part_no == 1:
                        await resp.write(b'data: {"error": {"message": "model overloaded", "type": "server_error", '
                                         b'"param": null, "code": null}}\n\n')
                        return resp
                    for i in range(n):
                        await resp.write(chunk([{"index": i, "delta": {"content": part.format(model=model)},
                                                 "logprobs": None, "finish_reason": None}]))
                    if delay:
                        await asyncio.sleep(delay)
                if model == "truncated":
                    await resp.write_eof()
                    return resp
                for i in range(n):
                    await resp.write(chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
            if include_usage:
                await resp.write(chunk([], _model_usage(model, 5, 3 * n)))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled_streams += 1
            raise
        finally:
            self.active_streams -= 1
        return resp

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        fault = await self._common_faults(model, request)
        if fault is not None:
            return fault
        prompt = body.get("prompt")
        if isinstance(prompt, str) or prompt is None:
            prompts: list[Any] = [prompt or ""]
        elif prompt and all(isinstance(t, int) for t in prompt):
            prompts = [prompt]
        else:
            prompts = list(prompt)
        n = body.get("n") or 1
        if (bad_n := _check_n(n)) is not None:
            return bad_n
        created = int(time.time())
        cid = f"cmpl-fake{len(self.requests)}"
        texts = [(p, i) for p in range(len(prompts)) for i in range(n)]
        if not body.get("stream"):
            choices = [{"index": idx, "text": f" completion {p}.{i}", "logprobs": None, "finish_reason": "stop"}
                       for idx, (p, i) in enumerate(texts)]
            return web.json_response({"id": cid, "object": "text_completion", "created": created, "model": model,
                                      "choices": choices, "usage": _usage(4 * len(prompts), 3 * len(choices))})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for idx, (p, i) in enumerate(texts):
            for piece in (" completion", f" {p}.{i}"):
                obj = {"id": cid, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"index": idx, "text": piece, "logprobs": None, "finish_reason": None}]}
                await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        if include_usage:
            obj = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [],
                   "usage": _usage(4, 6)}
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        fault = await self._common_faults(model, request)
        if fault is not None:
            return fault
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dims = body.get("dimensions") or 4
        if not isinstance(dims, int) or not 1 <= dims <= 3072:  # as OpenAI: at most the model's size
            return _error(400, f"Invalid 'dimensions': expected an integer from 1 to 3072, got {dims}.",
                          code="invalid_value")
        data = []
        for i, _ in enumerate(items):
            vector = [round(0.25 * (i + 1) + 0.5 * d, 4) for d in range(dims)]
            if body.get("encoding_format") == "base64" and model != "embed-float":
                emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            else:
                emb = vector
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return web.json_response({"object": "list", "data": data, "model": model,
                                  "usage": {"prompt_tokens": 2 * len(items), "total_tokens": 2 * len(items)}})

    async def models(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": None})
        return web.json_response({"object": "list", "data": [
            {"id": "fake-large", "object": "model", "created": 1700000000, "owned_by": "fake"},
            {"id": "fake-small", "object": "model", "created": 1700000000, "owned_by": "fake"},
        ]})
