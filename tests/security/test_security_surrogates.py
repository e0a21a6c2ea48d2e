"""Lone UTF-16 surrogates and broken UTF-8 in every string field of every route (issue 9, defect 3).

`"\\ud800"` is valid JSON but no valid text: before the fix, a model or voice
name holding one made the error envelope unencodable (500), and message content
made the runner raise UnicodeEncodeError. Now the edge turns lone surrogates
(escaped, or raw UTF-8-encoded) into U+FFFD before any route parses the body:
identifiers then fail validation naming the field, content is answered with a
visible replacement character, and the envelope is always valid UTF-8 JSON.
Bodies are sent as raw bytes: a client library would refuse to encode them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.tts_audio import VOICE

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

MODEL = "smollm2-135m-instruct"
POISONS = {"escaped": b'"\\ud800x\\udfff"', "raw bytes": b'"\xed\xa0\x80x\xed\xbf\xbf"', "bad utf-8": b'"\xff\xfex"'}
MARK = "@@POISON@@"

# A valid body per JSON route that uses every string field the route has; each leaf is poisoned in turn.
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": MODEL, "max_tokens": 1, "user": "u", "stop": ["s"], "keep_alive": "5m", "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": "and now?"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "lookup", "description": "d",
            "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "d"}}}}}],
        "tool_choice": "auto",
    },
    "/v1/chat/completions#schema": {
        "model": MODEL, "max_tokens": 1, "stream": True, "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "description": "d", "schema": {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}}}},
    },
    "/v1/completions": {"model": MODEL, "prompt": "Once upon", "max_tokens": 1, "stream": True, "stop": "x", "user": "u"},
    "/v1/embeddings": {"model": MODEL, "input": ["one", "two"], "user": "u", "encoding_format": "float"},
    "/v1/audio/speech": {"model": "tts-1", "input": "Hello there.", "voice": VOICE, "response_format": "wav",
                         "stream_format": "audio"},
    "/v1/audio/speech#voice-object": {"input": "Hi.", "voice": {"id": VOICE}},
    "/admin/api/observability": {"metrics": True},
}
# The repo is invalid on purpose (no download starts); the other fields are poisoned in turn.
ADMIN_BODIES = {"/admin/api/add-hf": {"repo": "not a repo", "quant": "Q4_K_M", "id": "x", "revision": "main"}}


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """Every string in `value` as (path, is_key); dict keys count as strings too."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key), True
            yield from leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaves(child, (*path, index))
    elif isinstance(value, str):
        yield path, False


def poisoned(body: dict[str, Any], path: tuple[Any, ...], is_key: bool, poison: bytes) -> bytes:
    copy = json.loads(json.dumps(body))
    parent = copy
    for part in path[:-1]:
        parent = parent[part]
    if is_key:
        parent[MARK] = parent.pop(path[-1])
    else:
        parent[path[-1]] = MARK
    return json.dumps(copy).encode().replace(f'"{MARK}"'.encode(), poison)


def assert_answer_is_clean(response: httpx.Response, what: str) -> None:
    assert response.status_code != 500, (what, response.text[:300])
    if response.headers.get("content-type", "").startswith(("application/json", "text/plain")):
        response.content.decode("utf-8")  # strict: the answer itself is valid UTF-8
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"kind", "provider", "message"}, (what, error)
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in error["message"]), (what, error)
    assert response.headers["x-request-id"]


