"""Legacy completions answered by a chat target (an agent): the prompt becomes a chat of one user
message, and the chat answer or stream comes back as `text_completion` objects.

Only what a chat can honour is accepted: one prompt string (or a list of one string), no `echo`,
`suffix`, `logprobs` or `best_of` > 1; other parameters (max_tokens, temperature, stop...) carry over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..errors import bad_request
from ..hub import ChatRequest, Chunk, HubStream

__all__ = ["CompletionStream", "chat_from_completion", "completion_chunk", "completion_from_chat", "prompt_text"]

# Completions-only fields: dropped from the chat request (after the checks below).
_COMPLETION_ONLY = frozenset({"prompt", "suffix", "echo", "best_of", "logprobs"})


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    raise bad_request("This model answers one text prompt: `prompt` must be a string (or a list of one string).",
                      param="prompt", code="invalid_value")


def chat_from_completion(body: dict[str, Any], model: str, stream: bool) -> ChatRequest:
    text = prompt_text(body.get("prompt"))
    for name, refused in (("echo", body.get("echo")), ("suffix", body.get("suffix")),
                          ("logprobs", body.get("logprobs")), ("best_of", (body.get("best_of") or 1) != 1)):
        if refused:
            raise bad_request(f"`{name}` is not supported when the model is an agent.", param=name,
                              code="unsupported_parameter")
    chat = {k: v for k, v in body.items() if k not in _COMPLETION_ONLY}
    chat["messages"] = [{"role": "user", "content": text}]
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    return ChatRequest(body=chat, model=model, stream=stream, include_usage=include_usage)


def _completion_id(chat_id: Any) -> str:
    text = str(chat_id or "")
    return "cmpl-" + (text[len("chatcmpl-"):] if text.startswith("chatcmpl-") else text)


def completion_from_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` as a `text_completion` (the tool activity in reasoning is not text: dropped)."""
    choices = []
    for choice in chat.get("choices") or ():
        message = choice.get("message") or {}
        choices.append({"index": choice.get("index", 0), "text": message.get("content") or "", "logprobs": None,
                        "finish_reason": choice.get("finish_reason")})
    return {"id": _completion_id(chat.get("id")), "object": "text_completion", "created": chat.get("created"),
            "model": chat.get("model"), "choices": choices, "usage": chat.get("usage")}


def completion_chunk(chunk: Chunk) -> Chunk | None:
    """A `chat.completion.chunk` as a `text_completion` chunk; None when it carries nothing to show."""
    choices = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        text = delta.get("content")
        finish = choice.get("finish_reason")
        if text or finish:
            choices.append({"index": choice.get("index", 0), "text": text or "", "logprobs": None,
                            "finish_reason": finish})
    usage = chunk.get("usage")
    if not choices and usage is None:
        return None  # a role or reasoning-only chunk: nothing a completions client can show
    return {"id": _completion_id(chunk.get("id")), "object": "text_completion", "created": chunk.get("created"),
            "model": chunk.get("model"), "choices": choices, "usage": usage}


def _batch(chunks: list[Chunk]) -> list[Chunk]:
    return [c for c in map(completion_chunk, chunks) if c is not None]


class CompletionStream:
    """A chat `HubStream` seen as a completions stream."""

    __slots__ = ("_chat", "first", "headers")

    def __init__(self, chat: HubStream) -> None:
        self._chat = chat
        self.headers = chat.headers
        self.first = _batch(chat.first)

    async def rest(self) -> AsyncIterator[list[Chunk]]:
        async for batch in self._chat.rest():
            converted = _batch(batch)
            if converted:
                yield converted

    async def aclose(self) -> None:
        await self._chat.aclose()
