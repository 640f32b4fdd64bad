"""Bedrock's embeddings (InvokeModel) and legacy completions (bridged onto Converse) through the real server.

Driven by the openai SDK's `embeddings.create` and `completions.create` (stream and not) against the
fake Bedrock runtime, which verifies every SigV4 signature with botocore (or the bearer API key) and
validates the InvokeModel bodies of Titan and Cohere as strictly as Bedrock does.
"""

from __future__ import annotations

import base64
import json
from array import array
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.bedrock_upstream import FakeBedrock, fake_embedding
from tests.integration.test_bedrock_provider import isolated_aws, provider_block
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec

REGION = "us-west-2"
KEY = ("AKIAINVOKEKEY0000003", "invoke-secret-3", None)
API_KEY = "bedrock-api-key-ABSKinvoke"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
NOVA = "us.amazon.nova-lite-v1:0"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    server = FakeBedrock(REGION, credentials={KEY[0]: KEY[1:]}, bearer_tokens={API_KEY}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeBedrock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchboardProcess]:
    config = f"""
providers:
{provider_block("br", fake, f'''
aws_access_key_id: {KEY[0]}
aws_secret_access_key: {KEY[1]}
''')}
{provider_block("br-key", fake, f"keys: [{API_KEY}]")}
{provider_block("lenient", fake, f'''
keys: [{API_KEY}]
drop_unsupported: true
''')}
models:
  titan: {{route: "br/{TITAN}"}}
  cohere: {{route: "br/{COHERE}"}}
  nova: {{route: "br/{NOVA}"}}
"""
    server = isolated_aws(SwitchboardProcess(config), tmp_path_factory.mktemp("aws")).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield c
    c.close()


def invokes(fake: FakeBedrock, since: int) -> list[dict[str, Any]]:
    return [r for r in fake.requests[since:] if r.get("invoke")]


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


# -- embeddings: Titan Text Embeddings v2

def test_titan_batch_fans_out_in_order_signed(client: openai.OpenAI, fake: FakeBedrock) -> None:
    texts = [f"text number {i}" for i in range(20)]
    start = len(fake.requests)
    fake.max_concurrent_invokes = 0
    raw = client.embeddings.with_raw_response.create(model="titan", input=texts, encoding_format="float",
                                                     dimensions=256)
    result = raw.parse()
    assert [d.index for d in result.data] == list(range(20))
    for text, item in zip(texts, result.data, strict=True):
        assert close(item.embedding, fake_embedding(text, 256))
    assert result.usage.prompt_tokens == 60 and result.usage.total_tokens == 60  # inputTextTokenCount summed
    calls = invokes(fake, start)
    assert len(calls) == 20 and all(c["auth"] == KEY[0] for c in calls)  # each one a verified SigV4 signature
    assert sorted(c["body"]["inputText"] for c in calls) == sorted(texts)
    assert all(c["body"] == {"inputText": c["body"]["inputText"], "dimensions": 256, "normalize": True}
               for c in calls)
    assert calls[0]["headers"]["Accept"] == "application/json"
    assert 1 < fake.max_concurrent_invokes <= 8  # concurrent, and bounded
    assert raw.headers["x-upstream-request-id"]
    validate_against_spec("CreateEmbeddingResponse", json.loads(raw.content))


def test_titan_base64_is_the_sdk_default(client: openai.OpenAI, gateway: SwitchboardProcess) -> None:
    result = client.embeddings.create(model="titan", input="hello world")  # the SDK asks for base64 and decodes
    assert close(result.data[0].embedding, fake_embedding("hello world", 1024))
    body = httpx.post(gateway.url + "/v1/embeddings", json={"model": "titan", "input": "hello world",
                                                             "encoding_format": "base64"}).json()
    packed = array("f")
    packed.frombytes(base64.b64decode(body["data"][0]["embedding"]))
    assert close(packed.tolist(), fake_embedding("hello world", 1024))


def test_titan_bearer_key(client: openai.OpenAI, fake: FakeBedrock) -> None:
    start = len(fake.requests)
    client.embeddings.create(model=f"br-key/{TITAN}", input="hi there")
    call = invokes(fake, start)[0]
    assert call["auth"] == "bearer" and call["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_titan_bad_dimensions_and_token_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="titan", input="x", dimensions=300)
    assert info.value.param == "dimensions" and "256" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="titan", input=[[1, 2, 3]])
    assert info.value.param == "input"


