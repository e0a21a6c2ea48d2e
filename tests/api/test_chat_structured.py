"""Structured output: JSON mode, JSON schemas and tool calls, checked with the openai SDK's own parsers.

A 135M model cannot be trusted to write valid JSON or call a tool on its own,
so these pass only because the server constrains sampling with a grammar.
"""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

MODEL = "smollm2-135m-instruct"


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40)
    country: str = Field(max_length=40)
    population: int
    coastal: bool


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    model_config = ConfigDict(extra="forbid")

    city: str = Field(max_length=40)
    unit: Literal["celsius", "fahrenheit"]


class BookTable(BaseModel):
    """Book a restaurant table."""

    model_config = ConfigDict(extra="forbid")

    restaurant: str = Field(max_length=40)
    people: int


WEATHER_QUESTION = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


def test_json_object_is_parseable(openai_client):
    messages = [{"role": "user", "content": "Describe a cat as a JSON object with its name and age."}]
    answer = openai_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


def test_json_object_streamed_is_parseable(openai_client):
    messages = [{"role": "user", "content": "Give me a JSON object about the planet Mars."}]
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        response_format={"type": "json_object"},
        max_tokens=60,  # shorter than the answer: the streamed JSON is closed early, still parseable
        temperature=0.8,
        seed=3,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert isinstance(json.loads(text), dict)


def test_json_schema_validates_with_the_sdk_parser(openai_client):
    messages = [{"role": "user", "content": "Tell me about Lisbon."}]
    answer = openai_client.chat.completions.parse(
        model=MODEL,
        messages=messages,
        response_format=City,
        max_tokens=200,
        temperature=0,
    )
    city = answer.choices[0].message.parsed
    assert isinstance(city, City)
    City.model_validate_json(answer.choices[0].message.content, strict=True)


def test_json_schema_holds_when_sampling(openai_client):
    messages = [{"role": "user", "content": "Invent a city."}]
    for seed in (1, 2):
        answer = openai_client.chat.completions.parse(
            model=MODEL,
            messages=messages,
            response_format=City,
            max_tokens=200,
            temperature=1.0,
            seed=seed,
        )
        assert isinstance(answer.choices[0].message.parsed, City)


def test_json_stays_whole_when_max_tokens_runs_out(openai_client):
    """A max_tokens shorter than the answer closes the JSON early, valid, and says so with finish_reason "length"."""
    messages = [{"role": "user", "content": "Give me a JSON object about the planet Mars."}]
    fmt = {"type": "json_object"}
    whole = openai_client.chat.completions.create(model=MODEL, messages=messages, response_format=fmt, max_tokens=60,
                                                  temperature=0)
    assert whole.usage.completion_tokens > 24  # the answer is longer than the budget below
    cut = openai_client.chat.completions.create(model=MODEL, messages=messages, response_format=fmt, max_tokens=24,
                                                temperature=0)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens <= 24
    assert isinstance(json.loads(cut.choices[0].message.content), dict)


def test_json_holds_when_max_tokens_runs_out_while_sampling(openai_client):
    messages = [{"role": "user", "content": "Give me a JSON object about the planet Mars."}]
    schema = {"type": "json_schema", "json_schema": {"name": "City", "schema": City.model_json_schema(), "strict": True}}
    for seed in (1, 2):
        loose = openai_client.chat.completions.create(model=MODEL, messages=messages, response_format={"type": "json_object"},
                                                      max_tokens=40, temperature=1.0, seed=seed)
        assert isinstance(json.loads(loose.choices[0].message.content), dict)
        strict = openai_client.chat.completions.create(model=MODEL, messages=messages, response_format=schema,
                                                       max_tokens=30, temperature=1.0, seed=seed)
        City.model_validate_json(strict.choices[0].message.content, strict=True)
        assert strict.usage.completion_tokens <= 30


def test_forced_tool_call_has_valid_arguments(openai_client):
    answer = openai_client.chat.completions.parse(
        model=MODEL,
        messages=WEATHER_QUESTION,
        max_tokens=100,
        temperature=0,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice={"type": "function", "function": {"name": "GetWeather"}},
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)
    GetWeather.model_validate_json(call.function.arguments, strict=True)


