"""Real third-party Responses API clients end to end through the real gateway, on their default paths:
the OpenAI Agents SDK's `Runner`, the Vercel AI SDK (`@ai-sdk/openai`, run by Node), LangChain's
`ChatOpenAI(use_responses_api=True)` and pydantic-ai's `OpenAIResponsesModel`. The model is bridged
to the scripted fake chat upstream (tests/fakes/agent_upstream.py: a JSON user message is a script
of tool calls), so a tool really runs in the client and the final answer quotes its result.
(Codex CLI: test_responses_codex.py.)
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.clients.node_clients import NODE_DIR, node_bin, run_client
from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.integration.fixtures import running_gateway, scripted_config
from tests.server import SwitchboardProcess

KEY = "sk-clients-test"
WEATHER_SCRIPT = json.dumps({"calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]})
NODE_TIMEOUT = 60.0  # seconds, per Node script run
HTTP_TIMEOUT = 30.0  # seconds, per HTTP request of an in-process client (their defaults are minutes)


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream) -> Iterator[SwitchboardProcess]:
    with running_gateway(scripted_config(KEY, upstream)) as server:
        yield server


def _bodies(upstream: FakeAgentUpstream, start: int) -> list[dict[str, Any]]:
    return [r["body"] for r in upstream.requests[start:]]


def _assert_weather_round_trip(bodies: list[dict[str, Any]]) -> None:
    """Two upstream calls: the tool is offered and called, then its result comes back to the model."""
    assert len(bodies) == 2
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["get_weather"]
    calls = bodies[1]["messages"][-2]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather" and json.loads(calls[0]["function"]["arguments"]) == {
        "city": "Oslo"}
    assert bodies[1]["messages"][-1] == {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny in Oslo"}


# -- the OpenAI Agents SDK (Python)
@pytest.fixture
async def agents_client(gateway: SwitchboardProcess, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The SDK's default client pointed at the gateway (as its docs show for other providers), tracing off."""
    from agents import set_default_openai_client, set_tracing_disabled
    from agents.models import _openai_shared
    from openai import AsyncOpenAI

    monkeypatch.setattr(_openai_shared, "_default_openai_client", None)  # restored after the test
    set_tracing_disabled(True)
    async with AsyncOpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=HTTP_TIMEOUT) as client:
        set_default_openai_client(client)
        yield


def _weather_agent(ran: list[str]) -> Any:
    from agents import Agent, function_tool

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"sunny in {city}"

    return Agent(name="weather", instructions="Answer with the weather tool.", model="small", tools=[get_weather])


async def test_agents_sdk_runner_with_a_function_tool(agents_client: None, upstream: FakeAgentUpstream) -> None:
    from agents import Runner

    ran: list[str] = []
    start = len(upstream.requests)
    result = await Runner.run(_weather_agent(ran), WEATHER_SCRIPT)
    assert ran == ["Oslo"] and result.final_output == "Tool said: sunny in Oslo"
    assert result.last_response_id is not None and result.last_response_id.startswith("resp_")
    bodies = _bodies(upstream, start)
    _assert_weather_round_trip(bodies)
    assert bodies[0]["messages"][0] == {"role": "system", "content": "Answer with the weather tool."}


async def test_agents_sdk_streamed_run_and_previous_response_id(agents_client: None,
                                                                upstream: FakeAgentUpstream) -> None:
    from agents import Runner

    ran: list[str] = []
    agent = _weather_agent(ran)
    start = len(upstream.requests)
    streamed = Runner.run_streamed(agent, WEATHER_SCRIPT)
    kinds = {event.type async for event in streamed.stream_events()}
    assert ran == ["Oslo"] and streamed.final_output == "Tool said: sunny in Oslo"
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    _assert_weather_round_trip(_bodies(upstream, start))
    # server-side conversation state: each model call continues the stored previous response
    start = len(upstream.requests)
    chained = await Runner.run(agent, WEATHER_SCRIPT, auto_previous_response_id=True)
    assert chained.final_output == "Tool said: sunny in Oslo" and ran == ["Oslo", "Oslo"]
    _assert_weather_round_trip(_bodies(upstream, start))


