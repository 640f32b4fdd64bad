"""An estimate of a chat request's input tokens, for when no upstream can count them.

Used by `/v1/messages/count_tokens` for models whose provider has no token counting (every provider
but Anthropic's), and for the `input_tokens` of a stream's first `message_start` event while the
upstream's own count comes only at the end (OpenAI sends usage last).

The method: every character of text the model reads (message text, tool call names and arguments,
tool results, tool definitions as JSON) counted at 4 characters per token, rounded up, plus 3 tokens
of framing per message; an image or a file counts a flat 1,600 tokens (about a 1 MP image in
Anthropic's and OpenAI's accounting) instead of the length of its data. Real tokenizers differ by
model: for English and code this is typically within ±25 % of the upstream's count.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["CHARS_PER_TOKEN", "MEDIA_TOKENS", "estimate_input_tokens"]

CHARS_PER_TOKEN = 4
MEDIA_TOKENS = 1600
_PER_MESSAGE = 3


def _content_chars(content: Any) -> tuple[int, int]:
    """(characters of text, number of images/files) in a message's content."""
    if isinstance(content, str):
        return len(content), 0
    chars = media = 0
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            chars += len(part["text"])
        elif part.get("type") in ("image_url", "file", "input_audio"):
            media += 1
    return chars, media


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """The estimated input tokens of a hub (OpenAI chat) body: see the module docstring."""
    chars = media = 0
    messages = body.get("messages") or ()
    for message in messages:
        if not isinstance(message, dict):
            continue
        text, files = _content_chars(message.get("content"))
        chars += text
        media += files
        for call in message.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                chars += len(str(fn.get("name") or "")) + len(str(fn.get("arguments") or ""))
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return -(-chars // CHARS_PER_TOKEN) + _PER_MESSAGE * len(messages) + MEDIA_TOKENS * media
