"""Chat completions through the real server and the official openai SDK, on smollm2-135m-instruct.

Greedy answers (temperature 0) of the starter model are deterministic, so a
test can ask once without an option and once with it and compare.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.observe import timed_post, timed_stream

MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello to Anna in one short sentence."}]


@pytest.fixture(scope="module")
def vocab(starter_data_dir: Path):  # type: ignore[no-untyped-def]
    """The model's tokenizer, to pick token ids for logit_bias (vocab only: no weights)."""
    from llama_cpp import Llama

    path = next((starter_data_dir / "models" / MODEL).glob("*.gguf"))
    llm = Llama(str(path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def test_answer_has_the_openai_shape(openai_client, server):
    answer = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0)
    assert answer.id.startswith("chatcmpl-")
    assert answer.object == "chat.completion"
    assert abs(answer.created - time.time()) < 300
    assert answer.model == MODEL
    choice = answer.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.message.tool_calls is None
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage.prompt_tokens > 10 and usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_alias_resolves_to_the_model(openai_client):
    answer = openai_client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=4, temperature=0)
    assert answer.model == MODEL


def test_stream_matches_the_whole_answer(openai_client):
    whole = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=40, temperature=0)
    chunks = list(
        openai_client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=40,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content for c in content) == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_wire_format_ends_with_done(http):
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 30, "temperature": 0, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers.get("x-request-id")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert not any("usage" in c and c["usage"] for c in chunks), "usage only when stream_options asks for it"


def test_first_tokens_arrive_long_before_the_answer_ends(http, vocab):
    """Text is sent as it is generated: the first words of a 150-token answer come long before its end.

    Compared with the same request answered whole, timed here: a server that held
    the stream back until the end would deliver its first words no sooner than that.
    """
    story = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    body = {"model": MODEL, "messages": story, "max_tokens": 150, "temperature": 0,
            "logit_bias": {str(vocab.token_eos()): -100}}  # no early end: always 150 tokens
    http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 1})  # loaded and warm
    whole, seconds = timed_post(http, "/v1/chat/completions", json=body)
    assert whole.json()["usage"]["completion_tokens"] == 150
    timed = timed_stream(http, "/v1/chat/completions", lines=True, json={**body, "stream": True})
    arrived = [(at, json.loads(line[6:])) for at, line in zip(timed.arrivals, timed.pieces, strict=True)
               if line.startswith("data: {")]
    chunks = [chunk for _, chunk in arrived]
    first_text = next(at for at, c in arrived if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert first_text < 0.5 * seconds, (first_text, seconds)
    assert timed.ended - first_text > 0.5 * timed.ended, (first_text, timed.ended)  # most tokens came after it
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole.json()["choices"][0]["message"]["content"]


def test_content_as_text_parts_equals_string(openai_client):
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "Say hello to Anna "}, {"type": "text", "text": "in one short sentence."}]}
    ]
    a = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20, temperature=0)
    b = openai_client.chat.completions.create(model=MODEL, messages=parts, max_tokens=20, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_second_turn_reuses_the_cached_prefix(openai_client):
    first = [
        {"role": "system", "content": "You answer in one sentence. Session 7781."},
        {"role": "user", "content": "What colour is the sky on a clear day?"},
    ]
    one = openai_client.chat.completions.create(model=MODEL, messages=first, max_tokens=30, temperature=0)
    second = [*first, {"role": "assistant", "content": one.choices[0].message.content}, {"role": "user", "content": "And at sunset?"}]
    two = openai_client.chat.completions.create(model=MODEL, messages=second, max_tokens=10, temperature=0)
    assert one.usage.prompt_tokens_details.cached_tokens < one.usage.prompt_tokens // 2
    # The whole first turn (prompt and answer) comes from the cache; only the new question is read.
    assert two.usage.prompt_tokens_details.cached_tokens >= one.usage.prompt_tokens
    assert two.usage.prompt_tokens - two.usage.prompt_tokens_details.cached_tokens < 20


def test_same_seed_same_answer(openai_client):
    story = [{"role": "user", "content": "Tell me a very short story about a fox."}]

    def ask(seed: int) -> str:
        answer = openai_client.chat.completions.create(model=MODEL, messages=story, max_tokens=30, temperature=1.2, seed=seed)
        return answer.choices[0].message.content

    first = ask(1234)
    openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5)  # something else in between
    assert ask(1234) == first
    assert any(ask(seed) != first for seed in (1, 2, 3)), "other seeds should give other answers"


