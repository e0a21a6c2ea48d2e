"""Response models shared by several routes. Capability routes keep their own request models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    kind: str = Field(description="malformed, overflow, cancelled, network, unknown, forbidden or conflict")
    provider: str = Field(description="'aistack' when the gateway refused, else the engine's name")
    message: str = Field(description="Plain language, safe to show an end user")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    app: str = Field(default="aistack", description="Lets a second launch recognise a running aistack")


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    owned_by: str
    capabilities: list[str]
    languages: list[str] | None = None
    is_routing_alias: bool
    supports_streaming: bool
    loaded: bool = False
    state: str | None = None
    device: str | None = None
    size_bytes: int | None = None
    resolves_to: list[str] | None = Field(default=None, description="For routing aliases: the models it may pick")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorEnvelope, "description": text}
    for code, text in (
        (400, "malformed"),
        (403, "forbidden"),
        (409, "conflict"),
        (413, "overflow"),
        (500, "unknown"),
        (503, "network (busy when Retry-After is set)"),
    )
}
