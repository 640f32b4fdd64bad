"""The request quirks of an OpenAI-compatible upstream, from its provider config, applied to a body.

Three config keys (a `preset` fills them in for the known clouds, see presets.py), read once per
provider into a `Quirks`, applied by `to_openai_body` after its own rules:
- `unsupported_params`: fields the upstream rejects. Sent with a value that asks nothing (`n: 1`,
  zero penalties, false, null) they are removed quietly; asking for something they are a 400
  naming the parameter, or removed when the provider sets `drop_unsupported: true`;
- `rename_params`: a field the upstream knows under another name (Mistral's `random_seed`), moved
  there unless the client also sent the new name;
- `drop_params` entries `messages[].FIELD`: message fields the upstream rejects (Groq's `name`,
  DeepSeek's `reasoning_content` in replayed turns), removed from every message. (Plain
  `drop_params` entries are top-level fields, removed by `to_openai_body` itself.)
"""

from __future__ import annotations

from typing import Any

from ..config import ProviderConfig
from ..errors import bad_request

__all__ = ["Quirks"]

_MESSAGE_FIELD = "messages[]."


def _asks_something(name: str, value: Any) -> bool:
    """Whether a configured unsupported field asks for something. Not `chat_convert.asks_for`: that
    one judges a fixed list of OpenAI parameters (an empty `function_call` still asks), this one any
    field a config names, so an empty string, array or object asks nothing (`tools: []`)."""
    if value is None or value is False:
        return False
    if name == "n":
        return bool(value != 1)
    if name in ("presence_penalty", "frequency_penalty", "top_logprobs"):
        return bool(value != 0)
    if isinstance(value, dict | list | str):
        return bool(value)
    return True


class Quirks:
    """What `to_openai_body` must change for one provider; `of(config)` is None when nothing."""

    __slots__ = ("drop_unsupported", "message_fields", "provider", "renames", "stream_usage", "unsupported")

    def __init__(self, config: ProviderConfig) -> None:
        self.provider = config.name
        self.unsupported = tuple(config.unsupported_params)
        self.renames = tuple(config.rename_params.items())
        self.message_fields = frozenset(d[len(_MESSAGE_FIELD):] for d in config.drop_params
                                        if d.startswith(_MESSAGE_FIELD))
        self.drop_unsupported = config.drop_unsupported
        self.stream_usage = config.stream_usage

    @classmethod
    def of(cls, config: ProviderConfig) -> Quirks | None:
        quirks = cls(config)
        if quirks.unsupported or quirks.renames or quirks.message_fields or not quirks.stream_usage:
            return quirks
        return None

    def apply(self, out: dict[str, Any], endpoint: str, stream: bool) -> None:
        for name in self.unsupported:
            if name in out:
                if _asks_something(name, out[name]) and not self.drop_unsupported:
                    raise bad_request(f"Parameter '{name}' is not supported by provider `{self.provider}`. Remove "
                                      "it, or set `drop_unsupported: true` on the provider to drop it silently.",
                                      param=name, code="unsupported_parameter")
                del out[name]
        for old, new in self.renames:
            if old in out:
                value = out.pop(old)
                out.setdefault(new, value)
        if self.message_fields and endpoint == "chat" and isinstance(out.get("messages"), list):
            fields = self.message_fields
            out["messages"] = [{k: v for k, v in m.items() if k not in fields}
                               if isinstance(m, dict) and not fields.isdisjoint(m) else m for m in out["messages"]]
        if stream and not self.stream_usage:
            out.pop("stream_options", None)  # the upstream rejects it (and reports usage unasked)
