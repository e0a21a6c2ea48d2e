"""OpenAI types for chat, text completion and embeddings, mirroring the OpenAI API reference.

Requests keep OpenAI's field names and ranges; a value the server cannot honour
fails validation here, so the client gets 400 `malformed` naming the field.
Unknown fields are ignored (SDKs send new ones before servers learn them).
aistack extensions: `keep_alive`, and llama.cpp's `top_k`, `min_p`, `repeat_penalty`.
Responses are declared for /docs; the routes build them as plain dicts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from models.core.errors import Malformed
from server.json_shape import BoundedJson, BoundedObject, check_json_shape

Role = Literal["system", "developer", "user", "assistant", "tool"]
_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid", message)


# Requests: shared pieces ---------------------------------------------------------------
class StreamOptions(BaseModel):
    include_usage: bool = Field(False, description="Send a last chunk with token usage before [DONE].")


class SamplingFields(BaseModel):
    """Fields chat and text completion share."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Installed chat model id or alias (see GET /v1/models).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2, description="Default 1. 0 picks the likeliest token.")
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = Field(None, description="Up to 16 strings that end the answer (not included).")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, description="Same seed, same prompt, same settings: same answer.")
    logit_bias: dict[str, float] | None = Field(None, description="Token id (as a string) -> bias, -100 to 100.")
    n: int | None = Field(1, description="Only 1 is supported.")
    user: str | None = Field(None, description="Ignored.")
    keep_alive: float | str | None = Field(
        None, description="aistack: how long the model stays loaded after this request ('5m', 300, -1 for ever, 0)."
    )
    top_k: int | None = Field(None, ge=1, le=1000, description="llama.cpp: sample from the k likeliest tokens (40).")
    min_p: float | None = Field(None, ge=0, le=1, description="llama.cpp: drop tokens below min_p x the best (0.05).")
    repeat_penalty: float | None = Field(None, gt=0, le=10, description="llama.cpp: penalise repeats (1 = off).")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise _fail("must be a string or a list of strings")
        if len(value) > 16:
            raise _fail("at most 16 stop sequences are supported")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.strip().isdigit():
                raise _fail(f"keys must be token ids (whole numbers as strings); got '{key[:20]}'")
            if not -100 <= bias <= 100:
                raise _fail(f"biases must be between -100 and 100; token {key} has {bias}")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise _fail("only 1 choice per request is supported; send the request several times instead")
        return value

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def sampling(self) -> dict[str, Any]:
        """Plain-data sampler settings for the engine (unset fields keep the engine's defaults)."""
        fields = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "top_k", "min_p", "repeat_penalty")
        values: dict[str, Any] = {name: getattr(self, name) for name in fields if getattr(self, name) is not None}
        if self.logit_bias:
            values["logit_bias"] = {int(k): float(v) for k, v in self.logit_bias.items()}
        return values


# Chat requests -------------------------------------------------------------------------
class FunctionCall(BaseModel):
    name: str
    arguments: str = Field("{}", description="JSON text of the arguments.")


class ToolCall(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[dict[str, Any]] | None = Field(None, description="A string or a list of text parts.")
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="Calls an earlier assistant turn made.")
    tool_call_id: str | None = Field(None, description="For role 'tool': the call this result answers.")

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise _fail("must be a string or a list of text parts")
        check_json_shape(value)
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                shown = f"'{kind}' parts" if isinstance(kind, str) else "this part"
                raise _fail(f"only text parts ({{'type': 'text', 'text': ...}}) can be read by this model, not {shown}")
        return value

    @model_validator(mode="after")
    def _needs_content(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise _fail(f"a '{self.role}' message needs 'content'")
        return self

    def text(self) -> str | None:
        if isinstance(self.content, list):
            return "".join(str(part["text"]) for part in self.content)
        return self.content


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=_NAME_PATTERN, description="Letters, digits, '_' and '-', at most 64.")
    description: str | None = None
    parameters: BoundedObject | None = Field(None, description="JSON schema of the arguments object.")
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class TextFormat(BaseModel):
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    type: Literal["json_object"]


