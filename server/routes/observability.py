"""Metrics, Prometheus, the observability switches and the log tail.

- GET /admin/api/metrics: the rolling-window numbers (open to read, like status).
- GET /metrics: Prometheus text format, for a scraper (open: no secrets in it).
- GET/POST /admin/api/observability: the switches; flipping needs the admin token
  and lasts until the server stops.
- GET /admin/api/logs: the last access-log records or server log lines (admin token).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from server.admin_token import require_admin
from server.metrics import prometheus_text
from server.observability import Observability, server_log_tail
from server.routes.status import gpu_probe_of
from server.schemas import ERROR_RESPONSES

router = APIRouter(tags=["admin"], responses=ERROR_RESPONSES)


def observability_of(request: Request) -> Observability:
    obs: Observability = request.app.state.observability
    return obs


@router.get("/admin/api/metrics")
async def metrics(request: Request) -> dict[str, Any]:
    """Per category over the rolling window: counts by class, error rate, throughput, latency and slot wait."""
    obs = observability_of(request)
    return {**obs.metrics.snapshot(), "access_log_dropped": obs.access_log.dropped}


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus(request: Request) -> Response:
    """Prometheus text format: uptime, requests by category and class, latency histograms, models, GPU memory."""
    obs = observability_of(request)
    gpu = await asyncio.to_thread(gpu_probe_of(request).read)
    loaded: dict[str, int] = {}
    for model in request.app.state.manager.store.installed():
        if request.app.state.manager.status(model.id).get("loaded"):
            loaded[model.capability] = loaded.get(model.capability, 0) + 1
    body, content_type = prometheus_text(obs.metrics, loaded, gpu, obs.access_log.dropped)
    return Response(body, media_type=content_type)


class Switches(BaseModel):
    """Any of the switches; the ones left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    metrics: bool | None = None
    access_log: bool | None = None
    payload: bool | None = None


@router.get("/admin/api/observability")
async def switches(request: Request) -> dict[str, Any]:
    """Which recorders are on, where they write, and how many records were dropped."""
    return observability_of(request).describe()


@router.post("/admin/api/observability", dependencies=[Depends(require_admin)])
async def flip(body: Switches, request: Request) -> dict[str, Any]:
    """Turn metrics, the access log or payload capture on or off until the server stops."""
    obs = observability_of(request)
    for name, value in body.model_dump(exclude_none=True).items():
        obs.switch(name, value)
    return obs.describe()


@router.get("/admin/api/logs", dependencies=[Depends(require_admin)])
async def logs(
    request: Request,
    source: Literal["access", "server"] = Query("access", description="The access log, or the server's own log."),
    lines: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The newest lines of a log, oldest first."""
    if source == "server":
        return {"source": source, "lines": list(server_log_tail().lines)[-lines:]}
    records = await asyncio.to_thread(observability_of(request).access_log.tail, lines)
    return {"source": source, "lines": records}
