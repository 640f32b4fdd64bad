"""A real MCP server (official SDK, FastMCP, Streamable HTTP on `--http PORT`) whose one tool, `trace`,
answers with what the request carried of the W3C trace context: the HTTP `traceparent` and
`tracestate` headers and the `params._meta` of the call, as JSON."""

from __future__ import annotations

import argparse
import json

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("tracetools")


@server.tool()
def trace(ctx: Context) -> str:  # type: ignore[type-arg]
    """What trace context this call arrived with."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", {}) or {}
    meta = ctx.request_context.meta
    return json.dumps({"traceparent": headers.get("traceparent"), "tracestate": headers.get("tracestate"),
                       "meta": meta.model_dump() if meta is not None else None})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, required=True)
    args = parser.parse_args()
    server.settings.port = args.http
    server.settings.log_level = "WARNING"
    server.run("streamable-http")
