import openai
import pytest


def test_local_model_answers_through_openai_sdk(local_gateway):
    key = local_gateway.create_key(name="t")
    client = openai.OpenAI(base_url=local_gateway.api_url, api_key=key)
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=8)
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens <= 8
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="smollm2-135m-instruct",
                                       messages=[{"role": "user", "content": "x"}], temperature=3)
    assert exc.value.body["param"] == "temperature"