def test_forced_tool_call_streamed(openai_client):
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_QUESTION,
        max_tokens=100,
        temperature=0,
        stream=True,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice={"type": "function", "function": {"name": "GetWeather"}},
    )
    chunks = [c for c in stream if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert deltas and deltas[0].id.startswith("call_") and deltas[0].function.name == "GetWeather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    GetWeather.model_validate_json(arguments, strict=True)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_required_tool_choice_picks_one_of_the_tools(openai_client):
    tools = [openai.pydantic_function_tool(GetWeather), openai.pydantic_function_tool(BookTable)]
    messages = [{"role": "user", "content": "Book a table for four at Chez Anna."}]
    answer = openai_client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=100, temperature=0, tools=tools, tool_choice="required"
    )
    call = answer.choices[0].message.tool_calls[0]
    schema = {"GetWeather": GetWeather, "BookTable": BookTable}[call.function.name]
    schema.model_validate_json(call.function.arguments, strict=True)


# A conversation in which the starter model, greedy, calls the tool on its own (tool_choice "auto"):
# it has seen one call and its result, and is asked the same for another city.
AUTO_CALL = [
    {"role": "user", "content": "What is the weather like in Oslo right now? Use celsius."},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "GetWeather", "arguments": '{"city": "Oslo", "unit": "celsius"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 4, "sky": "snow"}'},
    {"role": "assistant", "content": "It is 4 degrees and snowing in Oslo."},
    {"role": "user", "content": "What is the weather like in Paris right now? Use celsius."},
]


def test_auto_tool_choice_calls_the_tool_when_the_model_starts_a_call(openai_client):
    """The model writes `<tool_call>` by itself; the lazy grammar takes over and the call comes back parsed."""
    tools = [openai.pydantic_function_tool(GetWeather)]
    answer = openai_client.chat.completions.parse(model=MODEL, messages=AUTO_CALL, max_tokens=80, temperature=0, tools=tools)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.function.name == "GetWeather" and call.id.startswith("call_")
    assert call.function.parsed_arguments == GetWeather(city="Paris", unit="celsius")
    assert "<tool_call>" not in (choice.message.content or "")


def test_auto_tool_call_streamed_stops_the_text_before_the_tag(openai_client):
    tools = [openai.pydantic_function_tool(GetWeather)]
    whole = openai_client.chat.completions.create(model=MODEL, messages=AUTO_CALL, max_tokens=80, temperature=0, tools=tools)
    stream = openai_client.chat.completions.create(model=MODEL, messages=AUTO_CALL, max_tokens=80, temperature=0, tools=tools,
                                                   stream=True)
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "<tool" not in text and text == (whole.choices[0].message.content or "")
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert calls and calls[0].function.name == "GetWeather"
    assert GetWeather.model_validate_json("".join(c.function.arguments or "" for c in calls)) == GetWeather(
        city="Paris", unit="celsius")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_auto_tool_choice_may_answer_in_text(openai_client):
    """Nothing about a tool in the question: the model answers in words, and no call is made up."""
    tools = [openai.pydantic_function_tool(GetWeather)]
    messages = [{"role": "user", "content": "Say hello to Anna in one short sentence."}]
    answer = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=30, temperature=0, tools=tools)
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.tool_calls is None
    assert choice.message.content and "<tool_call>" not in choice.message.content


def test_tool_choice_none_never_calls(openai_client):
    answer = openai_client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_QUESTION,
        max_tokens=20,
        temperature=0,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="none",
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}},
            "response_format.json_schema.schema",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "bogus"}}}], "tool_choice": "required"}, "tools"),
    ],
)
def test_schema_the_grammar_cannot_express_is_malformed(http, extra, field):
    body = {"model": MODEL, "messages": WEATHER_QUESTION, "max_tokens": 5, **extra}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["kind"] == "malformed" and error["provider"] == "llama.cpp"
    assert field in error["message"]
