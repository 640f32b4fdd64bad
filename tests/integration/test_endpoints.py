"""Completions, embeddings, models, health and readiness through the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import MASTER
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec


@pytest.fixture
def sdk(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0) as c:
        yield c


@pytest.mark.parametrize(("prompt", "n", "choices"), [
    ("Say hi", 1, 1), (["a", "b", "c"], 1, 3), ([1, 2, 3], 2, 2), ([[1, 2], [3]], 2, 4),
])
def test_completions_prompt_shapes(sdk: openai.OpenAI, fake_openai: FakeOpenAI, prompt: object, n: int,
                                   choices: int) -> None:
    result = sdk.completions.create(model="gpt-4o-mini", prompt=prompt, n=n)  # type: ignore[arg-type]
    assert [c.index for c in result.choices] == list(range(choices))
    assert fake_openai.last()["body"]["prompt"] == prompt
    assert fake_openai.last()["path"] == "/v1/completions"


def test_completions_stream(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.completions.create(model="gpt-4o-mini", prompt=["a", "b"], stream=True,
                                         stream_options={"include_usage": True}))
    text: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + choice.text
    assert text == {0: " completion 0.0", 1: " completion 1.0"}
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_completions_validation(gateway: SwitchboardProcess) -> None:
    r = httpx.post(gateway.url + "/v1/completions", json={"model": "gpt-4o-mini", "prompt": [{"x": 1}]},
                   headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.post(gateway.url + "/v1/completions", json={"model": "gpt-4o-mini"},
                   headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_embeddings_base64_default_of_the_sdk(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    result = sdk.embeddings.create(model="embedder", input=["a", "b"])  # the SDK asks for base64 and decodes it
    assert fake_openai.last()["body"]["encoding_format"] == "base64"
    assert result.data[1].embedding == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert result.usage.prompt_tokens == 4


def test_embeddings_float_and_dimensions(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    result = sdk.embeddings.create(model="embedder", input="x", encoding_format="float", dimensions=3)
    assert result.data[0].embedding == pytest.approx([0.25, 0.75, 1.25])
    assert fake_openai.last()["body"]["dimensions"] == 3


def test_embeddings_converted_when_upstream_ignores_base64(gateway: SwitchboardProcess) -> None:
    r = httpx.post(gateway.url + "/v1/embeddings", headers={"Authorization": f"Bearer {MASTER}"},
                   json={"model": "up/embed-float", "input": "x", "encoding_format": "base64"})
    assert r.status_code == 200
    embedding = r.json()["data"][0]["embedding"]
    assert isinstance(embedding, str)
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER) as c:
        assert c.embeddings.create(model="up/embed-float", input="x").data[0].embedding == pytest.approx(
            [0.25, 0.75, 1.25, 1.75])
    validate_against_spec("CreateEmbeddingResponse", json.loads(
        httpx.post(gateway.url + "/v1/embeddings", headers={"Authorization": f"Bearer {MASTER}"},
                   json={"model": "embedder", "input": "x"}).content))


def test_embeddings_validation(gateway: SwitchboardProcess) -> None:
    r = httpx.post(gateway.url + "/v1/embeddings", headers={"Authorization": f"Bearer {MASTER}"},
                   json={"model": "embedder", "input": "x", "encoding_format": "int8"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format"


def test_models_list_and_retrieve(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert ids[:3] == ["gpt-4o-mini", "embedder", "strict-model"]
    assert "up/fake-large" in ids and "up/fake-small" in ids  # list_models: true on provider `up`
    assert "strict/fake-large" not in ids
    assert sdk.models.retrieve("gpt-4o-mini").owned_by == "switchboard"
    assert sdk.models.retrieve("up/fake-large").id == "up/fake-large"
    assert sdk.models.retrieve("strict/gpt-4o").id == "strict/gpt-4o"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")


def test_health_and_ready(gateway: SwitchboardProcess) -> None:
    r = httpx.get(gateway.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"} and r.headers["x-request-id"]
    r = httpx.get(gateway.url + "/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_incoming_request_id_is_kept(gateway: SwitchboardProcess) -> None:
    r = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {MASTER}", "x-request-id": "abc-1"})
    assert r.headers["x-request-id"] == "abc-1"
