"""POST /v1/chat/completions, /v1/completions and /v1/embeddings on llama.cpp models.

The route validates the OpenAI request (`server.openai_chat`), resolves the
model, takes its slot and turns the runner's events into OpenAI bodies
(`server.chat_responses`). A stream starts only once the engine has accepted
the prompt, so a prompt too long for the context is still a 413 envelope;
after that, a failure is an SSE `error` event. Closing the connection cancels
generation between two tokens (`LeasedStream` closes the job).
"""

from __future__ import annotations

import base64
from array import array
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from models.core.errors import AistackError, Malformed
from models.naming.resolve import resolve
from models.runtime.manager import parse_keep_alive
from models.runtime.protocol import ChatJob, CompletionJob, EmbeddingJob, Generation
from models.store.model_store import InstalledModel
from server.chat_responses import ChatShape, CompletionShape
from server.jobs import SSE_HEADERS, LeasedStream, StartedJob, acquire, manager_of, obs_of, run_job, sse, start_stream
from server.openai_chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    SamplingFields,
)
from server.schemas import ERROR_RESPONSES

router = APIRouter(tags=["chat"])
Shape = ChatShape | CompletionShape


def _stream_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "content": {"application/json": {}, "text/event-stream": {"schema": model.model_json_schema()}},
            "description": "The answer, or with stream=true a text/event-stream of chunks ending in data: [DONE]",
        },
        **ERROR_RESPONSES,
    }


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=_stream_responses(ChatCompletionChunk))
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    """Chat (OpenAI chat completions shape): streaming, JSON mode and schemas, tool calls."""
    body.check_tools()
    model = _chat_model(request, body.model)
    job: ChatJob = {
        "task": "chat",
        "messages": [_message(m) for m in body.messages],
        "tools": [t.function.model_dump(exclude_none=True) for t in body.tools or []],
        "tool_choice": _tool_choice(body.tool_choice),
        "response_format": _response_format(body),
        **_generation_fields(body, body.max_completion_tokens or body.max_tokens),
    }
    return await _generate(request, body, model, job, ChatShape(model.id))


@router.post("/v1/completions", response_model=Completion, responses=_stream_responses(Completion))
async def completions(request: Request, body: CompletionRequest) -> Response:
    """Legacy text completion: continue the prompt as it is, with no chat template."""
    model = _chat_model(request, body.model)
    prompt = body.prompt_text()
    job: CompletionJob = {"task": "completion", "prompt": prompt, **_generation_fields(body, body.max_tokens)}
    return await _generate(request, body, model, job, CompletionShape(model.id, prompt if body.echo else ""))


@router.post("/v1/embeddings", response_model=EmbeddingList, responses=ERROR_RESPONSES)
async def embeddings(request: Request, body: EmbeddingRequest) -> JSONResponse:
    """Embeddings of texts with a GGUF model (chat models: mean of the token vectors), L2-normalised."""
    model = _chat_model(request, body.model)
    keep_alive = parse_keep_alive(body.keep_alive)
    obs_of(request)["extra"].update(inputs=len(body.inputs()), encoding_format=body.encoding_format)
    lease = await acquire(request, model.id, keep_alive=keep_alive)
    size = int(lease.info.get("embedding_size") or 0)
    if body.dimensions is not None and body.dimensions != size:
        lease.release()
        raise Malformed(f"{model.id} makes {size}-dimensional embeddings; set 'dimensions' to {size} or leave it out.")
    job: EmbeddingJob = {"task": "embeddings", "inputs": body.inputs()}
    _, final = await run_job(request, lease, job)
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(bytes(raw), body.encoding_format)}
        for i, raw in enumerate(final["vectors"])
    ]
    tokens = int(final["prompt_tokens"])
    obs_of(request)["extra"].update(prompt_tokens=tokens)
    return JSONResponse({"object": "list", "data": data, "model": model.id, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# Requests into jobs ------------------------------------------------------------------
def _chat_model(request: Request, name: str) -> InstalledModel:
    manager = manager_of(request)
    return resolve(manager.store, "llm", name, installed=manager.servable())


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.text()}
    if message.tool_calls:
        out["tool_calls"] = [{"name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return {"name": choice["function"]["name"]}
    return choice


def _response_format(body: ChatCompletionRequest) -> dict[str, Any]:
    fmt = body.response_format
    if fmt is None:
        return {"type": "text"}
    if fmt.type == "json_schema":
        return {"type": "json_schema", "schema": fmt.json_schema.schema_}
    return {"type": fmt.type}


def _generation_fields(body: SamplingFields, max_tokens: int | None) -> Generation:
    return {"sampling": body.sampling(), "max_tokens": max_tokens, "stop": body.stop_list(), "stream": body.stream}


def _vector(raw: bytes, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    values = array("f")
    values.frombytes(raw)
    return values.tolist()


# Running -----------------------------------------------------------------------------
async def _generate(
    request: Request, body: SamplingFields, model: InstalledModel, job: ChatJob | CompletionJob, shape: Shape
) -> Response:
    keep_alive = parse_keep_alive(body.keep_alive)
    obs_of(request)["extra"]["stream"] = body.stream
    lease = await acquire(request, model.id, keep_alive=keep_alive)
    if not body.stream:
        _, final = await run_job(request, lease, job)
        _record(request, final)
        return JSONResponse(shape.whole(final))
    started = await start_stream(request, lease, job)  # the engine accepted the prompt (or refused it: an envelope)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = _chunks(request, started, shape, include_usage)
    return LeasedStream(chunks, lease, media_type="text/event-stream", headers=SSE_HEADERS)


async def _chunks(request: Request, started: StartedJob, shape: Shape, include_usage: bool) -> AsyncIterator[bytes]:
    """The SSE body: opening chunk, one chunk per token, closing chunks; an engine failure is an error event."""
    try:
        opening = shape.role_chunk()
        if opening:
            yield opening
        async for event in started.events:
            if not event.final:
                delta = event.data.get("delta")
                if delta:
                    yield shape.delta_chunk(delta)
                continue
            _record(request, event.data)
            for chunk in shape.end_chunks(event.data, include_usage):
                yield chunk
    except AistackError as exc:
        obs_of(request)["extra"]["error"] = exc.kind
        yield sse({"type": "error", "error": exc.to_dict()})
    finally:
        await started.aclose()


def _record(request: Request, final: dict[str, Any]) -> None:
    """Token counts and speeds for the access log. ttft_ms counts from the request (model load included)."""
    engine_ttft = float(final.get("ttft_ms") or 0.0)
    slot_ms = float(obs_of(request).get("slot_wait_ms") or 0.0)
    obs_of(request)["extra"].update(
        prompt_tokens=final.get("prompt_tokens"),
        completion_tokens=final.get("completion_tokens"),
        cached_tokens=final.get("cached_tokens"),
        ttft_ms=round(slot_ms + engine_ttft, 1),
        tokens_per_s=final.get("tokens_per_s"),
        finish_reason=final.get("finish_reason"),
    )
