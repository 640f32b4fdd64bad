"""The upstream clients the transport matrix compares, behind the interface Switchboard's providers use.

`providers/base.py` uses exactly this of `providers/http1.HTTP1Client`:

- `HTTP1Client(connect_timeout=...)`, one per provider, made at startup; `await client.aclose()`;
- `await client.request(method, url, headers, body, *, read_timeout, total_timeout)` returning once
  the response head arrived (any status), raising an `OSError` (`TimeoutError` or
  `UpstreamConnectionError`) on a transport failure; `read_timeout` bounds every wait for bytes,
  `total_timeout` (non-stream only) the whole exchange including the body;
- the response: `status`, `headers` (lowercase names, repeats joined with ", "), `header(b"name")`,
  `await read()` (the whole body; the connection goes back to the pool), `iter_chunks()` (body bytes
  as they arrive: iterated, or `ready()`/`more()` as `http1.BodyChunks`, which `PulledBody` adapts),
  `release()` (done: pool the connection once the message is complete), `close()` (abandon: never
  reuse the connection).

`AiohttpClient`, `HttpxClient` and `PyreqwestClient` implement that over aiohttp, httpx and
pyreqwest, each used as its documentation recommends for throughput: one session/client per
provider with a keep-alive pool sized like ours (no limit on connections in use, up to 512 idle,
idle ones dropped after 30 s), no cookie jar, no proxy lookup, no decompression
(`Accept-Encoding: identity`, as ours sends), no redirects. Their exceptions are mapped to the ones
the providers catch. `release()` of a stream that is not complete yet (an SSE client stops reading
at `[DONE]`, the last chunk marker may still be in flight) finishes reading it in a task, so the
connection is pooled as ours does instead of closed.

How the gateway gets one of them (bench code only; nothing in src/ changes):

- `install(name)` puts the class in place of `HTTP1Client` in `switchboard.providers.base` (read
  when each provider starts); `ours` leaves it as it is;
- `app_factory()` is the ASGI app factory for uvicorn and granian (`--factory transports:app_factory`
  with bench/ on PYTHONPATH): `install($BENCH_CLIENT)`, then `switchboard.app.app_from_env()`;
- `python bench/transports.py --client NAME serve ...` is `switchboard serve ...` with that client.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from switchboard.providers.http1 import HTTP1Client, UpstreamConnectionError

__all__ = ["CLIENTS", "AiohttpClient", "HttpxClient", "PyreqwestClient", "app_factory", "available", "install"]

KEEPALIVE_S = 30.0  # as HTTP1Client's defaults
MAX_IDLE = 512
_IDENTITY = "identity"
_background: set[asyncio.Task[None]] = set()  # strong references to the finishing tasks


def _spawn(coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _joined(pairs: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


# ---------------------------------------------------------------------------------------------- aiohttp

class PulledBody:
    """A body read from another client's async iterator, as `http1.BodyChunks` offers one: iterated, or
    `ready()` (the piece fetched last, once) and `more()` (fetch the next; None at the end). It has no
    callback to offer reads from, so `pipe` does nothing and every read goes through the reader."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._piece: bytes | None = None
        self._ended = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    def ready(self) -> bytes | None:
        piece, self._piece = self._piece, None
        return piece

    def more(self) -> Awaitable[None] | None:
        return None if self._ended else self._fetch()

    async def _fetch(self) -> None:
        try:
            self._piece = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._ended = True

    def disarm(self) -> None:
        pass

    def pipe(self, sink: Callable[[bytes], bool] | None) -> None:
        pass