def test_aws_errors_are_mapped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client.embeddings.create(model="titan", input=["fine", "!error-throttling", "also fine"])
    assert limited.value.code == "ThrottlingException"
    with pytest.raises(openai.BadRequestError) as invalid:
        client.embeddings.create(model="titan", input=[""])
    assert invalid.value.code == "ValidationException" and "minLength" in invalid.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="cohere", input=["!error-accessdenied"])


def test_a_model_that_cannot_embed_is_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="nova", input="hi")
    assert info.value.param == "model" and NOVA in info.value.message


# -- embeddings: Cohere Embed v3

def test_cohere_batches_of_96_with_input_type(client: openai.OpenAI, fake: FakeBedrock) -> None:
    texts = [f"doc {i}" for i in range(100)]
    start = len(fake.requests)
    result = client.embeddings.create(model="cohere", input=texts, encoding_format="float")
    assert len(result.data) == 100
    assert close(result.data[0].embedding, fake_embedding("doc 0", 1024))
    assert close(result.data[99].embedding, fake_embedding("doc 99", 1024))
    calls = invokes(fake, start)
    assert [len(c["body"]["texts"]) for c in calls] == [96, 4]
    assert calls[0]["body"] == {"texts": texts[:96], "input_type": "search_document"}
    assert result.usage.prompt_tokens == 200  # X-Amzn-Bedrock-Input-Token-Count, summed
    client.embeddings.create(model="cohere", input="where?", extra_body={"input_type": "search_query",
                                                                         "truncate": "END"})
    assert fake.last()["body"] == {"texts": ["where?"], "input_type": "search_query", "truncate": "END"}


def test_cohere_has_no_dimensions_unless_dropped(client: openai.OpenAI, fake: FakeBedrock) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="cohere", input="x", dimensions=512)
    assert info.value.param == "dimensions" and info.value.code == "unsupported_parameter"
    client.embeddings.create(model=f"lenient/{COHERE}", input="x", dimensions=512)
    assert "dimensions" not in fake.last()["body"]


# -- legacy completions, bridged onto Converse

def test_completion_non_stream(client: openai.OpenAI, fake: FakeBedrock) -> None:
    raw = client.completions.with_raw_response.create(model="br/fake.echo-v1:0", prompt="Say this back",
                                                      max_tokens=20, temperature=0.5, top_p=0.9, stop=["\n\n"])
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Say this back" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 10
    request = fake.last()
    assert request["auth"] == KEY[0] and request["stream"] is False
    assert request["body"] == {"messages": [{"role": "user", "content": [{"text": "Say this back"}]}],
                               "inferenceConfig": {"maxTokens": 20, "temperature": 0.5, "topP": 0.9,
                                                   "stopSequences": ["\n\n"]}}
    validate_against_spec("CreateCompletionResponse", json.loads(raw.content))


def test_completion_stream(client: openai.OpenAI, fake: FakeBedrock) -> None:
    chunks = list(client.completions.create(model="nova", prompt="hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from amazon.nova-lite-v1:0"
    assert len({c.id for c in chunks}) == 1 and all(c.object == "text_completion" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 10
    assert fake.last()["stream"] is True
    plain = list(client.completions.create(model=f"br-key/{NOVA}", prompt=["hi"], stream=True))
    assert all(c.usage is None for c in plain) and fake.last()["auth"] == "bearer"


def test_completion_stream_midstream_failure_is_an_error_frame(gateway: SwitchboardProcess) -> None:
    with httpx.stream("POST", gateway.url + "/v1/completions", json={
            "model": "br/fake.midstream-throttling-v1:0", "prompt": "hi", "stream": True}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200 and "data: [DONE]" not in lines
    assert json.loads(lines[0][len("data: "):])["choices"][0]["text"] == "Hello "
    assert json.loads(lines[-1][len("data: "):])["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(("param", "value"), [("n", 2), ("logprobs", 1), ("echo", True), ("suffix", "end"),
                                              ("best_of", 3)])
def test_completion_parameters_converse_lacks(client: openai.OpenAI, fake: FakeBedrock, param: str,
                                              value: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="nova", prompt="hi", **{param: value})
    assert info.value.param == param and info.value.code == "unsupported_parameter"
    completion = client.completions.create(model=f"lenient/{NOVA}", prompt="hi", **{param: value})
    assert completion.choices[0].text == "Hello from amazon.nova-lite-v1:0"


def test_completion_prompt_must_be_one_text(client: openai.OpenAI) -> None:
    for prompt in (["one", "two"], [1, 2, 3]):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="nova", prompt=prompt)
        assert info.value.param == "prompt"


def test_completion_upstream_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="br/fake.error-validation-v1:0", prompt="hi")
    assert info.value.code == "context_length_exceeded"
