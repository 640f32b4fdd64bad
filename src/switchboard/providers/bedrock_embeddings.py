"""OpenAI embeddings <-> Bedrock's embedding models on InvokeModel: the translators, with no I/O.

Bedrock has no common embeddings API: each model family takes its own body at
`POST /model/{modelId}/invoke`. `embedding_plan` picks the family from the model id (after any
inference-profile prefix, or the tail of a foundation-model / inference-profile ARN) and turns an
OpenAI embeddings request into the InvokeModel bodies to send, in order:

- Amazon Titan Text Embeddings v2 (`amazon.titan-embed-text-v2:0`): one text per call,
  `{"inputText", "dimensions", "normalize"}` -> `{"embedding", "inputTextTokenCount"}`.
  `dimensions` is 256, 512 or 1024 (Bedrock's default); `normalize` defaults to true (OpenAI's
  vectors are normalised), a client's boolean `normalize` wins.
- Amazon Titan Embeddings G1 (`amazon.titan-embed-text-v1`, `amazon.titan-embed-g1-text-02`): one
  text per call, `{"inputText"}` only.
- Cohere Embed v3 (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, and their `-light`
  variants): up to 96 texts per call, `{"texts", "input_type", "truncate"?}` -> `{"embeddings",
  "id", "response_type", "texts"}` (`embeddings` is a list of float vectors, or by type with
  `embedding_types`: `{"float": [...]}`). `input_type` is required by Cohere: a client's own
  (`search_document`, `search_query`, `classification`, `clustering`), else `search_document`. Token
  usage comes from the `X-Amzn-Bedrock-Input-Token-Count` response header.

Inputs must be text (a string or a list of strings; at most 2,048): token-id inputs are a 400.
`dimensions` where the family has none is a 400 naming it, or dropped with `drop_unsupported: true`.
A model of another family is a 400 naming the model. The vectors come back as floats; the
embeddings headend encodes them as base64 when the client asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ProviderConfig
from ..errors import GatewayError, bad_request
from .chat_convert import unsupported_parameter

__all__ = ["EmbeddingPlan", "embedding_plan", "embeddings_response", "model_family", "vectors_of"]

MAX_INPUTS = 2048  # OpenAI's own bound on inputs per request
COHERE_BATCH = 96  # Cohere Embed's texts per call
TITAN_DIMENSIONS = (256, 512, 1024)
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
COHERE_TRUNCATE = ("NONE", "START", "END")
TOKEN_COUNT_HEADER = "x-amzn-bedrock-input-token-count"

TITAN_V2 = "titan-v2"
TITAN_V1 = "titan-v1"
COHERE_V3 = "cohere-v3"
_FAMILIES = (
    ("amazon.titan-embed-text-v2", TITAN_V2),
    ("amazon.titan-embed-text-v1", TITAN_V1),
    ("amazon.titan-embed-g1-text", TITAN_V1),
    ("cohere.embed-english-v3", COHERE_V3),
    ("cohere.embed-multilingual-v3", COHERE_V3),
    ("cohere.embed-english-light-v3", COHERE_V3),
    ("cohere.embed-multilingual-light-v3", COHERE_V3),
)
_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


def model_family(model: str) -> str | None:
    """The embedding family of a Bedrock model id, profile id or ARN; None when it is none we know."""
    base = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
    for prefix in _PROFILE_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    for start, family in _FAMILIES:
        if base.startswith(start):
            return family
    return None


@dataclass(slots=True)
class EmbeddingPlan:
    """The InvokeModel bodies of one embeddings request, in input order, and how to read the answers."""

    family: str
    bodies: list[dict[str, Any]]
    inputs: int


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > MAX_INPUTS:
            raise bad_request(f"Too many inputs: {len(value)}; at most {MAX_INPUTS} per request.", param="input",
                              code="invalid_value")
        return value
    if isinstance(value, list) and not value:
        raise bad_request("'input' must not be empty.", param="input", code="invalid_value")
    raise bad_request("Bedrock embedding models take text: 'input' must be a string or a list of strings (token "
                      "ids are not accepted).", param="input", code="invalid_value")


def _no_dimensions(body: dict[str, Any], config: ProviderConfig, model: str) -> None:
    if body.get("dimensions") is not None and not config.drop_unsupported:
        raise unsupported_parameter("dimensions", config.name, f"AWS Bedrock InvokeModel, model `{model}`")


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = body.get(name, default)
    if value is None or value in allowed:
        return str(value) if value is not None else None
    raise bad_request(f"Invalid value for '{name}': {value!r}. Supported values are: {', '.join(allowed)}.",
                      param=name, code="invalid_value")


def embedding_plan(body: dict[str, Any], model: str, config: ProviderConfig) -> EmbeddingPlan:
    """The InvokeModel bodies for an OpenAI embeddings request (see the module docstring)."""
    family = model_family(model)
    if family is None:
        raise GatewayError(400, f"Model `{model}` of provider `{config.name}` is not an embedding model this gateway "
                                "can call on Bedrock: supported are Amazon Titan Text Embeddings (v2, G1) and Cohere "
                                "Embed v3 (english, multilingual).", "invalid_request_error", param="model",
                           code="unsupported_model", retryable=False)
    texts = _texts(body.get("input"))
    if family == COHERE_V3:
        _no_dimensions(body, config, model)
        input_type = _choice(body, "input_type", COHERE_INPUT_TYPES, "search_document")
        truncate = _choice(body, "truncate", COHERE_TRUNCATE, None)
        bodies = []
        for start in range(0, len(texts), COHERE_BATCH):
            call: dict[str, Any] = {"texts": texts[start:start + COHERE_BATCH], "input_type": input_type}
            if truncate is not None:
                call["truncate"] = truncate
            bodies.append(call)
        return EmbeddingPlan(family, bodies, len(texts))
    if family == TITAN_V1:
        _no_dimensions(body, config, model)
        return EmbeddingPlan(family, [{"inputText": text} for text in texts], len(texts))
    template: dict[str, Any] = {}
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if dimensions not in TITAN_DIMENSIONS or isinstance(dimensions, bool):
            raise bad_request(f"Invalid value for 'dimensions': {dimensions!r}. Model `{model}` supports "
                              f"{', '.join(map(str, TITAN_DIMENSIONS))}.", param="dimensions", code="invalid_value")
        template["dimensions"] = dimensions
    normalize = body.get("normalize")
    template["normalize"] = normalize if isinstance(normalize, bool) else True
    return EmbeddingPlan(family, [{"inputText": text, **template} for text in texts], len(texts))


def _invalid(provider: str, what: str) -> GatewayError:
    return GatewayError(502, f"Upstream provider `{provider}` returned an invalid embeddings answer ({what}).",
                        "api_error", code="upstream_invalid_response")


def _vector(value: Any, provider: str) -> list[float]:
    if not isinstance(value, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise _invalid(provider, "a vector is not a list of numbers")
    return value


def vectors_of(family: str, answer: dict[str, Any], expected: int, header_tokens: str | None,
               provider: str) -> tuple[list[list[float]], int]:
    """(the vectors, input tokens) of one InvokeModel answer of `family` that embedded `expected` texts."""
    if family in (TITAN_V2, TITAN_V1):
        tokens = answer.get("inputTextTokenCount")
        return [_vector(answer.get("embedding"), provider)], tokens if isinstance(tokens, int) else 0
    embeddings = answer.get("embeddings")
    if isinstance(embeddings, dict):  # response_type embeddings_by_type
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list) or len(embeddings) != expected:
        raise _invalid(provider, f"expected {expected} embeddings")
    try:
        tokens = int(header_tokens) if header_tokens else 0
    except ValueError:
        tokens = 0
    return [_vector(v, provider) for v in embeddings], tokens


def embeddings_response(vectors: list[list[float]], tokens: int, model: str) -> dict[str, Any]:
    """The OpenAI `list` of `embedding` objects."""
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