class AiohttpResponse:
    __slots__ = ("_headers", "_read_timeout", "_resp", "status")

    def __init__(self, resp: Any, read_timeout: float) -> None:
        self._resp = resp
        self._read_timeout = read_timeout
        self.status: int = resp.status
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = _joined(self._resp.headers.items())
        return self._headers

    def header(self, name: bytes) -> str | None:
        value: str | None = self._resp.headers.get(name.decode("latin-1"))
        return value

    async def read(self) -> bytes:
        import aiohttp

        try:
            data: bytes = await self._resp.read()  # the whole body; aiohttp pools the connection at its end
        except TimeoutError as exc:
            self._resp.close()
            raise TimeoutError("upstream read timed out") from exc
        except aiohttp.ClientError as exc:
            self._resp.close()
            raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
        return data

    def iter_chunks(self) -> PulledBody:
        return PulledBody(self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        import aiohttp

        content = self._resp.content
        while True:
            try:
                data: bytes = await content.readany()
            except TimeoutError as exc:
                raise TimeoutError("upstream read timed out") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
            if not data:
                return
            yield data

    def release(self) -> None:
        resp = self._resp
        if resp.content.is_eof():
            resp.release()
        else:
            _spawn(self._finish())

    async def _finish(self) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                while await self._resp.content.readany():
                    pass
        except BaseException:
            self._resp.close()
            return
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class AiohttpClient:
    """One `aiohttp.ClientSession` (made on first use, inside the running loop) per provider."""

    def __init__(self, connect_timeout: float = 10.0, keepalive_s: float = KEEPALIVE_S,
                 max_idle_per_origin: int = MAX_IDLE, user_agent: str = "switchboard") -> None:
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.user_agent = user_agent
        self._session: Any = None
        self._timeouts: dict[tuple[float, float | None], Any] = {}

    def _open(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=self.keepalive_s,
                                         ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            headers={"User-Agent": self.user_agent, "Accept-Encoding": _IDENTITY}, trust_env=False)
        return self._session

    def _timeout(self, read_timeout: float, total_timeout: float | None) -> Any:
        key = (read_timeout, total_timeout)
        timeout = self._timeouts.get(key)
        if timeout is None:
            import aiohttp

            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=total_timeout, sock_connect=self.connect_timeout, sock_read=read_timeout)
        return timeout

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
                      read_timeout: float, total_timeout: float | None = None) -> AiohttpResponse:
        import aiohttp

        session = self._session or self._open()
        try:
            resp = await session.request(method, url, headers=headers, data=body or None, allow_redirects=False,
                                         timeout=self._timeout(read_timeout, total_timeout))
        except TimeoutError as exc:
            raise TimeoutError(f"upstream timed out: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
        return AiohttpResponse(resp, read_timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# ------------------------------------------------------------------------------------------------ httpx

class HttpxResponse:
    __slots__ = ("_deadline", "_headers", "_raw", "_read_timeout", "_resp", "status")

    def __init__(self, resp: Any, read_timeout: float, deadline: float | None) -> None:
        self._resp = resp
        self._read_timeout = read_timeout
        self._deadline = deadline
        self.status: int = resp.status_code
        self._headers: dict[str, str] | None = None
        self._raw: AsyncIterator[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = _joined(self._resp.headers.multi_items())
        return self._headers

    def header(self, name: bytes) -> str | None:
        value: str | None = self._resp.headers.get(name.decode("latin-1"))
        return value

    async def read(self) -> bytes:
        import httpx

        try:
            if self._deadline is not None:
                async with asyncio.timeout_at(self._deadline):
                    await self._resp.aread()  # closes the response at its end: the connection is pooled
            else:
                await self._resp.aread()
        except (TimeoutError, httpx.TimeoutException) as exc:
            _spawn(self._resp.aclose())
            raise TimeoutError("upstream read timed out") from exc
        except httpx.HTTPError as exc:
            _spawn(self._resp.aclose())
            raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
        content: bytes = self._resp.content
        return content

    def iter_chunks(self) -> PulledBody:
        return PulledBody(self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        import httpx

        raw = self._raw = self._resp.aiter_raw()
        while True:
            try:
                data = await raw.__anext__()
            except StopAsyncIteration:
                return
            except httpx.TimeoutException as exc:
                raise TimeoutError("upstream read timed out") from exc
            except httpx.HTTPError as exc:
                raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
            yield data

    def release(self) -> None:
        if not self._resp.is_closed:
            _spawn(self._finish())

    async def _finish(self) -> None:
        try:
            if self._raw is not None:
                async with asyncio.timeout(self._read_timeout):
                    async for _ in self._raw:
                        pass
        except BaseException:
            pass
        finally:
            await self._resp.aclose()

    def close(self) -> None:
        if not self._resp.is_closed:
            _spawn(self._resp.aclose())


class HttpxClient:
    """One `httpx.AsyncClient` per provider. httpx has no whole-exchange timeout: `total_timeout` is an
    `asyncio.timeout_at` around the request and around the body read."""

    def __init__(self, connect_timeout: float = 10.0, keepalive_s: float = KEEPALIVE_S,
                 max_idle_per_origin: int = MAX_IDLE, user_agent: str = "switchboard") -> None:
        import httpx

        self.connect_timeout = connect_timeout
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max_idle_per_origin,
                                keepalive_expiry=keepalive_s),
            timeout=httpx.Timeout(None, connect=connect_timeout),
            headers={"User-Agent": user_agent, "Accept-Encoding": _IDENTITY},
            follow_redirects=False, trust_env=False)
        self._timeouts: dict[float, Any] = {}

    def _timeout(self, read_timeout: float) -> Any:
        timeout = self._timeouts.get(read_timeout)
        if timeout is None:
            import httpx

            timeout = self._timeouts[read_timeout] = httpx.Timeout(
                connect=self.connect_timeout, read=read_timeout, write=read_timeout, pool=None)
        return timeout

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
                      read_timeout: float, total_timeout: float | None = None) -> HttpxResponse:
        import httpx

        client = self._client
        req = client.build_request(method, url, headers=headers, content=body or None,
                                   timeout=self._timeout(read_timeout))
        deadline = None
        try:
            if total_timeout is not None:
                deadline = asyncio.get_running_loop().time() + total_timeout
                async with asyncio.timeout_at(deadline):
                    resp = await client.send(req, stream=True)
            else:
                resp = await client.send(req, stream=True)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TimeoutError(f"upstream timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
        return HttpxResponse(resp, read_timeout, deadline)

    async def aclose(self) -> None:
        await self._client.aclose()


# -------------------------------------------------------------------------------------------- pyreqwest

class PyreqwestResponse:
    """A non-stream exchange arrives whole (`build().send()`, pyreqwest's usual way: the body is read in
    Rust); a stream is a `build_streamed()` request whose body is read chunk by chunk."""

    __slots__ = ("_body", "_done", "_headers", "_read_timeout", "_request", "_resp", "status")

    def __init__(self, resp: Any, request: Any, body: bytes | None, read_timeout: float) -> None:
        self._resp = resp
        self._request = request  # the StreamRequest context of a stream, None for a whole answer
        self._body = body
        self._read_timeout = read_timeout
        self._done = request is None
        self.status: int = resp.status
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = _joined(self._resp.headers.items())
        return self._headers

    def header(self, name: bytes) -> str | None:
        value: str | None = self._resp.get_header(name.decode("latin-1"))
        return value

    async def read(self) -> bytes:
        if self._body is not None:
            return self._body
        parts = [chunk async for chunk in self._chunks()]
        return b"".join(parts)

    def iter_chunks(self) -> PulledBody:
        return PulledBody(self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        from pyreqwest.exceptions import RequestError

        reader = self._resp.body_reader
        while True:
            try:
                chunk = await reader.read_chunk()
            except TimeoutError as exc:
                raise TimeoutError("upstream read timed out") from exc
            except RequestError as exc:
                raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
            if chunk is None:
                await self._exit()
                return
            yield chunk.to_bytes()

    async def _exit(self) -> None:
        if not self._done:
            self._done = True
            await self._request.__aexit__(None, None, None)

    def release(self) -> None:
        if not self._done:
            _spawn(self._finish())

    async def _finish(self) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                reader = self._resp.body_reader
                while await reader.read_chunk() is not None:
                    pass
        except BaseException:
            pass
        await self._exit()

    def close(self) -> None:
        if not self._done:
            _spawn(self._exit())


class PyreqwestClient:
    """pyreqwest `Client`s (one per distinct read timeout: pyreqwest sets it per client, and a provider
    uses one), each with its own keep-alive pool in pyreqwest's Tokio runtime."""

    def __init__(self, connect_timeout: float = 10.0, keepalive_s: float = KEEPALIVE_S,
                 max_idle_per_origin: int = MAX_IDLE, user_agent: str = "switchboard") -> None:
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle_per_origin
        self.user_agent = user_agent
        self._clients: dict[float, Any] = {}
        self._totals: dict[float, timedelta] = {}

    def _client(self, read_timeout: float) -> Any:
        client = self._clients.get(read_timeout)
        if client is None:
            from pyreqwest.client import ClientBuilder

            client = self._clients[read_timeout] = (
                ClientBuilder()
                .connect_timeout(timedelta(seconds=self.connect_timeout))
                .read_timeout(timedelta(seconds=read_timeout))
                .pool_idle_timeout(timedelta(seconds=self.keepalive_s))
                .pool_max_idle_per_host(self.max_idle)
                .user_agent(self.user_agent)
                .default_headers({"Accept-Encoding": _IDENTITY})
                .gzip(False).brotli(False).zstd(False).deflate(False)
                .follow_redirects(False).referer(False).no_proxy()
                .build())
        return client

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
                      read_timeout: float, total_timeout: float | None = None) -> PyreqwestResponse:
        from pyreqwest.exceptions import RequestError

        builder = self._client(read_timeout).request(method, url).headers(headers)
        if body:
            builder = builder.body_bytes(body)
        try:
            if total_timeout is not None:
                total = self._totals.get(total_timeout)
                if total is None:
                    total = self._totals[total_timeout] = timedelta(seconds=total_timeout)
                resp = await builder.timeout(total).build().send()
                return PyreqwestResponse(resp, None, (await resp.bytes()).to_bytes(), read_timeout)
            request = builder.build_streamed()
            resp = await request.__aenter__()
        except TimeoutError as exc:
            raise TimeoutError(f"upstream timed out: {exc}") from exc
        except RequestError as exc:
            raise UpstreamConnectionError(str(exc) or type(exc).__name__) from exc
        return PyreqwestResponse(resp, request, None, read_timeout)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


# ------------------------------------------------------------------------------------------- selection

CLIENTS: dict[str, Callable[..., Any]] = {
    "ours": HTTP1Client,
    "aiohttp": AiohttpClient,
    "httpx": HttpxClient,
    "pyreqwest": PyreqwestClient,
}
_MODULES = {"ours": "httptools", "aiohttp": "aiohttp", "httpx": "httpx", "pyreqwest": "pyreqwest"}


def available(name: str) -> str | None:
    """None if the client's library imports here, else why not."""
    try:
        __import__(_MODULES[name])
    except Exception as exc:  # ImportError, or a broken native extension
        return f"{type(exc).__name__}: {exc}"
    return None


def install(name: str) -> None:
    """Make the providers create `name`'s client instead of HTTP1Client (before the app starts)."""
    from switchboard.providers import base

    if name not in CLIENTS:
        raise SystemExit(f"bench: unknown client {name!r}; one of {', '.join(CLIENTS)}")
    base.HTTP1Client = CLIENTS[name]  # type: ignore[misc]


def app_factory() -> Any:
    """The app for `uvicorn --factory` / `granian --factory`: Switchboard with $BENCH_CLIENT."""
    from switchboard.app import app_from_env

    install(os.environ.get("BENCH_CLIENT", "ours"))
    return app_from_env()


def main(argv: list[str]) -> int:
    """`transports.py --client NAME serve ...`: the `switchboard serve` command with that client."""
    if len(argv) < 2 or argv[0] != "--client":
        raise SystemExit("usage: transports.py --client NAME serve [switchboard serve options]")
    install(argv[1])
    from switchboard.cli import main as switchboard_main

    return switchboard_main(argv[2:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
