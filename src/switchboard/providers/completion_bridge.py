"""Legacy completions (`/v1/completions`) for an upstream that only chats (Bedrock's Converse).

The prompt becomes one user message of a hub chat request (`max_tokens`, `temperature`, `top_p`,
`stop` and the rest carry over and are translated by the adapter's chat path, which also refuses
what it cannot honour, e.g. `n` > 1); the chat answer or stream comes back as `text_completion`
objects and chunks (`cmpl-` ids), the same conversion agents use (`agents/as_completion`).

Completions-only parameters a chat cannot honour (`echo`, `suffix`, `logprobs`, `best_of` > 1) are a
400 naming the parameter, or dropped with the provider's `drop_unsupported: true`. The prompt must
be one text (a string or a list of one string): token prompts and several prompts are a 400.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ..agents.as_completion import completion_chunk, completion_from_chat, prompt_text
from ..config import ProviderConfig
from ..hub import ChatRequest, Chunk, UpstreamResult, UpstreamStream
from .base import BatchedChunkStream
from .chat_convert import unsupported_parameter

__all__ = ["CompletionChunkStream", "chat_from_completion_body", "completion_result"]

_COMPLETION_ONLY = frozenset({"prompt", "suffix", "echo", "best_of", "logprobs"})


def _asks(name: str, value: Any) -> bool:
    if value is None or value is False:
        return False
    if name == "best_of":
        return bool(value != 1)
    if name == "suffix":
        return bool(value)
    return True


def chat_from_completion_body(body: dict[str, Any], model: str, config: ProviderConfig, stream: bool) -> ChatRequest:
    """The hub chat request answering a completions request on provider `config`."""
    if not config.drop_unsupported:
        for name in ("echo", "suffix", "logprobs", "best_of"):
            if _asks(name, body.get(name)):
                raise unsupported_parameter(name, config.name, "legacy completions bridged onto chat")
    text = prompt_text(body.get("prompt"))
    chat = {k: v for k, v in body.items() if k not in _COMPLETION_ONLY}
    chat["messages"] = [{"role": "user", "content": text}]
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    return ChatRequest(body=chat, model=model, stream=stream, include_usage=include_usage)


def completion_result(result: UpstreamResult) -> UpstreamResult:
    result.body = completion_from_chat(result.body)
    result.raw = None  # the upstream's bytes were a chat answer
    return result


class CompletionChunkStream(BatchedChunkStream):
    """A chat `UpstreamStream` seen as a completions stream (chunks that show nothing are left out)."""

    def __init__(self, chat: UpstreamStream) -> None:
        self._chat = chat
        self.request_id = chat.request_id
        self._pending: deque[Chunk] = deque()
        self._source = self._converted()

    async def _converted(self) -> AsyncIterator[list[Chunk]]:
        batches = getattr(self._chat, "batches", None)
        if batches is not None:
            async for batch in batches():
                converted = [c for c in map(completion_chunk, batch) if c is not None]
                if converted:
                    yield converted
            return
        async for chunk in self._chat:
            one = completion_chunk(chunk)
            if one is not None:
                yield [one]

    @property
    def complete(self) -> bool:
        return bool(getattr(self._chat, "complete", False))

    async def aclose(self) -> None:
        await self._chat.aclose()
