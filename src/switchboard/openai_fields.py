"""The OpenAI request parameters, by endpoint, with the JSON types each accepts.

Shared by the headends (type checks) and the OpenAI-compatible adapter (which fields are "spec"
and always forwarded). Ordered as in the official API reference.
"""

from __future__ import annotations

__all__ = ["CHAT_FIELDS", "COMPLETION_FIELDS", "EMBEDDING_FIELDS"]

# Every OpenAI chat parameter (ordered as in the API reference). `user` and `metadata` are looser
# than the spec because real clients send objects there (Open WebUI, Vapi).
CHAT_FIELDS: dict[str, str] = {
    "messages": "array",
    "model": "string",
    "audio": "object|null",
    "frequency_penalty": "number|null",
    "function_call": "string|object",
    "functions": "array",
    "logit_bias": "object|null",
    "logprobs": "boolean|null",
    "max_completion_tokens": "integer|null",
    "max_tokens": "integer|null",
    "metadata": "object|null",
    "modalities": "array|null",
    "moderation": "any",
    "n": "integer|null",
    "parallel_tool_calls": "boolean",
    "prediction": "object|null",
    "presence_penalty": "number|null",
    "prompt_cache_key": "string",
    "prompt_cache_options": "any",
    "prompt_cache_retention": "string|null",
    "reasoning_effort": "string|null",
    "response_format": "object",
    "safety_identifier": "string",
    "seed": "integer|null",
    "service_tier": "string|null",
    "stop": "string|array|null",
    "store": "boolean|null",
    "stream": "boolean|null",
    "stream_options": "object|null",
    "temperature": "number|null",
    "tool_choice": "string|object",
    "tools": "array",
    "top_logprobs": "integer|null",
    "top_p": "number|null",
    "user": "any",
    "verbosity": "string|null",
    "web_search_options": "object",
}

COMPLETION_FIELDS: dict[str, str] = {
    "model": "string",
    "prompt": "string|array|null",
    "best_of": "integer|null",
    "echo": "boolean|null",
    "frequency_penalty": "number|null",
    "logit_bias": "object|null",
    "logprobs": "integer|null",
    "max_tokens": "integer|null",
    "n": "integer|null",
    "presence_penalty": "number|null",
    "seed": "integer|null",
    "stop": "string|array|null",
    "stream": "boolean|null",
    "stream_options": "object|null",
    "suffix": "string|null",
    "temperature": "number|null",
    "top_p": "number|null",
    "user": "any",
}

EMBEDDING_FIELDS: dict[str, str] = {
    "input": "string|array",
    "model": "string",
    "encoding_format": "string",
    "dimensions": "integer",
    "user": "any",
}
