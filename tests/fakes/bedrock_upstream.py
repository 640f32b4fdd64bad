"""A fake AWS Bedrock runtime (the Converse API) that speaks the real wire format, served on 127.0.0.1.

Auth, as AWS checks it: a bearer Bedrock API key from `bearer_tokens`, or a SigV4 signature, verified
by recomputing it with botocore's `SigV4Auth` from the credentials the test gave (access key ->
secret, session token), for this region and the `bedrock` service, with X-Amz-Date within five
minutes. Failures are AWS's 403s (`UnrecognizedClientException`, `InvalidSignatureException`...).

Requests are validated as strictly as Converse does: only Converse's top-level fields; messages
starting with `user` and alternating; content blocks of the known kinds, text never blank, images
and documents in the allowed formats with base64 bytes, document names in the allowed characters;
`toolUse` only from the assistant, every `toolResult` answering a `toolUse` of the previous turn and
`toolConfig` present whenever the history holds tool blocks; `inferenceConfig` fields and ranges;
a `toolChoice` naming a tool that exists. Invalid: 400 `ValidationException`. The model id comes
percent-encoded in the path (an ARN's `/` too); it must be a foundation model id with an optional
inference-profile prefix (`us.`, `eu.`, `apac.`, `global.`) or an inference-profile / foundation
model ARN, else 400 "The provided model identifier is invalid.".

Behaviour by model (the id after any prefix):
- `amazon.nova-lite-v1:0` and any other: the reply is "Hello from <model id>" (three text deltas);
- `fake.echo-v1:0`: the reply is the text of the last user turn;
- `fake.tools-v1:0`: "Let me check." then two `toolUse` blocks (get_weather {"city": "Paris"},
  get_time {"tz": "CET"}), stopReason tool_use; when the last user turn carries tool results the
  reply is "Results: <their texts joined by '; '>";
- a `toolChoice` naming a tool (any model): one `toolUse` of it with input {"answer": "Hello from <model>"};
- `fake.reasoning-v1:0`: a reasoningContent block "Let me think." (with a signature) before the text;
- `fake.cached-v1:0`: usage with cacheReadInputTokens 100, cacheWriteInputTokens 20;
- `fake.stop-<reason>-v1:0`: that stopReason (max_tokens, stop_sequence, guardrail_intervened, ...);
- `fake.error-<kind>-v1:0`: that AWS error (kinds in `ERRORS`);
- `fake.midstream-<kind>-v1:0`: the stream sends one text delta, then an exception event of that kind;
- `fake.cut-v1:0`: the stream's connection is closed after the first text delta;
- `fake.truncated-v1:0`: the stream ends cleanly before messageStop;
- `fake.split-v1:0`: the stream's frames are written a few bytes at a time (frames split across reads).
InvokeModel (`/model/{id}/invoke`) serves the embedding models with their own bodies, validated as
Bedrock does: Titan Text Embeddings v2 (`amazon.titan-embed-text-v2:0`: inputText non-empty,
dimensions 256/512/1024, normalize boolean, nothing else -> embedding, inputTextTokenCount (words),
embeddingsByType), Titan G1 (`amazon.titan-embed-text-v1`: inputText only, 1536 dimensions) and
Cohere Embed v3 (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`: texts 1..96 of at most
2048 characters, input_type required -> embeddings (by type with embedding_types), id,
response_type, texts, with the X-Amzn-Bedrock-Input-Token-Count header). Vectors come from
`fake_embedding`. A text `!error-<kind>` answers that AWS error; every Titan call takes 20 ms and
`max_concurrent_invokes` records how many were in flight at once. Other model ids: 400
ValidationException. Usage: inputTokens 10, outputTokens the number of content pieces. Every request is recorded
(`requests`: model, stream, auth ("bearer" or the access key), headers, body). Stream payloads carry
AWS's `p` padding field.
"""

from __future__ import annotations

import asyncio
import binascii
import datetime
import hashlib
import json
import re
import struct
import uuid
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.threaded import ThreadedServer

__all__ = ["ERRORS", "FakeBedrock", "encode_frame", "fake_embedding"]

