"""Deep or huge free-form JSON is refused at validation, naming the field (issue 9, defect 2).

Before: a `json_schema` or a tool's `parameters` ~450 levels deep failed while
the job was pickled to the runner (500), and the healthy runner was killed;
200 levels took 28 s for five tokens. Now every free-form JSON field is bounded
(server.json_shape) and the runner never sees such a value.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

MODEL = "smollm2-135m-instruct"
URL = "/v1/chat/completions"


def nested_schema(levels: int) -> dict[str, Any]:
    """An object schema `levels` objects deep (two JSON levels per object)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def nested_list(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3, **extra}


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def tool(parameters: dict[str, Any], name: str = "lookup") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


WIDE = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(3000)}}

CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (body, field the message names, words)
    "schema 450 deep": (chat(response_format=schema_format(nested_schema(225))), "'response_format.json_schema.schema'",
                        "levels deep"),
    "schema 200 deep": (chat(response_format=schema_format(nested_schema(100))), "'response_format.json_schema.schema'",
                        "levels deep"),
    "schema one level too deep": (chat(response_format=schema_format(nested_schema(16))),
                                  "'response_format.json_schema.schema'", "levels deep"),
    "schema too large": (chat(response_format=schema_format(WIDE)), "'response_format.json_schema.schema'", "values"),
    "tool parameters 450 deep": (chat(tools=[tool(nested_schema(225))]), "'tools.0.function.parameters'", "levels deep"),
    "second tool too large": (chat(tools=[tool({}), tool(WIDE, "other")]), "'tools.1.function.parameters'", "values"),
    "deep tool_choice": (chat(tools=[tool({})], tool_choice={"type": "function", "function": {"name": "lookup"},
                                                              "junk": nested_list(450)}), "'tool_choice'", "levels deep"),
    "deep content part": (chat(messages=[{"role": "user", "content": [{"type": "text", "text": "hi",
                                                                        "junk": nested_list(450)}]}]),
                          "'messages.0.content'", "levels deep"),
    "too many tools": (chat(tools=[tool({}, f"t{i}") for i in range(129)]), "'tools'", "128"),
}


def runner_pid(http: httpx.Client) -> int | None:
    rows = http.get("/admin/api/status").json()["models"]
    return next((row["runner_pid"] for row in rows if row["id"] == MODEL), None)


@pytest.fixture
def loaded(http: httpx.Client) -> int:
    """The chat model loaded and answering; its runner's pid."""
    response = http.post(URL, json=chat())
    assert response.status_code == 200, response.text
    pid = runner_pid(http)
    assert pid
    return pid


def test_deep_and_huge_json_fields_are_400_naming_the_field(http: httpx.Client, loaded: int) -> None:
    for case, (body, field, words) in CASES.items():
        response = http.post(URL, json=body)
        assert response.status_code == 400, (case, response.text)
        error = response.json()["error"]
        assert error["kind"] == "malformed" and error["provider"] == "aistack", case
        assert field in error["message"] and words in error["message"], (case, error["message"])
    # The runner was never involved: same process, still answering.
    assert runner_pid(http) == loaded
    assert http.post(URL, json=chat()).status_code == 200


def test_the_deepest_accepted_schema_still_answers(http: httpx.Client, loaded: int) -> None:
    """15 nested objects (31 JSON levels) is within the bound: it compiles and answers."""
    response = http.post(URL, json=chat(response_format=schema_format(nested_schema(15)), max_tokens=5))
    assert response.status_code == 200, response.text
    assert runner_pid(http) == loaded


@pytest.mark.parametrize("levels", [450, 100_000])
def test_deep_json_anywhere_in_the_body_is_never_a_500(http: httpx.Client, levels: int) -> None:
    """An unknown field is ignored, however deep (within the parser's reach); beyond it, the body is malformed JSON."""
    raw = b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "extra": %s%s}' % (
        MODEL.encode(), b"[" * levels, b"]" * levels)
    response = http.post(URL, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["kind"] == "malformed"
