"""A fake Azure OpenAI resource that speaks Azure's wire format, served on 127.0.0.1.

It enforces what the real service does:
- URLs: `/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=V`
  (V one of `API_VERSIONS`, else 404 "Resource not found") and the v1 API `/openai/v1/...` (the
  deployment in the body's `model`; an `api-version` there must be `preview` or `latest`). An unknown
  deployment is 404 `DeploymentNotFound`.
- Auth: the `api-key` header, or `Authorization: Bearer <token>` (an Entra ID token), else 401.
- Unknown body fields are 400 "Unrecognized request argument supplied: X"; `stream_options` is one
  of them before api-version 2024-09-01-preview.
- Content filtering: every answer has `prompt_filter_results` and per-choice
  `content_filter_results`; a stream starts with the annotation-only chunk (`id` "", no choices).
  A prompt containing `FILTERME` is the 400 `content_filter` error with `innererror`; `CUTOUT`
  ends the answer with finish_reason `content_filter`.
- Deployment `busy`: 429 with `retry-after: 0` and `retry-after-ms: 10`.

The reply text is "Hello from <deployment>" (three stream chunks). Every request is recorded
(`requests`: path, query, headers, body).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

__all__ = ["API_VERSIONS", "FakeAzure"]

API_VERSIONS = {"2024-06-01", "2024-10-21", "2025-04-01-preview"}
_CHAT_FIELDS = {
    "model", "messages", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
    "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream", "stream_options",
    "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user", "function_call", "functions",
    "data_sources", "store", "metadata", "reasoning_effort", "modalities", "prediction", "audio",
    "user_security_context",
}
_COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options",
                      "logprobs", "suffix", "echo", "stop", "presence_penalty", "frequency_penalty", "best_of",
                      "logit_bias", "user", "seed"}
_EMBEDDING_FIELDS = {"model", "input", "encoding_format", "dimensions", "user", "input_type"}
SAFE = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": {**SAFE, "jailbreak": {"filtered": False,
                                                                                     "detected": False}}}]
REPLY_PARTS = ["Hello", " from", " {deployment}"]


def _error(http_status: int, message: str, code: str | None, etype: str | None = None,
           **extra: Any) -> web.Response:
    return web.json_response({"error": {"message": message, "type": etype, "param": None, "code": code, **extra}},
                             status=http_status)


class FakeAzure(ThreadedServer):
    def __init__(self, api_key: str, token: str, deployments: set[str]) -> None:
        super().__init__()
        self.api_key = api_key
        self.token = token
        self.deployments = deployments | {"busy"}
        for path in ("chat/completions", "completions", "embeddings"):
            self.app.router.add_post(f"/openai/deployments/{{deployment}}/{path}", self._deployment_route(path))
            self.app.router.add_post(f"/openai/v1/{path}", self._v1_route(path))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _deployment_route(self, path: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            version = request.query.get("api-version")
            if version not in API_VERSIONS:
                return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
            return await self._serve(request, path, request.match_info["deployment"], version)
        return handler

    def _v1_route(self, path: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            version = request.query.get("api-version")
            if version not in (None, "preview", "latest"):
                return _error(400, f"API version not supported: {version}", "BadRequest")
            return await self._serve(request, path, None, "v1")
        return handler

    async def _serve(self, request: web.Request, path: str, deployment: str | None,
                     version: str) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        self.requests.append({"path": request.path, "query": dict(request.query), "headers": dict(request.headers),
                              "body": body})
        if request.headers.get("api-key") != self.api_key and \
                request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                               "provide a valid key for an active subscription and use a correct regional API "
                               "endpoint for your resource.", "401")
        deployment = deployment or body.get("model")
        if deployment not in self.deployments:
            return _error(404, "The API deployment for this resource does not exist. If you created the deployment "
                               "within the last 5 minutes, please wait a moment and try again.", "DeploymentNotFound")
        fields = {"chat/completions": _CHAT_FIELDS, "completions": _COMPLETION_FIELDS,
                  "embeddings": _EMBEDDING_FIELDS}[path]
        if version != "v1" and version < "2024-09-01":
            fields = fields - {"stream_options"}
        for name in body:
            if name not in fields:
                return _error(400, f"Unrecognized request argument supplied: {name}", None, "invalid_request_error")
        if deployment == "busy":
            resp = _error(429, "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                               f"{version} have exceeded token rate limit of your current tier. Please retry after "
                               "0 seconds.", "429")
            resp.headers["retry-after"] = "0"
            resp.headers["retry-after-ms"] = "10"
            return resp
        if path == "embeddings":
            items = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
            return web.json_response({"object": "list", "model": "text-embedding-3-small", "data": [
                {"object": "embedding", "index": i, "embedding": [0.5, 0.25]} for i, _ in enumerate(items)],
                "usage": {"prompt_tokens": 2, "total_tokens": 2}}, headers={"apim-request-id": "apim-embed-1"})
        prompt = json.dumps(body.get("messages") or body.get("prompt"))
        if "FILTERME" in prompt:
            return _error(400, "The response was filtered due to the prompt triggering Azure OpenAI's content "
                               "management policy. Please modify your prompt and retry.", "content_filter",
                          param="prompt", status=400,
                          innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                              **SAFE, "violence": {"filtered": True, "severity": "high"}}})
        if body.get("stream"):
            return await self._stream(request, body, path, deployment, "CUTOUT" in prompt)
        return self._answer(body, path, deployment, "CUTOUT" in prompt)

    def _answer(self, body: dict[str, Any], path: str, deployment: str, cut: bool) -> web.Response:
        text = "".join(REPLY_PARTS).format(deployment=deployment)
        finish = "stop"
        filters: dict[str, Any] = SAFE
        if cut:
            text, finish = "Hello", "content_filter"
            filters = {**SAFE, "violence": {"filtered": True, "severity": "medium"}}
        usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
        if path == "completions":
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                                      "content_filter_results": filters}
            obj = "text_completion"
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "logprobs": None, "finish_reason": finish, "content_filter_results": filters}
            obj = "chat.completion"
        return web.json_response({
            "id": "chatcmpl-azure1", "object": obj, "created": int(time.time()), "model": "gpt-4o-2024-11-20",
            "system_fingerprint": "fp_azure", "prompt_filter_results": PROMPT_FILTER, "choices": [choice],
            "usage": usage}, headers={"x-request-id": "azure-req-1", "apim-request-id": "apim-1"})

    async def _stream(self, request: web.Request, body: dict[str, Any], path: str, deployment: str,
                      cut: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "apim-request-id": "apim-stream-1"})
        await resp.prepare(request)
        created = int(time.time())

        async def send(obj: dict[str, Any]) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        await send({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                    "prompt_filter_results": PROMPT_FILTER})
        chat = path == "chat/completions"
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: dict[str, Any], finish: str | None = None, filters: Any = None) -> dict[str, Any]:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None,
                                      "content_filter_results": filters if filters is not None else {}}
            if chat:
                choice["delta"] = delta
            else:
                choice["text"] = delta.get("content", "")
            return {"id": "chatcmpl-azurestream", "object": obj, "created": created, "model": "gpt-4o-2024-11-20",
                    "system_fingerprint": "fp_azure", "choices": [choice]}

        if chat:
            await send(chunk({"role": "assistant", "content": ""}))
        parts = REPLY_PARTS[:1] if cut else REPLY_PARTS
        for part in parts:
            await send(chunk({"content": part.format(deployment=deployment)}, filters=SAFE))
        if cut:
            await send(chunk({}, "content_filter", {**SAFE, "violence": {"filtered": True, "severity": "medium"}}))
        else:
            await send(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send({"id": "chatcmpl-azurestream", "object": obj, "created": created, "model": "gpt-4o-2024-11-20",
                        "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