class JsonSchemaSpec(BaseModel):
    name: str = Field("response", pattern=_NAME_PATTERN)
    description: str | None = None
    schema_: BoundedObject | None = Field(None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="Longest answer in tokens; clipped to the context left.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name for max_tokens; wins if both.")
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=128, description="At most 128 (as OpenAI).")
    tool_choice: BoundedJson = Field(None, description="'none', 'auto', 'required' or {'type': 'function', 'function': {'name'}}.")
    parallel_tool_calls: bool | None = Field(None, description="Accepted; one call per answer is made.")
    logprobs: bool | None = Field(None, description="Not supported (false only).")
    top_logprobs: int | None = Field(None, description="Not supported.")
    functions: Any = Field(None, description="Deprecated by OpenAI; use 'tools'.")
    function_call: Any = Field(None, description="Deprecated by OpenAI; use 'tool_choice'.")

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        if value is None or value in ("none", "auto", "required"):
            return value
        name = value.get("function", {}).get("name") if isinstance(value, dict) else None
        if not isinstance(value, dict) or value.get("type") != "function" or not isinstance(name, str):
            raise _fail("must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")
        return value

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: Any) -> Any:
        if value:
            raise _fail("log probabilities are not supported by this server; leave it out")
        return value

    @field_validator("functions", "function_call")
    @classmethod
    def _no_functions(cls, value: Any) -> Any:
        if value is not None:
            raise _fail("the deprecated functions API is not supported; send 'tools' and 'tool_choice' instead")
        return value

    def check_tools(self) -> None:
        """Rules across fields, raised as `Malformed` (pydantic would name no field)."""
        names = [t.function.name for t in self.tools or []]
        choice = self.tool_choice
        if choice is not None and choice != "none" and not names:
            raise Malformed("Invalid request: 'tool_choice' needs 'tools'.")
        if isinstance(choice, dict) and choice["function"]["name"] not in names:
            raise Malformed(f"Invalid request: 'tool_choice' names '{choice['function']['name'][:64]}', which is not in 'tools'.")
        if len(set(names)) != len(names):
            raise Malformed("Invalid request: two tools in 'tools' have the same name.")


# Text completion and embeddings requests -----------------------------------------------
class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(description="The text to continue (a list may hold one string).")
    max_tokens: int | None = Field(16, ge=1, description="Longest continuation in tokens (OpenAI's default: 16).")
    echo: bool = Field(False, description="Put the prompt before the continuation.")
    suffix: str | None = Field(None, description="Not supported.")
    best_of: int | None = Field(None, description="Only 1.")
    logprobs: int | None = Field(None, description="Not supported.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise _fail("send one prompt per request (a string, or a list with one string)")
        return value

    @field_validator("suffix", "logprobs")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value:
            raise _fail("not supported by this server; leave it out")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise _fail("only 1 is supported")
        return value

    def prompt_text(self) -> str:
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]] = Field(description="Text, texts, or token id lists.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Must equal the model's size if given.")
    user: str | None = None
    keep_alive: float | str | None = None

    @field_validator("input")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise _fail("must not be empty")
            return value
        if not value:
            raise _fail("must not be an empty list")
        if len(value) > 2048:
            raise _fail("at most 2048 inputs per request")
        if any(isinstance(item, str | list) and not item for item in value):
            raise _fail("holds an empty item")
        return value

    def inputs(self) -> list[str | list[int]]:
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [list(value)]
        return list(value)  # type: ignore[arg-type]


# Responses -----------------------------------------------------------------------------
class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(description="Prompt tokens served from the cache of the previous request.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: ResponseMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls"]


class ChatCompletion(BaseModel):
    id: str = Field(description="chatcmpl-...")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` line of a stream; the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class Completion(BaseModel):
    id: str = Field(description="cmpl-...")
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage
