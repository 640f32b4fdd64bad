"""An OTLP/HTTP trace receiver in the test process: `POST /v1/traces` with an `ExportTraceServiceRequest`
protobuf (decoded with opentelemetry-proto, which the exporter brings), answered 200 as a collector does.

`spans()` flattens what arrived into `ReceivedSpan`s (ids as hex, attributes as plain values) for assertions;
`wait_for(predicate)` polls until the spans a test expects have been exported (the batch processor
exports once a second).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int  # OTLP's: 1 internal, 2 server, 3 client
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 2 error
    status_message: str
    flags: int
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(ReceivedSpan(
                    s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex() or None, s.kind,
                    s.start_time_unix_nano, s.end_time_unix_nano, {kv.key: _value(kv.value) for kv in s.attributes},
                    s.status.code, s.status.message, s.flags, resource, ss.scope.name))
    return out


class OtlpReceiver(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_post("/v1/traces", self.traces)
        self.received: list[ReceivedSpan] = []
        self.content_types: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        spans = decode(body)
        with self._lock:
            self.content_types.append(request.content_type)
            self.headers.append(dict(request.headers))
            self.received.extend(spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.received)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.trace_id == trace_id]

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if predicate(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"the spans expected did not arrive; got: {[s.name for s in self.spans()]}")
