"""Message contents on spans (`observability.trace_contents: true` only), in the GenAI conventions'
shapes: `gen_ai.input.messages` / `gen_ai.output.messages` as JSON strings of
`[{"role": ..., "parts": [{"type": "text", "content": ...}, {"type": "tool_call", ...}]}]`.

Every string is redacted with the error path's redaction (`errors.redact_secrets`: the gateway's
own provider and client keys, and anything shaped like an API key or a bearer token) and bounded
(`MAX_CONTENT_CHARS` per attribute), so a span never carries a credential or an unbounded prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import redact_secrets

__all__ = ["MAX_CONTENT_CHARS", "Redactor", "input_messages", "output_messages", "stream_output"]

MAX_CONTENT_CHARS = 64 * 1024


class Redactor:
    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def text(self, value: str) -> str:
        if len(value) > MAX_CONTENT_CHARS:
            value = value[:MAX_CONTENT_CHARS] + f"...(truncated, {len(value)} chars)"
        return redact_secrets(value, self.secrets)

    def json(self, value: Any) -> str:
        return self.text(orjson.dumps(value, default=str).decode())


def _parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append({"type": "text", "content": text})
                else:
                    parts.append({"type": str(part.get("type", "unknown"))})
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function")
            if not isinstance(function, dict):
                function = {}
            parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                          "arguments": function.get("arguments")})
    if message.get("role") == "tool":
        text = " ".join(p.get("content", "") for p in parts if p.get("type") == "text")
        return [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": text}]
    return parts


def input_messages(body: Mapping[str, Any], redactor: Redactor) -> str:
    """The request's messages (chat), prompt (legacy completions) or input (embeddings, Responses)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        shaped = [{"role": m.get("role"), "parts": _parts(m)} for m in messages if isinstance(m, dict)]
        return redactor.json(shaped)
    for name in ("prompt", "input"):
        if name in body:
            value = body[name]
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            return redactor.json([{"role": "user", "parts": [{"type": "text", "content": text}]}])
    return "[]"


def output_messages(body: Mapping[str, Any], redactor: Redactor) -> str:
    """A complete answer's choices (a chat completion, or a legacy completion's text)."""
    out: list[dict[str, Any]] = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            parts = _parts(message)
        elif isinstance(choice.get("text"), str):
            parts = [{"type": "text", "content": choice["text"]}]
        else:
            continue
        out.append({"role": "assistant", "parts": parts, "finish_reason": choice.get("finish_reason")})
    return redactor.json(out)


def stream_output(choice: Mapping[str, Any], into: list[str]) -> None:
    """The text one stream choice adds (content, or a legacy completion's text), kept while it fits."""
    if len(into) >= 16384:  # enough for MAX_CONTENT_CHARS of any stream; past it, nothing more is kept
        return
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    if isinstance(text, str) and text:
        into.append(text)
