"""This instance's recent requests: a bounded ring buffer of request records and their live stream.

A gateway observer keeps the last `capacity` finished API requests as access-log entries (the same
fields: ids, model, provider, status, tokens, timing; never keys, and message contents only with
`observability.log_bodies`, then with their secrets redacted: redact.py). `GET
/admin/requests` is an SSE stream: the buffered records that match its filters (`model`, `key_id`,
`status`: a code, `2xx`.. `5xx` or `error`), then each new one as it finishes. Every subscriber has
a bounded queue: a reader too slow to keep up loses records (counted in a `dropped` event), never
memory. `GET /admin/requests/{request_id}` answers one buffered record. Per instance: the stream
says which instance it is.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..access.admin import authorize
from ..access.auth import Authenticator
from ..asgi import JSONResponse, Request, Response, StreamResponse
from ..errors import GatewayError, bad_request
from ..gateway import Gateway
from ..observability.access_log import access_entry
from ..request_record import RequestRecord
from ..routes import PlainRoute
from ..sse import event_frame
from .redact import redacted_body

__all__ = ["INSTANCE_ID", "RecentRequests", "record_filter"]

INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}"
SUBSCRIBER_QUEUE = 256
MAX_SUBSCRIBERS = 32
BACKLOG = 100  # records sent first on connect


def record_filter(params: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
    model, key_id, status = params.get("model") or None, params.get("key_id") or None, params.get("status") or None
    if status is not None and not (status.isdigit() or status in ("2xx", "3xx", "4xx", "5xx", "error")):
        raise bad_request("`status` must be a status code, 2xx..5xx or error.", param="status", code="invalid_value")

    def matches(entry: dict[str, Any]) -> bool:
        if model is not None and entry.get("model") != model:
            return False
        if key_id is not None and entry.get("key_id") != key_id:
            return False
        if status is not None:
            code = int(entry.get("status") or 0)
            if status == "error":
                return code >= 400
            if status.endswith("xx"):
                return code // 100 == int(status[0])
            return code == int(status)
        return True

    return matches


class RecentRequests:
    def __init__(self, auth: Authenticator, capacity: int = 1000) -> None:
        self.auth = auth
        self.capacity = capacity
        self.records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._by_id: dict[str, dict[str, Any]] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0

    def install(self, gateway: Gateway) -> None:
        gateway.observers.append(self.observe)

    def observe(self, record: RequestRecord) -> None:
        if record.endpoint == "(unknown)":
            return  # a URL no route took: not a request worth watching
        entry = access_entry(record)
        entry["error_type"] = record.error_type
        if record.body is not None:  # observability.log_bodies: shown with its secrets taken out
            entry["request_body"] = redacted_body(record.body)
        if record.response_body is not None:
            entry["response_body"] = redacted_body(record.response_body)
        if len(self.records) == self.capacity:
            oldest = self.records[0]
            if self._by_id.get(oldest["request_id"]) is oldest:
                del self._by_id[oldest["request_id"]]
        self.records.append(entry)
        self._by_id[str(entry["request_id"])] = entry
        for queue in self._subscribers:
            try:
                queue.put_nowait(entry)
            except asyncio.QueueFull:
                self.dropped += 1

    def routes(self) -> list[PlainRoute]:
        return [PlainRoute("GET", "/admin/requests", self.stream),
                PlainRoute("GET", "/admin/requests/{request_id}", self.one)]

    async def one(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        request_id = request.state["path_params"]["request_id"]
        entry = self._by_id.get(request_id)
        if entry is None:
            raise GatewayError(404, f"No recent request `{request_id[:128]}` on this instance (it keeps the last "
                               f"{self.capacity}).", "invalid_request_error", code="request_not_found",
                               retryable=False)
        return JSONResponse({**entry, "instance": INSTANCE_ID})

    async def stream(self, request: Request) -> StreamResponse:
        await authorize(self.auth, request, write=False)
        params = request.query_params()
        unknown = set(params) - {"model", "key_id", "status"}
        if unknown:
            name = sorted(unknown)[0]
            raise bad_request(f"Unknown query parameter `{name}`.", param=name, code="unknown_parameter")
        matches = record_filter(params)
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise GatewayError(503, "Too many live request streams open on this instance.", "api_error",
                               code="too_many_streams", headers={"retry-after": "5"})
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        backlog = [e for e in self.records if matches(e)][-BACKLOG:]
        return StreamResponse(self._events(queue, backlog, matches),
                              on_close=lambda _exc: self._subscribers.discard(queue))

    async def _events(self, queue: asyncio.Queue[dict[str, Any]], backlog: list[dict[str, Any]],
                      matches: Callable[[dict[str, Any]], bool]) -> AsyncIterator[bytes]:
        yield event_frame("instance", {"instance": INSTANCE_ID, "capacity": self.capacity})
        for entry in backlog:
            yield event_frame("request", entry)
        dropped = self.dropped
        while True:
            entry = await queue.get()
            if self.dropped != dropped:
                dropped = self.dropped
                yield event_frame("dropped", {"dropped_total": dropped})
            if matches(entry):
                yield event_frame("request", entry)