ERRORS = {  # kind -> (HTTP status, exception name)
    "throttling": (429, "ThrottlingException"),
    "validation": (400, "ValidationException"),
    "accessdenied": (403, "AccessDeniedException"),
    "notready": (429, "ModelNotReadyException"),
    "unavailable": (503, "ServiceUnavailableException"),
    "internal": (500, "InternalServerException"),
    "timeout": (408, "ModelTimeoutException"),
    "notfound": (404, "ResourceNotFoundException"),
    "modelstream": (424, "ModelStreamErrorException"),
}
_TOP_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
               "promptVariables", "additionalModelResponseFieldPaths", "requestMetadata", "performanceConfig",
               "serviceTier", "outputConfig"}
_INFERENCE_FIELDS = {"maxTokens", "temperature", "topP", "stopSequences"}
_USER_BLOCKS = {"text", "image", "document", "toolResult", "cachePoint", "guardContent", "video"}
_ASSISTANT_BLOCKS = {"text", "toolUse", "reasoningContent", "cachePoint"}
_IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}
_DOCUMENT_FORMATS = {"pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"}
_DOCUMENT_NAME = re.compile(r"^(?!.*\s\s)[A-Za-z0-9\s\-()\[\]]{1,200}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MODEL_ID = re.compile(r"^(?:(?:us|eu|apac|global|us-gov)\.)?([a-z0-9-]{1,63}\.[a-z0-9_.:-]{1,100})$")
_ARN = re.compile(r"^arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:\d{0,12}:(?:inference-profile|foundation-model)/"
                  r"(.+)$")
_PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream|invoke)$")
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")
INPUT_TOKENS = 10
_TITAN_V2_FIELDS = {"inputText", "dimensions", "normalize", "embeddingTypes"}
_COHERE_FIELDS = {"texts", "images", "input_type", "truncate", "embedding_types"}
_COHERE_INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}
_EMBED_DIMENSIONS = {"amazon.titan-embed-text-v1": 1536, "amazon.titan-embed-g1-text-02": 1536,
                     "cohere.embed-english-v3": 1024, "cohere.embed-multilingual-v3": 1024}


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """The vector the fake returns for `text`: derived from the text, so a test can check order."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % 32] - 128) / 128, 6) for i in range(dimensions)]


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, name: str = "ValidationException") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.name = name


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length, CRC32), string headers
    (name length, name, type 7, value length, value), the payload, and the CRC32 of all before it."""
    encoded = b"".join(bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode()))
                       + value.encode() for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def _aws_error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={
        "x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-RequestId": str(uuid.uuid4())})


def _words(blocks: list[dict[str, Any]], block: dict[str, Any]) -> list[str]:
    """The text deltas of a text block: word by word when it is the only block, else whole."""
    return re.findall(r"\S+\s*|\s+", block["text"]) if len(blocks) == 1 else [block["text"]]


def _pieces(blocks: list[dict[str, Any]]) -> int:
    return sum(len(_words(blocks, b)) if "text" in b else 1 for b in blocks)


def _text_of(turn: dict[str, Any]) -> str:
    return "".join(b["text"] for b in turn["content"] if "text" in b)


