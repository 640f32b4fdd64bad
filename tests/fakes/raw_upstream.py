"""An OpenAI-compatible upstream written at the byte level, for wire faults aiohttp cannot produce.

It runs an asyncio server in its own thread on a free 127.0.0.1 port, keeps connections alive,
and picks its behaviour by the requested model name:

- any other model: a normal chat answer (JSON, or an SSE stream ending in `[DONE]`)
- `close-second`: the first request on each connection is answered; a second request on the same
  connection is read in full, then the connection is closed without a byte (as an upstream that
  processed it and died, or closed its idle keep-alive connection as the request crossed)
- `endless-headers`: a status line, then headers without end (8 MiB of them, then silence)
- `huge-body`: `Content-Length: 10^12`, a few body bytes, then silence
- `big-event-<n>`: a stream: one normal chunk, then an event of n bytes of content sent in 1 KiB
  writes (JSON of a chunk, valid if it ever ends), then the rest of the stream
- `stray-<tag>`: a normal answer, then (20 ms later, the connection idle) the start of another
  response nobody asked for; the connection stays open

`requests` records (connection number, model, the last message's content) of every request.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Self

__all__ = ["RawUpstream"]


def _completion(model: str) -> bytes:
    return json.dumps({"id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": f"Hello from {model}"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}).encode()


def _chunk(model: str, content: str, finish: str | None = None) -> bytes:
    delta = {"content": content} if finish is None else {}
    return json.dumps({"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode()


def _chunked(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


class RawUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[tuple[int, str, str]] = []
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, content: str) -> int:
        """How many requests carried this message content."""
        return sum(1 for _, _, c in self.requests if c == content)

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            handlers = asyncio.all_tasks(loop)
            for task in handlers:
                task.cancel()
            if handlers:
                loop.run_until_complete(asyncio.wait(handlers))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        number = self._connections
        try:
            for served in range(1_000_000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body: dict[str, Any] = json.loads(await reader.readexactly(length)) if length else {}
                model = str(body.get("model", ""))
                content = str((body.get("messages") or [{}])[-1].get("content", ""))
                self.requests.append((number, model, content))
                if model == "close-second" and served == 1:
                    return
                if not await self._answer(writer, model, bool(body.get("stream"))):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, model: str, stream: bool) -> bool:
        """Write the answer; False when the connection must end with it."""
        if model == "endless-headers":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            line = b"x-filler: " + b"f" * 100 + b"\r\n"
            for _ in range(8 * 1024 * 1024 // 16 // len(line)):
                writer.write(line * 16)
                await writer.drain()
            await asyncio.sleep(30)  # until the client gives up and closes
            return False
        if model == "huge-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{")
            await writer.drain()
            await asyncio.sleep(30)
            return False
        if not stream:
            body = _completion(model)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            if model.startswith("stray-"):
                await asyncio.sleep(0.02)
                writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Le")
                await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(_chunked(b"data: " + _chunk(model, "Hello") + b"\n\n"))
        await writer.drain()
        if model.startswith("big-event-"):
            size = int(model.rsplit("-", 1)[1])
            event = b"data: " + _chunk(model, "x" * size) + b"\n\n"
            for at in range(0, len(event), 1024):
                writer.write(_chunked(event[at:at + 1024]))
                await writer.drain()
        writer.write(_chunked(b"data: " + _chunk(model, "", "stop") + b"\n\ndata: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True
