"""`/v1/responses`: the OpenAI Responses API headend, for every model and agent the gateway serves.

`POST /v1/responses` (stream or not) is parsed and translated into a hub chat request
(responses_request), goes through the router like any chat call, and comes back as a `response`
object or the Responses event stream (responses_response). Stored responses (`store`, default true
as in OpenAI's API) are written to the gateway's store before the client sees the answer's end, so a
follow-up sent at once finds them; `previous_response_id` rebuilds the conversation from the stored
chain; an `item_reference` to an item of another stored response (the Vercel AI SDK sends an earlier
answer so, without `previous_response_id`) is looked up by the response its id names, and one that
cannot be found is a 404, as in OpenAI's API. A stored response is visible only to the key that
created it. Also: `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`. A
WebSocket upgrade on `/v1/responses` is refused with 426, which makes clients (Codex) fall back to
HTTP + SSE.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from ..asgi import JSONResponse, Request, Response, StreamResponse
from ..errors import GatewayError, bad_request
from ..gateway import Gateway
from ..hub import ResponsesCall
from ..request_record import RequestRecord
from ..routes import ApiRoute
from ..store import StoredResponse, stored_size
from .relay import relay
from .responses_mcp import McpItemsStream, McpRun, mcp_items_as_calls
from .responses_request import ResponsesRequest, parse_responses_request, to_hub
from .responses_response import (
    BRIDGED_PREFIX,
    NativeResponsesEncoder,
    ResponsesStreamEncoder,
    bridged_response_id,
    input_item_id,
    response_from_chat,
    response_of_item,
)

__all__ = ["ResponsesApi"]

log = logging.getLogger("switchboard.responses")

def _not_found(what: str, response_id: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, f"{what} with id '{response_id[:128]}' not found.", "invalid_request_error",
                        param=param, code="not_found" if param is None else "previous_response_not_found",
                        retryable=False)


def _as_stored(items: list[dict[str, Any]], response_id: str, known: dict[str, dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """Input items as stored: each with an `id` (listed by `input_items`, referable by `item_reference`), a
    reference replaced by the item it names (a chain replays without looking anything up)."""
    out = []
    for i, item in enumerate(items):
        if item.get("type") == "item_reference" and str(item.get("id")) in known:
            out.append(known[str(item.get("id"))])
        elif item.get("id"):
            out.append(item)
        else:
            prefix = "msg" if item.get("type") == "message" else "item"
            out.append({"id": input_item_id(response_id, prefix, i), **item})
    return out


def _native_body(req: ResponsesRequest, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The body for an upstream that speaks Responses. A conversation this gateway stored (bridged ids,
    which that upstream never saw) goes as input items instead of `previous_response_id`; reasoning
    items are left out (the upstream cannot verify summaries it did not write)."""
    if not req.previous_response_id or not req.previous_response_id.startswith(BRIDGED_PREFIX):
        return req.body
    replay = [{k: v for k, v in item.items() if k not in ("id", "status")}
              for item in history if item.get("type") != "reasoning"]
    body = {k: v for k, v in req.body.items() if k != "previous_response_id"}
    body["input"] = [*replay, *req.input_items]
    return body


def _as_calls(req: ResponsesRequest, history: list[dict[str, Any]]) -> ResponsesRequest:
    """The request with the conversation so far as its input, mcp items as function calls (responses_mcp)."""
    return replace(req, input_items=mcp_items_as_calls([*history, *req.input_items]))


def _item_not_found(item_id: str) -> GatewayError:
    return GatewayError(404, f"Item with id '{item_id[:128]}' not found. Items are not persisted when `store` is "
                        "false, and a stored response is visible only to the key that created it.",
                        "invalid_request_error", param="input", code="item_not_found", retryable=False)


