"""JSON request bodies made safe to parse, before any route sees them: valid UTF-8, no lone surrogates.

JSON may spell a lone UTF-16 surrogate (`"\\ud800"`), and Python's parser turns
raw UTF-8-encoded surrogate bytes into one as well. Such a string passes
validation, then fails wherever it is encoded: in an error message that repeats
it, in the tokenizer of a runner, in a log line. Rather than guard every string
field of every route, the edge rewrites the body once: lone surrogate escapes
become `\\ufffd`, and bytes that are not valid UTF-8 (or a body in UTF-16/32)
are decoded with replacement characters and sent on as UTF-8. Identifiers then
fail validation with a message naming them; text keeps a visible U+FFFD.
"""

from __future__ import annotations

import json
import re

from starlette.types import Message, Receive

_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
# Escapes left to right, so an escaped backslash ("\\\\ud800") is never read as the start of an escape.
_ESCAPE = re.compile(rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.S)


def is_json_request(headers: dict[str, str]) -> bool:
    """FastAPI parses a body as JSON when the content type is JSON or missing."""
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return not kind or kind == "application/json" or kind.endswith("+json")


def clean_json(body: bytes) -> bytes:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        encoding = json.detect_encoding(body)
        body = body.decode(encoding, "replace").encode("utf-8")
        if encoding != "utf-8":
            body = body.removeprefix("\ufeff".encode())
    if _MAYBE_SURROGATE.search(body):
        body = _ESCAPE.sub(lambda m: b"\\ufffd" if m.group(1) else m.group(0), body)
    return body


def clean_json_receive(receive: Receive) -> Receive:
    """`receive` giving the whole body in one message, cleaned; later calls (disconnect) pass through."""
    done = False

    async def cleaned() -> Message:
        nonlocal done
        if done:
            return await receive()
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                done = True
                return message
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                done = True
                return {"type": "http.request", "body": clean_json(b"".join(parts)), "more_body": False}

    return cleaned