def send(http: httpx.Client, url: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST; a streamed answer is left after its status (the request got past the runner's prompt stage)."""
    if b'"stream": true' not in raw:
        return http.post(url, content=raw, headers=headers)
    with http.stream("POST", url, content=raw, headers=headers) as response:
        if response.status_code >= 400:
            response.read()
        return response


@pytest.mark.parametrize("route", list(BODIES))
def test_every_string_field_of_every_json_route(http: httpx.Client, server: Any, route: str) -> None:
    body, url = BODIES[route], route.split("#")[0]
    headers = {"content-type": "application/json", **server.admin_headers}
    assert http.post(url, json=body, headers=server.admin_headers).status_code == 200, route  # the base is valid
    for poison_name, poison in POISONS.items():
        for path, is_key in leaves(body):
            if poison_name != "escaped" and len(path) > 1:
                continue  # the edge treats every spelling alike; the nested sweep runs once (each reaches the model)
            response = send(http, url, poisoned(body, path, is_key, poison), headers)
            assert_answer_is_clean(response, f"{route} {path} key={is_key} {poison_name}")
    # The runners survived: the base body still works.
    assert http.post(url, json=body, headers=server.admin_headers).status_code == 200, route


def test_identifiers_with_surrogates_are_400_naming_the_field(http: httpx.Client) -> None:
    model = http.post("/v1/chat/completions", content=b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}',
                      headers={"content-type": "application/json"})
    assert model.status_code in (400, 404) and "model" in model.json()["error"]["message"].lower()
    voice = http.post("/v1/audio/speech", content=b'{"input": "hi", "voice": "\\udfff"}',
                      headers={"content-type": "application/json"})
    assert voice.status_code == 400 and "voice" in voice.json()["error"]["message"].lower()
    assert "\ufffd" in voice.json()["error"]["message"]  # the name is shown, readably


def test_content_with_surrogates_is_answered(http: httpx.Client) -> None:
    """Text is content: the lone surrogate becomes U+FFFD and the model answers."""
    for url, raw in [
        ("/v1/chat/completions", b'{"model": "%s", "max_tokens": 3, "messages": [{"role": "user", "content": "hi \\ud800"}]}'),
        ("/v1/completions", b'{"model": "%s", "max_tokens": 3, "prompt": "Once \\udc00 upon"}'),
        ("/v1/embeddings", b'{"model": "%s", "input": ["a \\ud800 b", "\\udfff"]}'),
    ]:
        response = http.post(url, content=raw % MODEL.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 200, (url, response.text[:300])
    speech = http.post("/v1/audio/speech", content=b'{"input": "Hello \\ud800 there.", "voice": "%s"}' % VOICE.encode(),
                       headers={"content-type": "application/json"})
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"


def test_admin_json_route_fields(http: httpx.Client, server: Any) -> None:
    headers = {"content-type": "application/json", **server.admin_headers}
    for url, body in ADMIN_BODIES.items():
        for poison in POISONS.values():
            for path, is_key in leaves(body):
                response = http.post(url, content=poisoned(body, path, is_key, poison), headers=headers)
                assert response.status_code == 400, response.text[:200]
                assert_answer_is_clean(response, f"{url} {path}")


@pytest.mark.parametrize("url", [
    "/v1/models?x=%ED%A0%80", "/admin/api/models/%ED%A0%80", "/v1/audio/voices?model=%ED%A0%80",
    "/admin/api/models/%ED%A0%80/load", "/v1/%ED%A0%80",
])
def test_paths_and_queries(http: httpx.Client, server: Any, url: str) -> None:
    method = "POST" if url.endswith("/load") else "GET"
    assert_answer_is_clean(http.request(method, url, headers=server.admin_headers), url)


@pytest.mark.parametrize("field", ["model", "language", "prompt", "response_format", "keep_alive", "timestamp_granularities[]"])
def test_transcription_form_fields(http: httpx.Client, field: str) -> None:
    """Multipart text is decoded with replacement characters; the file name too."""
    from tests.support.speech import SHORT_TEXT, clip

    boundary = b"xyzBOUNDARY"
    parts = [
        b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n\xed\xa0\x80\xff\r\n" % (boundary, field.encode()),
        b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\xed\xa0\x80.wav\"\r\n"
        b"Content-Type: audio/wav\r\n\r\n" % boundary + clip(SHORT_TEXT) + b"\r\n",
        b"--%s--\r\n" % boundary,
    ]
    response = http.post("/v1/audio/transcriptions", content=b"".join(parts),
                         headers={"content-type": "multipart/form-data; boundary=xyzBOUNDARY"})
    assert_answer_is_clean(response, field)
