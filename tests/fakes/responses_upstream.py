"""A fake upstream that speaks the Responses API itself (as api.openai.com does), on 127.0.0.1.

`POST /v1/responses` answers "Native answer to <model>" as a `response` object, or streamed as the
real event sequence (created, in_progress, output_item.added, content_part.added, two text deltas,
output_text.done, content_part.done, output_item.done, completed), with usage 7 in / 2 out. The
model `native-fail` sends `response.failed` after the first delta. Requests are recorded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

USAGE = {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 2,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 9}


def _response(rid: str, model: str, status: str, output: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
    out = {"id": rid, "object": "response", "created_at": int(time.time()), "status": status, "error": None,
           "incomplete_details": None, "instructions": None, "model": model, "output": output,
           "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0,
           "metadata": {}}
    if usage is not None:
        out["usage"] = usage
    return out


class FakeResponsesUpstream(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_post("/v1/responses", self.responses)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        model = body.get("model", "")
        rid = f"resp_up{len(self.requests):040d}"
        text = f"Native answer to {model}"
        message = {"type": "message", "id": "msg_up1", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
        if not body.get("stream"):
            return web.json_response(_response(rid, model, "completed", [message], USAGE),
                                     headers={"x-request-id": f"up-{rid}"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": f"up-{rid}"})
        await resp.prepare(request)
        seq = 0

        async def send(kind: str, **payload: Any) -> None:
            nonlocal seq
            event = {"type": kind, "sequence_number": seq, **payload}
            seq += 1
            await resp.write(f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode())

        running = _response(rid, model, "in_progress", [])
        await send("response.created", response=running)
        await send("response.in_progress", response=running)
        open_item = {**message, "status": "in_progress", "content": []}
        await send("response.output_item.added", output_index=0, item=open_item)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        await send("response.content_part.added", item_id="msg_up1", output_index=0, content_index=0, part=part)
        await send("response.output_text.delta", item_id="msg_up1", output_index=0, content_index=0,
                   delta="Native answer", logprobs=[])
        if model == "native-fail":
            failed = {**running, "status": "failed", "error": {"code": "server_error", "message": "boom"}}
            await send("response.failed", response=failed)
            return resp
        await send("response.output_text.delta", item_id="msg_up1", output_index=0, content_index=0,
                   delta=f" to {model}", logprobs=[])
        await send("response.output_text.done", item_id="msg_up1", output_index=0, content_index=0, text=text,
                   logprobs=[])
        await send("response.content_part.done", item_id="msg_up1", output_index=0, content_index=0,
                   part={**part, "text": text})
        await send("response.output_item.done", output_index=0, item=message)
        await send("response.completed", response=_response(rid, model, "completed", [message], USAGE))
        return resp