def test_stop_sequence_ends_the_answer(openai_client):
    free = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=30, temperature=0)
    text = free.choices[0].message.content
    words = text.split()
    assert len(words) >= 4
    stop = " " + words[2]
    expected = text[: text.index(stop)]
    for stops in (stop, [stop, "zzzz-never"]):
        answer = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=30, temperature=0, stop=stops)
        assert answer.choices[0].message.content == expected
        assert answer.choices[0].finish_reason == "stop"
    streamed = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=30, temperature=0, stop=stop, stream=True)
    chunks = [c for c in streamed if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_ends_with_length(openai_client, field):
    story = [{"role": "user", "content": "Write a long story about the sea."}]
    answer = openai_client.chat.completions.create(model=MODEL, messages=story, temperature=0, **{field: 5})
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 5


def test_logit_bias_steers_tokens(openai_client, vocab):
    free = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    text = free.choices[0].message.content
    first_token = vocab.tokenize(text.encode(), add_bos=False, special=False)[0]
    banned = openai_client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, temperature=0, logit_bias={str(first_token): -100}
    )
    assert vocab.tokenize(banned.choices[0].message.content.encode(), add_bos=False)[0] != first_token
    banana = vocab.tokenize(b"Banana", add_bos=False, special=False)[0]
    forced = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0, logit_bias={str(banana): 100})
    assert forced.choices[0].message.content.startswith(vocab.detokenize([banana]).decode())


_STORIES: dict[str, str] = {}  # seeded or greedy answers are fixed: the three cases share their baselines


def _story(openai_client, **options) -> str:  # type: ignore[no-untyped-def]
    key = json.dumps(options, sort_keys=True)
    if key not in _STORIES:
        story = [{"role": "user", "content": "Tell me a very short story about a fox."}]
        answer = openai_client.chat.completions.create(model=MODEL, messages=story, max_tokens=24, **options)
        _STORIES[key] = str(answer.choices[0].message.content)
    return _STORIES[key]


@pytest.mark.parametrize(
    "narrowing",
    [{"top_p": 0.0001}, {"extra_body": {"top_k": 1}}, {"extra_body": {"min_p": 1.0}}],
    ids=["top_p", "top_k", "min_p"],
)
def test_samplers_that_leave_one_candidate_give_the_greedy_answer(openai_client, narrowing):
    """At a high temperature a sampler narrowed to the likeliest token must write the greedy answer: it reached llama.cpp."""
    greedy = _story(openai_client, temperature=0)
    loose = [_story(openai_client, temperature=1.5, seed=seed) for seed in (1, 2)]
    assert greedy not in loose  # without the narrowing, sampling wanders off
    assert all(_story(openai_client, temperature=1.5, seed=seed, **narrowing) == greedy for seed in (1, 2))


@pytest.mark.parametrize(
    "penalty",
    [{"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"extra_body": {"repeat_penalty": 1.8}}],
    ids=["frequency", "presence", "repeat"],
)
def test_penalties_change_the_greedy_answer(openai_client, penalty):
    """Greedy answers are fixed, so a penalty that reaches llama.cpp's sampler shows as a different answer."""
    listing = [{"role": "user", "content": "List ten fruits, one per line, each line starting with a dash."}]

    def ask(**options: object) -> str:
        answer = openai_client.chat.completions.create(model=MODEL, messages=listing, max_tokens=40, temperature=0,
                                                       **options)
        return str(answer.choices[0].message.content)

    plain = ask()
    assert plain.count("\n") >= 3, plain  # a list: the same tokens ("-", newlines) come back again and again
    assert ask(**penalty) != plain


def test_user_and_n_are_accepted(openai_client):
    answer = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, temperature=0, user="someone", n=1)
    plain = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, temperature=0)
    assert answer.choices[0].message.content == plain.choices[0].message.content


def test_developer_is_the_same_as_system(openai_client):
    def ask(role: str) -> tuple[str, int]:
        messages = [{"role": role, "content": "You are a pirate. Answer like a pirate."}, HELLO[0]]
        answer = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0)
        return str(answer.choices[0].message.content), answer.usage.prompt_tokens

    as_system, as_developer = ask("system"), ask("developer")
    assert as_developer == as_system
    bare = openai_client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0)
    assert bare.choices[0].message.content != as_system[0]  # the instruction did reach the model


def test_tool_role_and_developer_messages(openai_client):
    messages = [
        {"role": "developer", "content": "You report the weather briefly."},
        {"role": "user", "content": "What is the weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 4, "sky": "snow"}'},
    ]
    answer = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=30, temperature=0)
    assert answer.choices[0].message.content.strip()
    without_result = openai_client.chat.completions.create(model=MODEL, messages=messages[:3] + [
        {"role": "tool", "tool_call_id": "call_1", "content": "{}"}], max_tokens=30, temperature=0)
    # The tool's result is in the prompt the model read: its tokens are counted and it changes the answer.
    assert answer.usage.prompt_tokens > without_result.usage.prompt_tokens + 5
    assert answer.choices[0].message.content != without_result.choices[0].message.content


def test_access_log_records_tokens_and_speed(http, server):
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Request-ID": "chat-log-1"}) as r:
        list(r.iter_lines())
    http.post("/v1/chat/completions", json={**body, "stream": False}, headers={"X-Request-ID": "chat-log-2"})
    for request_id, stream in (("chat-log-1", True), ("chat-log-2", False)):
        record = server.access_record(request_id)
        assert record["status"] == 200 and record["category"] == "llm" and record["model"] == MODEL
        extra = record["extra"]
        assert extra["stream"] is stream
        assert extra["prompt_tokens"] > 10 and extra["completion_tokens"] >= 1
        assert extra["ttft_ms"] > 0 and extra["tokens_per_s"] > 0


def test_openapi_declares_the_chat_routes(http: httpx.Client):
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} <= set(paths)
