"""POST /v1/completions (legacy text completion) and POST /v1/embeddings on the starter chat model."""

from __future__ import annotations

import base64
import math
import struct
from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

MODEL = "smollm2-135m-instruct"
DIMENSIONS = 576  # SmolLM2-135M's hidden size
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def vocab(starter_data_dir: Path):  # type: ignore[no-untyped-def]
    from llama_cpp import Llama

    llm = Llama(str(next((starter_data_dir / "models" / MODEL).glob("*.gguf"))), vocab_only=True, verbose=False)
    yield llm
    llm.close()


# Text completion -----------------------------------------------------------------------
def test_completion_has_the_openai_shape(openai_client):
    answer = openai_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert answer.id.startswith("cmpl-") and answer.object == "text_completion" and answer.model == MODEL
    assert answer.choices[0].text.strip() and answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 8


def test_completion_defaults_to_16_tokens(openai_client, vocab):
    no_end = {str(vocab.token_eos()): -100}  # the model cannot stop on its own: only the default can end it
    answer = openai_client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0, logit_bias=no_end)
    assert answer.usage.completion_tokens == 16 and answer.choices[0].finish_reason == "length"


def test_completion_echo_and_stop(openai_client):
    free = openai_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0).choices[0].text
    echoed = openai_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + free
    stop = free.split()[1]
    stopped = openai_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop])
    assert stopped.choices[0].text == free[: free.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_completion_stream(openai_client, http):
    whole = openai_client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0)
    chunks = list(
        openai_client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12
    with http.stream("POST", "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 2}, "logprobs"),
        ({"n": 2}, "'n'"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_completion_bad_input(http, extra, field):
    response = http.post("/v1/completions", json={"model": MODEL, "prompt": PROMPT, **extra})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["kind"] == "malformed" and field in error["message"]


def test_completion_prompt_beyond_the_context_is_overflow(http):
    response = http.post("/v1/completions", json={"model": MODEL, "prompt": "word " * 5000})
    assert response.status_code == 413 and response.json()["error"]["kind"] == "overflow"


# Embeddings ----------------------------------------------------------------------------
def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_with_the_sdk(openai_client):
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue grew by five percent."]
    answer = openai_client.embeddings.create(model=MODEL, input=texts)
    assert answer.object == "list" and answer.model == MODEL
    vectors = [item.embedding for item in answer.data]
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert all(len(v) == DIMENSIONS for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-3) for v in vectors)
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2])
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 10


def test_embeddings_float_and_base64_agree(http):
    text = "Subtitles for a holiday video."
    floats = http.post("/v1/embeddings", json={"model": MODEL, "input": text}).json()
    packed = http.post("/v1/embeddings", json={"model": MODEL, "input": [text], "encoding_format": "base64"}).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{DIMENSIONS}f", raw))
    assert len(floats["data"][0]["embedding"]) == DIMENSIONS
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded, floats["data"][0]["embedding"], strict=True))


def test_embeddings_of_token_ids_match_the_text(http, vocab):
    text = "The lighthouse keeper paints the sea."
    tokens = vocab.tokenize(text.encode(), add_bos=True, special=False)
    by_text = http.post("/v1/embeddings", json={"model": MODEL, "input": text}).json()["data"][0]["embedding"]
    by_ids = http.post("/v1/embeddings", json={"model": MODEL, "input": tokens}).json()["data"][0]["embedding"]
    assert _cosine(by_text, by_ids) > 0.9999


def test_chat_after_embeddings_is_unchanged(openai_client):
    """Embeddings run in a sequence of their own: the chat's cached prompt survives them, and so does its answer."""
    messages = [{"role": "user", "content": "Name three colours."}]
    openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    before = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    openai_client.embeddings.create(model=MODEL, input="something to embed")
    after = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    assert after.choices[0].message.content == before.choices[0].message.content
    cached = after.usage.prompt_tokens_details.cached_tokens
    assert cached == after.usage.prompt_tokens - 1, "the embeddings cleared the chat's cached prompt"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"input": ""}, 400, "input"),
        ({"input": []}, 400, "input"),
        ({"input": ["ok", ""]}, 400, "input"),
        ({}, 400, "input"),
        ({"input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": [[1, 2], [99999999]]}, 400, "input[1]"),
        ({"input": "word " * 5000}, 413, "input"),
    ],
)
def test_embeddings_bad_input(http, body, status, field):
    response = http.post("/v1/embeddings", json={"model": MODEL, **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["kind"] == ("overflow" if status == 413 else "malformed")
    assert field in error["message"]


def test_embeddings_dimensions_equal_to_the_model_size_is_fine(http):
    response = http.post("/v1/embeddings", json={"model": MODEL, "input": "x", "dimensions": DIMENSIONS})
    assert response.status_code == 200


def test_embeddings_unknown_model_through_the_sdk(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.embeddings.create(model="bogus", input="x")
    assert caught.value.body["kind"] == "malformed" and "bogus" in caught.value.body["message"]
