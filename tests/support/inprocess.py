"""The real app on a real socket, in a thread of the test process, with a test-only job route.

Used for the spine's own tests: the scripted engine (tests/support/engines.py) runs in
real runner processes behind the real manager, middleware and job glue; only
the route that sends it jobs is defined here, since no product route speaks
its job format.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from bench.harness import free_port
from models.core.errors import AistackError
from models.core.settings import Settings
from models.runtime.manager import parse_keep_alive
from server.app import create_app
from server.jobs import LeasedStream, acquire, run_job, sse, start_stream

ENGINE = "scripted"
ENGINES = {ENGINE: "tests.support.engines:ScriptedEngine"}


def install_fake_model(data_dir: Path, model_id: str, *, size: int = 1000, **options: Any) -> None:
    """A model folder whose manifest names the scripted engine (a store-valid install)."""
    folder = data_dir / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "id": model_id, "capability": "llm", "engine": ENGINE, "owned_by": "tests",
        "files": [{"name": "weights.bin", "size": size, "sha256": "0" * 64}], "options": options,
    }
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    (folder / "manifest.json").write_text(json.dumps(manifest))


class JobBody(BaseModel):
    job: dict[str, Any]
    stream: bool = False
    keep_alive: float | str | None = None


def job_router() -> APIRouter:
    router = APIRouter()

    @router.post("/test/run/{model_id}")
    async def run(model_id: str, body: JobBody, request: Request) -> Any:
        if "nest" in body.job:  # a job nested deeper than JSON bodies may be: built here, as a route might
            nested: dict[str, Any] = {}
            for _ in range(int(body.job.pop("nest"))):
                nested = {"inner": nested}
            body.job["nested"] = nested
        lease = await acquire(request, model_id, keep_alive=parse_keep_alive(body.keep_alive))
        if not body.stream:
            partials, result = await run_job(request, lease, body.job)  # type: ignore[arg-type]
            return {"partials": partials, "result": result}

        started = await start_stream(request, lease, body.job)  # type: ignore[arg-type]

        async def events() -> Any:
            try:
                async for event in started.events:
                    yield sse({"final": event.final, **event.data})
            except AistackError as exc:
                yield sse({"type": "error", "error": exc.to_dict()})
            finally:
                await started.aclose()

        return LeasedStream(events(), lease, media_type="text/event-stream")

    @router.get("/test/boom")
    async def boom() -> None:
        raise ZeroDivisionError("a bug in a route")

    return router


class InProcessServer:
    def __init__(self, data_dir: Path, **settings: Any):
        import uvicorn

        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(data_dir=data_dir, port=self.port, **settings)
        self.app = create_app(self.settings, engines=ENGINES)
        self.app.include_router(job_router())
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("in-process server did not start")
            time.sleep(0.02)

    @property
    def manager(self) -> Any:
        return self.app.state.manager

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app.state.admin_token}"}

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def status(self, model_id: str) -> dict[str, Any]:
        return dict(self.manager.status(model_id))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

