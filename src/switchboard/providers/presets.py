"""Presets for OpenAI-compatible clouds (`preset: NAME` on a `type: openai` provider): data only.

A preset is the values of provider config keys that `config/providers.py` uses for every key the provider
does not set itself (a key you set replaces the preset's value whole; lists are not merged). The
quirk keys are applied by providers/quirks.py:

- `base_url`, `key_header` (every service here takes `Authorization: Bearer <key>`; the local
  servers need no key);
- `forward_unknown_params: false` for services that reject fields they do not know;
- `unsupported_params`: documented-unsupported fields (a 400 naming them when they ask something,
  else removed; dropped with `drop_unsupported: true`);
- `rename_params`: fields the service knows under another name;
- `drop_params`: fields removed always (`messages[].FIELD`: from every message);
- `stream_usage: false` for services that reject `stream_options` (they report usage unasked).

The sources of each quirk are noted per entry (the services' own documentation, and for error shapes
the bodies their APIs return). Imports nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

# Fields that ask nothing of the model, which strict services reject: removed for them.
_BOOKKEEPING = ["store", "metadata", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"]

PRESETS: dict[str, dict[str, Any]] = {
    # ai.google.dev/gemini-api/docs/openai. Unknown fields are a 400 "Invalid JSON payload received.
    # Unknown name ...: Cannot find field." (its error bodies are a JSON list); include_usage is honoured.
    "gemini": {
        "base_url": "https://generativelanguage.googleapis.com/v1beta/openai",
        "forward_unknown_params": False,
        "drop_params": _BOOKKEEPING,
        "unsupported_params": ["logit_bias", "prediction", "audio", "modalities", "web_search_options", "verbosity"],
    },
    # console.groq.com/docs/openai: logprobs, logit_bias, top_logprobs and messages[].name are a 400;
    # n must be 1. Unknown fields are a 400 "property ... is unsupported".
    "groq": {
        "base_url": "https://api.groq.com/openai/v1",
        "forward_unknown_params": False,
        "unsupported_params": ["logprobs", "logit_bias", "top_logprobs", "n"],
        "drop_params": ["messages[].name"],
    },
    # docs.mistral.ai/api: extra fields are a 422 "Extra inputs are not permitted" (top level and in
    # messages); the seed is `random_seed`, the limit `max_tokens`; the last stream chunk carries usage.
    "mistral": {
        "base_url": "https://api.mistral.ai/v1",
        "forward_unknown_params": False,
        "rename_params": {"max_completion_tokens": "max_tokens", "seed": "random_seed"},
        "unsupported_params": ["logprobs", "top_logprobs", "logit_bias", "audio", "modalities", "web_search_options",
                               "functions", "function_call", "verbosity"],
        "drop_params": [*_BOOKKEEPING, "service_tier", "messages[].name", "messages[].reasoning_content",
                        "messages[].refusal", "messages[].annotations", "messages[].audio",
                        "messages[].function_call"],
        "stream_usage": False,
    },
    # api-docs.deepseek.com: `reasoning_content` in replayed assistant turns is a 400 (deepseek-reasoner);
    # stream_options.include_usage is honoured.
    "deepseek": {
        "base_url": "https://api.deepseek.com",
        "drop_params": ["messages[].reasoning_content"],
    },
    # docs.together.ai: takes extra sampling fields (top_k, repetition_penalty, min_p); the last stream
    # chunk carries usage.
    "together": {
        "base_url": "https://api.together.xyz/v1",
    },
    # docs.fireworks.ai: under /inference/v1; takes extra fields (top_k, ...).
    "fireworks": {
        "base_url": "https://api.fireworks.ai/inference/v1",
    },
    # openrouter.ai/docs: passes provider-specific fields on; streams carry ": OPENROUTER PROCESSING"
    # comments and report a failure mid-stream as a chunk with `error` and finish_reason "error".
    "openrouter": {
        "base_url": "https://openrouter.ai/api/v1",
    },
    # docs.x.ai: reasoning models (grok-3-mini, grok-4) reject presence_penalty and frequency_penalty.
    "xai": {
        "base_url": "https://api.x.ai/v1",
        "unsupported_params": ["presence_penalty", "frequency_penalty"],
    },
    # docs.ollama.com/api/openai-compatibility: no key; n and logit_bias are not among the supported
    # fields (ignored, silently); the limit is `max_tokens`.
    "ollama": {
        "base_url": "http://localhost:11434/v1",
        "unsupported_params": ["n", "logit_bias"],
        "rename_params": {"max_completion_tokens": "max_tokens"},
    },
    # docs.vllm.ai (OpenAI-compatible server): no key unless started with --api-key; takes extra
    # sampling fields (top_k, min_p, guided_json...); stream_options only with stream=true (the
    # adapter never sends it otherwise).
    "vllm": {
        "base_url": "http://localhost:8000/v1",
    },
    # lmstudio.ai/docs (OpenAI compatibility): no key; n and logprobs are not among the supported fields
    # (ignored, silently).
    "lmstudio": {
        "base_url": "http://localhost:1234/v1",
        "unsupported_params": ["n", "logprobs", "top_logprobs"],
    },
}