class ResponsesApi:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.config = gw.config.responses
        self.store = gw.access.store
        self.mcp_servers = {name: server.url for name, server in gw.config.mcp_servers.items()}

    def routes(self) -> list[ApiRoute]:
        return [ApiRoute("POST", "/responses", self.create),
                ApiRoute("GET", "/responses", self.upgrade),
                ApiRoute("GET", "/responses/{id}", self.retrieve),
                ApiRoute("DELETE", "/responses/{id}", self.delete),
                ApiRoute("GET", "/responses/{id}/input_items", self.input_items)]

    # -- POST /v1/responses
    async def create(self, gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
        req = parse_responses_request(await request.json_object(), self.config.hosted_tools, self.mcp_servers,
                                      self.config.allowed_mcp_urls)
        record.stream = req.stream
        await gw.admit(request, req.model, record)
        native = not req.mcp and gw.router.native_responses(req.model)  # mcp tools run here, in the tool loop
        history: list[dict[str, Any]] = []
        previous = req.previous_response_id
        if previous:
            chain = await self.store.response_chain(previous, record.key_id)
            # A native upstream may know an id this gateway never stored (made there with store: false
            # elsewhere...); one stored here for another key is that key's, not this one's to continue.
            if chain is None and (not native or previous.startswith(BRIDGED_PREFIX)
                                  or await self.store.response_exists(previous)):
                raise _not_found("Previous response", previous, "previous_response_id")
            for stored in chain or ():
                history.extend(stored.items)
        known = {str(item["id"]): item for item in history if item.get("id")}
        if any(item.get("type") == "item_reference" for item in req.input_items):
            await self._resolve_references(req.input_items, known, record.key_id)
        if req.mcp:
            return await self._with_mcp(gw, req, record, history, known)
        call = ResponsesCall(req.model, _native_body(req, history) if native else req.body,
                             to_hub(_as_calls(req, history), [], known))
        response_id, created_at = bridged_response_id(), int(time.time())
        inputs = _as_stored(req.input_items, response_id, known)
        extra = {"x-switchboard-dropped-tools": ", ".join(req.dropped_tools)} if req.dropped_tools else {}

        async def keep(response: dict[str, Any]) -> None:
            await self._store(req, record.key_id, inputs, response)

        before_end = keep if req.store else None
        if req.stream:
            stream, passed = await gw.router.open_responses_stream(call, record, request.headers)
            encoder = (NativeResponsesEncoder(req.model, record, before_end) if passed
                       else ResponsesStreamEncoder(req, response_id, created_at, before_end))
            return relay(stream, record, encoder, gw.finish, headers=extra or None)
        result = await gw.router.responses(call, record, request.headers)
        if result.native:
            response = result.body
            response["model"] = req.model
        else:
            response = response_from_chat(result.body, req, response_id, created_at)
        if req.store:
            await keep(response)
        return JSONResponse(response, headers={**result.headers, **extra})

    async def _with_mcp(self, gw: Gateway, req: ResponsesRequest, record: RequestRecord,
                        history: list[dict[str, Any]], known: dict[str, dict[str, Any]]) -> Response | StreamResponse:
        """A request with `mcp` tools: the tool loop runs here, with the request's MCP sessions (responses_mcp)."""
        agents = gw.router.agents
        run = McpRun(req.mcp, agents.pool if agents is not None else None, history)
        response_id, created_at = bridged_response_id(), int(time.time())
        inputs = _as_stored(req.input_items, response_id, known)
        extra = {"x-switchboard-dropped-tools": ", ".join(req.dropped_tools)} if req.dropped_tools else {}

        async def keep(response: dict[str, Any]) -> None:
            await self._store(req, record.key_id, inputs, response)

        try:
            await run.open()
            leading = [*run.list_items(), *await run.answer_approvals(req.input_items, known)]
            chat = to_hub(replace(req, input_items=mcp_items_as_calls([*history, *req.input_items, *leading])), [],
                          known)
            taken = {t["function"]["name"] for t in chat.body.get("tools") or () if isinstance(t.get("function"), dict)}
            if approvals := run.approval_functions(taken):
                chat.body["tools"] = [*chat.body.get("tools", ()), *approvals]
            if req.stream:
                inner = await gw.router.open_stream_with_tools(chat, [], record, run.request_tools())
        except BaseException:
            await run.aclose()
            raise
        if req.stream:
            encoder = ResponsesStreamEncoder(req, response_id, created_at, keep if req.store else None)
            return relay(McpItemsStream(inner, run, leading), record, encoder, gw.finish, headers=extra or None)
        try:
            result = await gw.router.chat_with_tools(chat, [], record, run.request_tools())
            response = response_from_chat(result.body, req, response_id, created_at)
            response["output"] = run.finish_output(response["output"], leading)
        finally:
            await run.aclose()
        if req.store:
            await keep(response)
        return JSONResponse(response, headers={**result.headers, **extra})

    async def _resolve_references(self, items: list[dict[str, Any]], known: dict[str, dict[str, Any]],
                                  key_id: str | None) -> None:
        """Adds to `known` the stored items that `item_reference` inputs name and the chain did not hold."""
        loaded: set[str] = set()
        for i, item in enumerate(items):
            if item.get("type") != "item_reference":
                continue
            ref = item.get("id")
            if not isinstance(ref, str) or not ref:
                raise bad_request(f"input[{i}].id: Field required (the id of the item referred to)",
                                  param=f"input[{i}].id", code="missing_required_parameter")
            if ref in known:
                continue
            response_id = response_of_item(ref)
            if response_id is not None and response_id not in loaded:
                loaded.add(response_id)
                stored = await self.store.get_response(response_id, key_id)
                if stored is not None:
                    known.update((str(i["id"]), i) for i in stored.items if i.get("id"))
            if ref not in known:
                raise _item_not_found(ref)

    async def _store(self, req: ResponsesRequest, key_id: str | None, inputs: list[dict[str, Any]],
                     response: dict[str, Any]) -> None:
        now = time.time()
        stored = StoredResponse(id=response["id"], key_id=key_id, created_at=now,
                                expires_at=now + self.config.ttl_s,
                                previous_response_id=req.previous_response_id, model=req.model,
                                items=[*inputs, *response["output"]], input_count=len(inputs), response=response)
        size = stored_size(stored)
        if size > self.config.max_stored_bytes:
            log.warning("response %s not stored: %d bytes is over responses.max_stored_bytes (%d)", stored.id, size,
                        self.config.max_stored_bytes)
            return
        try:
            await self.store.put_response(stored)
        except Exception as exc:  # the answer itself is not lost: only the follow-up cannot find it
            log.error("storing response %s failed: %s", stored.id, type(exc).__name__)

    # -- the stored responses
    async def _get(self, request: Request, record: RequestRecord) -> StoredResponse:
        response_id: str = request.state["path_params"]["id"]
        stored = await self.store.get_response(response_id, record.key_id)
        if stored is None:
            raise _not_found("Response", response_id)
        return stored

    async def retrieve(self, gw: Gateway, request: Request, record: RequestRecord) -> Response:
        return JSONResponse((await self._get(request, record)).response)

    async def delete(self, gw: Gateway, request: Request, record: RequestRecord) -> Response:
        response_id: str = request.state["path_params"]["id"]
        if not await self.store.delete_response(response_id, record.key_id):
            raise _not_found("Response", response_id)
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})

    async def input_items(self, gw: Gateway, request: Request, record: RequestRecord) -> Response:
        stored = await self._get(request, record)
        params = request.query_params()
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request("order: Input should be 'asc' or 'desc'", param="order", code="invalid_value")
        try:
            limit = int(params.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise bad_request("limit: Input should be an integer from 1 to 100", param="limit", code="invalid_value")
        items = stored.items[:stored.input_count]
        if order == "desc":
            items = items[::-1]
        after = params.get("after")
        if after:
            ids = [item.get("id") for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                             "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})

    async def upgrade(self, gw: Gateway, request: Request, record: RequestRecord) -> Response:
        if request.headers.get("upgrade", "").lower() == "websocket":
            raise GatewayError(426, "The WebSocket transport of the Responses API is not served here; use HTTP: "
                               "POST /v1/responses (with `stream: true` for server-sent events).",
                               "invalid_request_error", code="websocket_not_supported", retryable=False)
        raise GatewayError(405, "Method GET not allowed on /v1/responses; use POST.", "invalid_request_error",
                           code="method_not_allowed", retryable=False, headers={"allow": "POST"})
