"""Fake OpenAI-compatible clouds with their documented quirks, all in one server on 127.0.0.1.

Each service lives under `/<name>` + its real API path (`/groq/openai/v1/chat/completions`,
`/fireworks/inference/v1/...`) and enforces what the real one does:

- gemini: Bearer key; a field it does not know is a 400 whose body is a JSON *list* holding the error
  ("Invalid JSON payload received. Unknown name ..."); model `error`: such a 400;
- groq: Bearer key; `logprobs`, `logit_bias`, `top_logprobs` and `messages[].name` are a 400, `n`
  other than 1 is a 400, unknown fields are a 400 "property ... is unsupported";
- mistral: Bearer key; any field outside its schema, top level or in a message, is a 422
  `extra_forbidden` (pydantic's detail list under `message`); `stream_options` is one of them; the
  seed is `random_seed`; usage always rides on the last stream chunk;
- deepseek: Bearer key; `reasoning_content` in an input message is a 400;
- together: Bearer key; takes any field; usage always rides on the last stream chunk;
- fireworks: Bearer key, under `/inference/v1`; takes any field;
- openrouter: Bearer key; takes any field; streams start with and interleave ": OPENROUTER
  PROCESSING" comments and always end with a usage chunk; model `midstream`: after one chunk, a
  chunk with `error` and finish_reason "error";
- xai: Bearer key; models `grok-4*` and `grok-3-mini*` reject presence_penalty / frequency_penalty
  with a 400 in xAI's shape (`{"code", "error"}`);
- ollama: no key; ignores fields it does not know; honours `max_tokens` (the reply is cut to that
  many words) and not `max_completion_tokens`;
- vllm: no key; takes extra sampling fields; `stream_options` without `stream: true` is a 400;
- lmstudio: no key; `response_format` of type json_object is a 400.

The reply is "Hello from <model>" (three stream chunks). Every request is recorded (`requests`:
service, path, headers, body).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

__all__ = ["KEY", "SERVICES", "FakeCompatibleClouds"]

KEY = "sk-cloud-key-0123"
# service -> (API root under its prefix, needs the key)
SERVICES: dict[str, tuple[str, bool]] = {
    "gemini": ("/v1beta/openai", True), "groq": ("/openai/v1", True), "mistral": ("/v1", True),
    "deepseek": ("", True), "together": ("/v1", True), "fireworks": ("/inference/v1", True),
    "openrouter": ("/api/v1", True), "xai": ("/v1", True), "ollama": ("/v1", False), "vllm": ("/v1", False),
    "lmstudio": ("/v1", False),
}
_OPENAI = {"model", "messages", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
           "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream",
           "stream_options", "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user",
           "reasoning_effort", "service_tier", "metadata", "store", "prediction", "modalities", "audio"}
_GEMINI = {"model", "messages", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "stop", "stream",
           "stream_options", "tools", "tool_choice", "response_format", "reasoning_effort", "seed",
           "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "parallel_tool_calls",
           "service_tier", "extra_body"}
_MISTRAL = {"model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
            "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "prediction",
            "parallel_tool_calls", "safe_prompt", "prompt_mode"}
_MISTRAL_MESSAGE = {"system": {"role", "content"}, "user": {"role", "content"},
                    "assistant": {"role", "content", "tool_calls", "prefix"},
                    "tool": {"role", "content", "tool_call_id", "name"}}


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _openai_error(status: int, message: str) -> web.Response:
    return _json(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


def _check(service: str, body: dict[str, Any]) -> web.Response | None:
    messages = body.get("messages") or []
    if service == "gemini":
        for name in body:
            if name not in _GEMINI:
                message = f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                return _json(400, [{"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}])
        if body.get("model") == "error":
            return _json(400, [{"error": {"code": 400, "message": "API key not valid for this model.",
                                          "status": "INVALID_ARGUMENT"}}])
    elif service == "groq":
        for name in ("logprobs", "logit_bias", "top_logprobs"):
            if name in body:
                return _openai_error(400, f"'{name}' : property '{name}' is unsupported")
        for i, message in enumerate(messages):
            if "name" in message:
                return _openai_error(400, f"'messages.{i}' : for 'role:{message.get('role')}' the following must be "
                                          f"satisfied[('messages.{i}.name' : property 'name' is unsupported)]")
        if "n" in body and body["n"] != 1:
            return _openai_error(400, "'n' : number must be at most 1")
        for name in body:
            if name not in _OPENAI:
                return _openai_error(400, f"property '{name}' is unsupported")
    elif service == "mistral":
        detail = [{"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted",
                   "input": body[name]} for name in body if name not in _MISTRAL]
        for i, message in enumerate(messages):
            allowed = _MISTRAL_MESSAGE.get(message.get("role"), set())
            detail += [{"type": "extra_forbidden", "loc": ["body", "messages", i, message.get("role"), name],
                        "msg": "Extra inputs are not permitted", "input": message[name]}
                       for name in message if name not in allowed]
        if detail:
            return _json(422, {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error",
                               "param": None, "code": None})
    elif service == "deepseek":
        if any("reasoning_content" in m for m in messages):
            return _openai_error(400, "The reasoning_content of previous turns must not be sent back: remove "
                                      "reasoning_content from the input messages.")
    elif service == "xai":
        model = str(body.get("model"))
        if model.startswith(("grok-4", "grok-3-mini")):
            for name, wire in (("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
                if name in body:
                    return _json(400, {"code": "Client specified an invalid argument",
                                       "error": f"Argument not supported on this model: {wire}"})
    elif service == "vllm":
        if "stream_options" in body and not body.get("stream"):
            return _json(400, {"object": "error", "message": "Stream options can only be defined when `stream=True`.",
                               "type": "BadRequestError", "param": None, "code": 400})
    elif service == "lmstudio":
        if (body.get("response_format") or {}).get("type") == "json_object":
            return _json(400, {"error": "'response_format.type' must be 'json_schema' or 'text'"})
    return None


class FakeCompatibleClouds(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        for service, (root, _) in SERVICES.items():
            self.app.router.add_post(f"/{service}{root}/chat/completions", self._handler(service))

    def base_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/{service}{SERVICES[service][0]}"

    def last(self, service: str | None = None) -> dict[str, Any]:
        return next(r for r in reversed(self.requests) if service is None or r["service"] == service)

    def _handler(self, service: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = json.loads(await request.read())
            self.requests.append({"service": service, "path": request.path, "headers": dict(request.headers),
                                  "body": body})
            if SERVICES[service][1] and request.headers.get("Authorization") != f"Bearer {KEY}":
                return _openai_error(401, "Invalid API key")
            rejected = _check(service, body)
            if rejected is not None:
                return rejected
            return await self._answer(request, service, body)
        return handle

    async def _answer(self, request: web.Request, service: str, body: dict[str, Any]) -> web.StreamResponse:
        model = str(body.get("model"))
        words = ["Hello", " from", f" {model}"]
        limit = body.get("max_tokens") if service == "ollama" else None
        if isinstance(limit, int):
            words = words[:limit]
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        created = int(time.time())
        cid = f"chatcmpl-{service}"
        if not body.get("stream"):
            return _json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                            "finish_reason": "stop", "logprobs": None}], "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        usage_on_last = service in ("mistral", "together")
        always_usage_chunk = service == "openrouter"
        asked = bool((body.get("stream_options") or {}).get("include_usage"))

        async def send(obj: dict[str, Any]) -> None:
            if service == "openrouter":
                await resp.write(b": OPENROUTER PROCESSING\n\n")
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

        await send(chunk({"role": "assistant", "content": ""}))
        for n, word in enumerate(words):
            await send(chunk({"content": word}))
            if service == "openrouter" and model == "midstream" and n == 0:
                await send(chunk({"content": ""}, "error", error={"code": 502, "message": "Provider disconnected"}))
                await resp.write_eof()
                return resp
        await send(chunk({}, "stop", **({"usage": usage} if usage_on_last else {})))
        if (asked and not usage_on_last) or always_usage_chunk:
            await send({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