async def test_agents_sdk_structured_output(agents_client: None, upstream: FakeAgentUpstream) -> None:
    from agents import Agent, Runner
    from pydantic import BaseModel

    class City(BaseModel):
        city: str
        country: str

    agent = Agent(name="geo", model="small", output_type=City)
    answer = json.dumps({"city": "Oslo", "country": "Norway"})
    result = await Runner.run(agent, json.dumps({"calls": [], "rounds": 0, "answer": answer}))
    assert result.final_output == City(city="Oslo", country="Norway")
    fmt = upstream.last()["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"city", "country"}


# -- the Vercel AI SDK (Node)
def test_vercel_ai_sdk_generate_and_stream_text_with_a_tool(gateway: SwitchboardProcess,
                                                            upstream: FakeAgentUpstream) -> None:
    node = node_bin("node")
    env = {**os.environ, "SWITCHBOARD_BASE_URL": gateway.url + "/v1", "SWITCHBOARD_API_KEY": KEY,
           "SWITCHBOARD_MODEL": "small", "SWITCHBOARD_PROMPT": WEATHER_SCRIPT}
    start = len(upstream.requests)
    done = run_client([node, NODE_DIR / "ai_sdk.mjs"], env=env, timeout=NODE_TIMEOUT, cwd=NODE_DIR)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ran"] == ["Oslo", "Oslo"]  # generateText's and streamText's tool runs
    generate, stream = out["generate"], out["stream"]
    assert generate["text"] == "Tool said: sunny in Oslo" and generate["steps"] == 2
    assert generate["toolCalls"] == ["get_weather"] and generate["finishReason"] == "stop"
    assert generate["responseId"].startswith("resp_") and generate["usage"]["totalTokens"] == 30
    assert stream["text"] == "Tool said: sunny in Oslo" and stream["steps"] == 2 and stream["finishReason"] == "stop"
    for part in ("tool-input-delta", "tool-call", "tool-result", "text-delta", "finish"):
        assert part in stream["parts"]
    bodies = _bodies(upstream, start)
    _assert_weather_round_trip(bodies[0:2])
    _assert_weather_round_trip(bodies[2:4])
    assert bodies[2]["stream"] is True
    # the second turn: its earlier answer went back as an item_reference, resolved from the store
    assert out["turns"] == {"first": "Plain answer.", "second": "Plain answer."}
    assert bodies[5]["messages"] == [{"role": "user", "content": "first question"},
                                     {"role": "assistant", "content": "Plain answer."},
                                     {"role": "user", "content": "second question"}]


# -- LangChain and pydantic-ai
def test_langchain_chat_openai_with_the_responses_api(gateway: SwitchboardProcess,
                                                      upstream: FakeAgentUpstream) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="small", base_url=gateway.url + "/v1", api_key=KEY,  # type: ignore[arg-type]
                       use_responses_api=True, max_retries=0, timeout=HTTP_TIMEOUT)
    answer = model.invoke("hi")
    assert answer.text == "Plain answer." and answer.response_metadata["id"].startswith("resp_")
    streamed = "".join(chunk.text for chunk in model.stream("hi"))
    assert streamed == "Plain answer."
    follow = model.invoke([("user", "hi"), answer, ("user", "again")])
    assert follow.text == "Plain answer."
    assert [m["role"] for m in upstream.last()["body"]["messages"]] == ["user", "assistant", "user"]


def test_langchain_tool_loop_with_bind_tools(gateway: SwitchboardProcess, upstream: FakeAgentUpstream) -> None:
    from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    for streaming in (False, True):
        model = ChatOpenAI(model="small", base_url=gateway.url + "/v1", api_key=KEY,  # type: ignore[arg-type]
                           use_responses_api=True, streaming=streaming, max_retries=0,
                           timeout=HTTP_TIMEOUT).bind_tools([get_weather])
        start = len(upstream.requests)
        messages: list[BaseMessage] = [HumanMessage(WEATHER_SCRIPT)]
        asked = model.invoke(messages)
        assert [(c["name"], c["args"]) for c in asked.tool_calls] == [("get_weather", {"city": "Oslo"})]
        messages += [asked, *(ToolMessage(get_weather.invoke(c["args"]), tool_call_id=c["id"])
                              for c in asked.tool_calls)]
        assert model.invoke(messages).text == "Tool said: sunny in Oslo"
        _assert_weather_round_trip(_bodies(upstream, start))


async def test_pydantic_ai_openai_responses_model_with_a_tool(gateway: SwitchboardProcess,
                                                               upstream: FakeAgentUpstream) -> None:
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    ran: list[str] = []
    async with AsyncOpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=HTTP_TIMEOUT) as client:
        agent = Agent(OpenAIResponsesModel("small", provider=OpenAIProvider(openai_client=client)))

        @agent.tool_plain
        def get_weather(city: str) -> str:
            """The weather in a city."""
            ran.append(city)
            return f"sunny in {city}"

        start = len(upstream.requests)
        result = await agent.run(WEATHER_SCRIPT)
        assert ran == ["Oslo"] and result.output == "Tool said: sunny in Oslo"
        _assert_weather_round_trip(_bodies(upstream, start))
        again = await agent.run("again", message_history=result.all_messages())
        assert again.output == "Plain answer."
