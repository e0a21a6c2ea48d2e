"""OpenAI response bodies and SSE chunks for chat and text completion, from engine results.

A stream sends one chunk per token, so each chunk is a precomputed JSON prefix
and suffix around the token's text: building a dict and serialising it per
token would cost the server CPU that the engine needs on a small machine.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from server.jobs import sse


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def usage_of(final: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(final.get("prompt_tokens", 0)), int(final.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(final.get("cached_tokens", 0))},
    }


class ChatShape:
    """Bodies of one chat completion: the whole answer, or its stream of chunks."""

    def __init__(self, model: str):
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": model}
        self._delta_prefix = "data: " + _json(head)[:-1] + ',"choices":[{"index":0,"delta":{"content":'
        self._delta_suffix = '},"logprobs":null,"finish_reason":null}]}\n\n'

    def whole(self, final: dict[str, Any]) -> dict[str, Any]:
        calls = tool_calls_of(final)
        message: dict[str, Any] = {"role": "assistant", "content": final.get("content"), "refusal": None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": final["finish_reason"]}],
            "usage": usage_of(final),
            "system_fingerprint": None,
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**self._head(), "choices": [choice]})

    def role_chunk(self) -> bytes:
        return self.chunk({"role": "assistant", "content": ""})

    def delta_chunk(self, text: str) -> bytes:
        return (self._delta_prefix + _json(text) + self._delta_suffix).encode()

    def end_chunks(self, final: dict[str, Any], include_usage: bool) -> list[bytes]:
        """Whatever the stream has not shown yet, the finish reason, the usage if asked, and [DONE]."""
        out = []
        if final.get("unsent"):
            out.append(self.delta_chunk(str(final["unsent"])))
        calls = tool_calls_of(final)
        if calls:
            out.append(self.chunk({"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}))
        out.append(self.chunk({}, final["finish_reason"]))
        if include_usage:
            out.append(sse({**self._head(), "choices": [], "usage": usage_of(final)}))
        out.append(sse("[DONE]"))
        return out

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}


def tool_calls_of(final: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"id": "call_" + secrets.token_hex(12), "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
        for call in final.get("tool_calls") or []
    ]


class CompletionShape:
    """Bodies of one legacy text completion (`object: text_completion`)."""

    def __init__(self, model: str, echo: str = ""):
        self.id = "cmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        self.echo = echo
        head = {"id": self.id, "object": "text_completion", "created": self.created, "model": model}
        self._delta_prefix = "data: " + _json(head)[:-1] + ',"choices":[{"index":0,"text":'
        self._delta_suffix = ',"logprobs":null,"finish_reason":null}]}\n\n'

    def whole(self, final: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._head(),
            "choices": [{"index": 0, "text": self.echo + final["text"], "logprobs": None, "finish_reason": final["finish_reason"]}],
            "usage": usage_of(final),
        }

    def role_chunk(self) -> bytes:
        return self.delta_chunk(self.echo) if self.echo else b""

    def delta_chunk(self, text: str) -> bytes:
        return (self._delta_prefix + _json(text) + self._delta_suffix).encode()

    def end_chunks(self, final: dict[str, Any], include_usage: bool) -> list[bytes]:
        choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": final["finish_reason"]}
        out = [sse({**self._head(), "choices": [choice]})]
        if include_usage:
            out.append(sse({**self._head(), "choices": [], "usage": usage_of(final)}))
        out.append(sse("[DONE]"))
        return out

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model}
