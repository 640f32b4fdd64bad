"""A real MCP server for tests (official SDK, FastMCP), over stdio or `--http PORT` (Streamable HTTP).

Tools: `add`, `echo`, `fail` (raises: an `isError` result), `crash` (the process exits at once),
`slow` (sleeps), `pid` (the process id, to see restarts), `grow` (adds a tool `extra` and sends
`notifications/tools/list_changed`), `headers` (over HTTP: the Authorization and X-Mcp-Test headers
the call came with) and `big` (a result of `size` characters).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("testtools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
def fail(reason: str = "boom") -> str:
    """Always fails."""
    raise ValueError(f"tool failed: {reason}")


@server.tool()
def crash() -> str:
    """Kill this server process."""
    os._exit(3)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def pid() -> str:
    """This server's process id."""
    return str(os.getpid())


@server.tool()
def headers(ctx: Context) -> str:  # type: ignore[type-arg]
    """The Authorization and X-Mcp-Test headers of the HTTP request this call came in."""
    request = ctx.request_context.request
    if request is None:
        return "not over HTTP"
    return f"authorization={request.headers.get('authorization')}; x-mcp-test={request.headers.get('x-mcp-test')}"


@server.tool()
def big(size: int) -> str:
    """A result of `size` characters."""
    return "x" * size


def extra() -> str:
    """A tool added at runtime."""
    return "extra!"


@server.tool()
async def grow(ctx: Context) -> str:  # type: ignore[type-arg]
    """Add the tool `extra` and tell the client the tool list changed."""
    server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    args = parser.parse_args()
    if args.http:
        server.settings.port = args.http
        server.settings.log_level = "WARNING"
        server.run("streamable-http")
    else:
        server.run()
