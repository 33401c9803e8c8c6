"""The OpenAI Agents SDK (``openai-agents``), with its default Responses model, against SpaceAI:
an agent with one function tool, on an OpenAI model and on a Claude model behind the fakes."""

from __future__ import annotations

import httpx
import pytest
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from fakes import Reply
from openai import AsyncOpenAI
from support.backends import chat_models
from support.server import GatewayServer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    models = [
        *chat_models(oai, ant),
    ]
    with GatewayServer(tmp_path_factory.mktemp("agents"), models=models) as gw:
        yield gw


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_agent_calls_its_tool_then_answers(gateway, fakes, model):
    oai, ant = fakes
    upstream = oai if model == "gpt-test" else ant
    upstream.reset()
    upstream.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
                    Reply(text="It is sunny in Oslo."))
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"Sunny, 21C in {city}"

    key = gateway.create_key(name=f"agents-{model}")
    set_tracing_disabled(True)
    set_default_openai_client(AsyncOpenAI(base_url=gateway.api_url, api_key=key, max_retries=0),
                              use_for_tracing=False)
    agent = Agent(name="weather", instructions="Answer with the weather.", model=model,
                  tools=[get_weather])
    result = await Runner.run(agent, "What is the weather in Oslo?")
    assert result.final_output == "It is sunny in Oslo."
    assert calls == ["Oslo"]
    # the tool's result went back to the model as the answer to its call
    assert "Sunny, 21C in Oslo" in str(upstream.last_request.body["messages"])
    key_id = httpx.get(gateway.api_url + "/key", headers={"Authorization": f"Bearer {key}"},
                       timeout=30).json()["id"]
    gateway.flush_ledger()
    rows = gateway.usage_rows(key=key_id)["data"]
    assert len(rows) == 2 and {r["endpoint"] for r in rows} == {"/v1/responses"}