class FakeBedrock(ThreadedServer):
    def __init__(self, region: str, credentials: dict[str, tuple[str, str | None]] | None = None,
                 bearer_tokens: set[str] | None = None) -> None:
        super().__init__()
        self.region = region
        self.credentials = credentials or {}
        self.bearer_tokens = bearer_tokens or set()
        self.app.router.add_post("/{tail:.*}", self.handle)
        self.invokes_in_flight = 0
        self.max_concurrent_invokes = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- auth
    def _authenticate(self, request: web.Request, body: bytes) -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            if header[len("Bearer "):] not in self.bearer_tokens:
                raise Invalid("Invalid API Key format: Must start with pre-defined prefix", 403,
                              "UnrecognizedClientException")
            return "bearer"
        match = _AUTH.match(header)
        if match is None:
            raise Invalid("Missing Authentication Token", 403, "MissingAuthenticationTokenException")
        access_key, date, region, service, signed, signature = match.groups()
        if access_key not in self.credentials:
            raise Invalid("The security token included in the request is invalid.", 403, "UnrecognizedClientException")
        secret, token = self.credentials[access_key]
        amz_date = request.headers.get("X-Amz-Date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            raise Invalid("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                          400, "IncompleteSignatureException") from None
        if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300:
            raise Invalid("Signature expired", 403, "InvalidSignatureException")
        names = signed.split(";")
        if region != self.region or service != "bedrock" or date != amz_date[:8] or "host" not in names \
                or "x-amz-date" not in names:
            raise Invalid(f"Credential should be scoped to a valid region ({self.region}) and service (bedrock).",
                          403, "InvalidSignatureException")
        if token is not None and (request.headers.get("X-Amz-Security-Token") != token
                                  or "x-amz-security-token" not in names):
            raise Invalid("The security token included in the request is invalid.", 403, "UnrecognizedClientException")
        url = f"http://{request.headers['Host']}{request.raw_path}"
        aws = AWSRequest("POST", url, data=body,
                         headers={name: request.headers[name] for name in names if name != "host"})
        aws.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(access_key, secret, token), "bedrock", region)
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        if expected != signature:
            raise Invalid("The request signature we calculated does not match the signature you provided. Check "
                          "your AWS Secret Access Key and signing method.", 403, "InvalidSignatureException")
        return access_key

    # -- validation
    def _model(self, raw: str) -> str:
        model_id = unquote(raw)
        arn = _ARN.match(model_id)
        base = _MODEL_ID.match(arn.group(1) if arn else model_id)
        if base is None:
            raise Invalid("The provided model identifier is invalid.")
        return base.group(1)

    def _check_block(self, block: Any, role: str, where: str, previous_uses: set[str]) -> None:
        if not isinstance(block, dict) or len(block) != 1:
            raise Invalid(f"{where}: a content block must have exactly one member")
        kind = next(iter(block))
        allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
        if kind not in allowed:
            raise Invalid(f"{where}: {kind} is not allowed in a {role} message")
        value = block[kind]
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise Invalid(f"The text field in the ContentBlock object at {where} is blank. Add text to the text "
                              "field, and try again.")
        elif kind == "image":
            if value.get("format") not in _IMAGE_FORMATS:
                raise Invalid(f"{where}.image.format: unsupported image format")
            source = value.get("source") or {}
            if not (isinstance(source.get("bytes"), str) and source["bytes"]) and "s3Location" not in source:
                raise Invalid(f"{where}.image.source: bytes or s3Location required")
        elif kind == "document":
            if value.get("format") not in _DOCUMENT_FORMATS:
                raise Invalid(f"{where}.document.format: unsupported document format")
            if not isinstance(value.get("name"), str) or not _DOCUMENT_NAME.match(value["name"]):
                raise Invalid(f"{where}.document.name: the name can only contain alphanumeric characters, single "
                              "whitespace characters, hyphens, parentheses and square brackets")
            if not isinstance((value.get("source") or {}).get("bytes"), str):
                raise Invalid(f"{where}.document.source: bytes required")
        elif kind == "toolUse":
            if not isinstance(value.get("toolUseId"), str) or not _TOOL_NAME.match(value.get("name") or "") \
                    or not isinstance(value.get("input"), dict):
                raise Invalid(f"{where}.toolUse: toolUseId, name and an object input are required")
        elif kind == "toolResult":
            if value.get("toolUseId") not in previous_uses:
                raise Invalid(f"{where}.toolResult: the toolUseId does not match a toolUse block of the previous "
                              "assistant turn")
            content = value.get("content")
            if not isinstance(content, list) or not content:
                raise Invalid(f"{where}.toolResult.content: must not be empty")
            for k, part in enumerate(content):
                if not isinstance(part, dict) or len(part) != 1 or next(iter(part)) not in ("text", "json", "image",
                                                                                             "document"):
                    raise Invalid(f"{where}.toolResult.content[{k}]: invalid block")
        elif kind == "cachePoint":
            if value.get("type") != "default":
                raise Invalid(f"{where}.cachePoint.type must be 'default'")

    def _validate(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise Invalid("Malformed input request")
        unknown = set(body) - _TOP_FIELDS
        if unknown:
            raise Invalid(f"Malformed input request: extraneous key [{sorted(unknown)[0]}] is not permitted")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Invalid("A conversation must start with a user message. Try again with a conversation that starts "
                          "with a user message.")
        uses_tools = False
        previous_uses: set[str] = set()
        for i, message in enumerate(messages):
            role = message.get("role")
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected:
                raise Invalid("A conversation must start with a user message. Try again with a conversation that "
                              "starts with a user message." if i == 0 else
                              "A conversation must alternate between user and assistant roles. Make sure the "
                              "conversation alternates between user and assistant roles and try again.")
            content = message.get("content")
            if not isinstance(content, list) or not content:
                raise Invalid(f"messages.{i}.content: must not be empty")
            uses: set[str] = set()
            for j, block in enumerate(content):
                self._check_block(block, role, f"messages.{i}.content.{j}", previous_uses)
                if "toolUse" in block:
                    uses.add(block["toolUse"]["toolUseId"])
                uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
            previous_uses = uses
        for j, block in enumerate(body.get("system") or []):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in ("text", "cachePoint",
                                                                                           "guardContent"):
                raise Invalid(f"system.{j}: invalid system content block")
            if "text" in block and not block["text"].strip():
                raise Invalid(f"The text field in the SystemContentBlock object at system.{j} is blank.")
        inference = body.get("inferenceConfig") or {}
        if set(inference) - _INFERENCE_FIELDS:
            raise Invalid(f"inferenceConfig: extraneous key [{sorted(set(inference) - _INFERENCE_FIELDS)[0]}]")
        if "maxTokens" in inference and (not isinstance(inference["maxTokens"], int) or inference["maxTokens"] < 1):
            raise Invalid("inferenceConfig.maxTokens: must be at least 1")
        for name in ("temperature", "topP"):
            if name in inference and not 0 <= inference[name] <= 1:
                raise Invalid(f"inferenceConfig.{name}: must be between 0 and 1")
        tool_config = body.get("toolConfig")
        if uses_tools and tool_config is None:
            raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
        if tool_config is not None:
            tools = tool_config.get("tools")
            if not isinstance(tools, list) or not tools:
                raise Invalid("toolConfig.tools: must not be empty")
            names = set()
            for k, tool in enumerate(tools):
                spec = tool.get("toolSpec") if isinstance(tool, dict) else None
                if not isinstance(spec, dict) or not _TOOL_NAME.match(spec.get("name") or "") or \
                        not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
                    raise Invalid(f"toolConfig.tools.{k}.toolSpec: name and inputSchema.json are required")
                names.add(spec["name"])
            choice = tool_config.get("toolChoice")
            if choice is not None:
                if not isinstance(choice, dict) or len(choice) != 1 or next(iter(choice)) not in ("auto", "any",
                                                                                                  "tool"):
                    raise Invalid("toolConfig.toolChoice: exactly one of auto, any, tool")
                if "tool" in choice and choice["tool"].get("name") not in names:
                    raise Invalid("toolConfig.toolChoice.tool.name: no such tool")

    # -- answers
    def _content(self, body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], str]:
        """(the reply's content blocks, stopReason)."""
        last = body["messages"][-1]
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        if "tool" in choice:
            return [{"toolUse": {"toolUseId": "tooluse_forced01", "name": choice["tool"]["name"],
                                 "input": {"answer": f"Hello from {model}"}}}], "tool_use"
        if model == "fake.tools-v1:0":
            results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
            if results and last["role"] == "user":
                texts = ["".join(p.get("text", "") for p in r["content"]) for r in results]
                return [{"text": "Results: " + "; ".join(texts)}], "end_turn"
            return [{"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_weather01", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tooluse_time02", "name": "get_time", "input": {"tz": "CET"}}}], \
                "tool_use"
        text = f"Hello from {model}"
        if model == "fake.echo-v1:0":
            text = _text_of(next(m for m in reversed(body["messages"]) if m["role"] == "user"))
        blocks: list[dict[str, Any]] = [{"text": text}]
        if model == "fake.reasoning-v1:0":
            blocks.insert(0, {"reasoningContent": {"reasoningText": {"text": "Let me think.",
                                                                     "signature": "sig-abc"}}})
        stop = "end_turn"
        found = re.match(r"^fake\.stop-([a-z_]+)-v1:0$", model)
        if found:
            stop = found.group(1)
        return blocks, stop

    def _usage(self, model: str, pieces: int) -> dict[str, int]:
        usage = {"inputTokens": INPUT_TOKENS, "outputTokens": pieces}
        extra = {"cacheReadInputTokens": 100, "cacheWriteInputTokens": 20} if model == "fake.cached-v1:0" else {}
        return {**usage, "totalTokens": INPUT_TOKENS + pieces + sum(extra.values()), **extra}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        match = _PATH.match(request.raw_path)
        if match is None:
            return web.json_response({"message": "Unknown operation"}, status=404,
                                     headers={"x-amzn-ErrorType": "UnknownOperationException"})
        stream = match.group(2) == "converse-stream"
        if match.group(2) == "invoke":
            return await self._invoke(request, raw, match.group(1))
        try:
            auth = self._authenticate(request, raw)
            model = self._model(match.group(1))
            try:
                body = json.loads(raw)
            except ValueError:
                raise Invalid("Malformed input request") from None
            self.requests.append({"model": unquote(match.group(1)), "stream": stream, "auth": auth,
                                  "headers": dict(request.headers), "body": body})
            self._validate(body)
        except Invalid as exc:
            return _aws_error(exc.status, exc.name, exc.message)
        found = re.match(r"^fake\.error-([a-z]+)-v1:0$", model)
        if found:
            status, name = ERRORS[found.group(1)]
            return _aws_error(status, name, f"fake {name}: " + (
                "Input is too long for requested model." if name == "ValidationException" else "try later"))
        blocks, stop = self._content(body, model)
        request_id = str(uuid.uuid4())
        if not stream:
            return web.json_response({
                "output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
                "usage": self._usage(model, _pieces(blocks)), "metrics": {"latencyMs": 12}},
                headers={"x-amzn-RequestId": request_id})
        return await self._stream(request, model, blocks, stop, request_id)

    # -- InvokeModel: the embedding models
    def _titan(self, model: str, body: Any) -> tuple[dict[str, Any], dict[str, str]]:
        v2 = model.startswith("amazon.titan-embed-text-v2")
        allowed = _TITAN_V2_FIELDS if v2 else {"inputText"}
        if not isinstance(body, dict) or set(body) - allowed:
            extra = sorted(set(body) - allowed)[0] if isinstance(body, dict) else "body"
            raise Invalid(f"Malformed input request: #: extraneous key [{extra}] is not permitted, please reformat "
                          "your input and try again.")
        text = body.get("inputText")
        if not isinstance(text, str) or not text:
            raise Invalid("Malformed input request: #/inputText: expected minLength: 1, actual: 0, please reformat "
                          "your input and try again.")
        dimensions = body.get("dimensions", 1024) if v2 else _EMBED_DIMENSIONS[model]
        if dimensions not in (256, 512, 1024, 1536) or (v2 and dimensions == 1536):
            raise Invalid("Malformed input request: #/dimensions: 17 is not a valid enum value, please reformat your "
                          "input and try again.".replace("17", str(dimensions)))
        if "normalize" in body and not isinstance(body["normalize"], bool):
            raise Invalid("Malformed input request: #/normalize: expected type: Boolean")
        self._maybe_error(text)
        vector = fake_embedding(text, dimensions)
        answer: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": len(text.split())}
        if v2:
            answer["embeddingsByType"] = {"float": vector}
        return answer, {}

    def _cohere(self, model: str, body: Any) -> tuple[dict[str, Any], dict[str, str]]:
        if not isinstance(body, dict) or set(body) - _COHERE_FIELDS:
            extra = sorted(set(body) - _COHERE_FIELDS)[0] if isinstance(body, dict) else "body"
            raise Invalid(f"Malformed input request: #: extraneous key [{extra}] is not permitted")
        if body.get("input_type") not in _COHERE_INPUT_TYPES:
            raise Invalid("Malformed input request: #: required key [input_type] not found")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or len(texts) > 96:
            raise Invalid(f"Malformed input request: #/texts: expected maxItems: 96, actual: {len(texts or [])}")
        for text in texts:
            if not isinstance(text, str) or len(text) > 2048:
                raise Invalid("Malformed input request: #/texts: expected maxLength: 2048")
            self._maybe_error(text)
        vectors = [fake_embedding(t, _EMBED_DIMENSIONS[model]) for t in texts]
        types = body.get("embedding_types")
        answer: dict[str, Any] = {"id": str(uuid.uuid4()), "texts": texts}
        if types:
            answer.update(response_type="embeddings_by_type", embeddings={"float": vectors})
        else:
            answer.update(response_type="embeddings_floats", embeddings=vectors)
        return answer, {"X-Amzn-Bedrock-Input-Token-Count": str(sum(len(t.split()) for t in texts))}

    @staticmethod
    def _maybe_error(text: str) -> None:
        found = re.match(r"^!error-([a-z]+)$", text)
        if found:
            status, name = ERRORS[found.group(1)]
            raise Invalid(f"fake {name}: try later", status, name)

    async def _invoke(self, request: web.Request, raw: bytes, raw_model: str) -> web.StreamResponse:
        try:
            auth = self._authenticate(request, raw)
            model = self._model(raw_model)
            try:
                body = json.loads(raw)
            except ValueError:
                raise Invalid("Malformed input request, please reformat your input and try again.") from None
            self.requests.append({"model": unquote(raw_model), "invoke": True, "auth": auth,
                                  "headers": dict(request.headers), "body": body})
            if model.startswith("amazon.titan-embed"):
                self.invokes_in_flight += 1
                self.max_concurrent_invokes = max(self.max_concurrent_invokes, self.invokes_in_flight)
                try:
                    await asyncio.sleep(0.02)
                    answer, headers = self._titan(model, body)
                finally:
                    self.invokes_in_flight -= 1
            elif model.startswith("cohere.embed"):
                answer, headers = self._cohere(model, body)
            else:
                raise Invalid("The provided model doesn't support on-demand throughput or InvokeModel with this "
                              "body.")
        except Invalid as exc:
            return _aws_error(exc.status, exc.name, exc.message)
        return web.json_response(answer, headers={"x-amzn-RequestId": str(uuid.uuid4()), **headers})

    async def _stream(self, request: web.Request, model: str, blocks: list[dict[str, Any]], stop: str,
                      request_id: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                           "x-amzn-RequestId": request_id})
        await resp.prepare(request)
        split = model == "fake.split-v1:0"

        async def send(event: str, payload: dict[str, Any]) -> None:
            frame = encode_frame({":event-type": event, ":content-type": "application/json", ":message-type": "event"},
                                 json.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"}).encode())
            if not split:
                await resp.write(frame)
                return
            for start in range(0, len(frame), 7):
                await resp.write(frame[start:start + 7])
                await asyncio.sleep(0)

        pieces = 0
        await send("messageStart", {"role": "assistant"})
        for index, block in enumerate(blocks):
            if "text" in block:
                for n, word in enumerate(_words(blocks, block)):
                    await send("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": word}})
                    pieces += 1
                    if n == 0:
                        mid = re.match(r"^fake\.midstream-([a-z]+)-v1:0$", model)
                        if mid:
                            name = ERRORS[mid.group(1)][1]
                            await resp.write(encode_frame(
                                {":exception-type": name[0].lower() + name[1:], ":content-type": "application/json",
                                 ":message-type": "exception"},
                                json.dumps({"message": f"fake {name} mid-stream"}).encode()))
                            await resp.write_eof()
                            return resp
                        if model == "fake.cut-v1:0":
                            assert request.transport is not None
                            request.transport.close()
                            return resp
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"]["reasoningText"]
                await send("contentBlockDelta", {"contentBlockIndex": index,
                                                 "delta": {"reasoningContent": {"text": reasoning["text"]}}})
                await send("contentBlockDelta", {"contentBlockIndex": index,
                                                 "delta": {"reasoningContent": {"signature": reasoning["signature"]}}})
                pieces += 1
            elif "toolUse" in block:
                use = block["toolUse"]
                await send("contentBlockStart", {"contentBlockIndex": index, "start": {
                    "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}})
                arguments = json.dumps(use["input"])
                for cut in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
                    await send("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": cut}}})
                pieces += 1
            await send("contentBlockStop", {"contentBlockIndex": index})
        if model == "fake.truncated-v1:0":
            await resp.write_eof()
            return resp
        await send("messageStop", {"stopReason": stop})
        await send("metadata", {"usage": self._usage(model, pieces), "metrics": {"latencyMs": 12}})
        await resp.write_eof()
        return resp
