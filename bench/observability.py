"""What metrics and the access log cost per request, against the same middleware with both off.

    .venv/bin/python bench/observability.py [--requests 20000] [--runs 5]

Drives the real EdgeMiddleware around a trivial ASGI app (no sockets, so the
difference is the recording alone) in three set-ups: everything off, metrics
and access log on (the default), and the same with payload capture on. "With
writing" also waits until the background writer has put every line on disk,
since its CPU time is taken from the same process. Target: under 100 µs per
request for metrics + access log, with writing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.core.settings import Settings  # noqa: E402
from server.middleware import EdgeMiddleware  # noqa: E402
from server.observability import Observability  # noqa: E402

TARGET_US = 100.0
BODY = b'{"object":"list","data":[]}'


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["state"]["obs"].update(model="smollm2-135m-instruct", slot_wait_ms=0.1)
    scope["state"]["obs"]["extra"].update(prompt_tokens=12, completion_tokens=30, tokens_per_s=85.2)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})


def scope_for(i: int) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:11500"), (b"content-type", b"application/json"),
               (b"x-request-id", f"bench-{i}".encode())]
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 50000)}


async def drive(middleware: EdgeMiddleware, requests: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"model":"x"}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for i in range(requests):
        await middleware(scope_for(i), receive, send)
    return time.perf_counter() - started


def one_run(requests: int, *, metrics: bool, access_log: bool, payload: bool) -> tuple[float, float]:
    """Seconds per request: the request path alone, and including the background writing."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), obs_metrics=metrics, obs_access_log=access_log, obs_payload=payload)
        obs = Observability.from_settings(settings)
        obs.start()
        middleware = EdgeMiddleware(tiny_app, settings=settings, observability=obs)
        started = time.perf_counter()
        path_only = asyncio.run(drive(middleware, requests))
        obs.close()  # waits until the writers have drained their queues
        with_writing = time.perf_counter() - started
        lost = obs.access_log.dropped + obs.capture.dropped
        if lost:
            print(f"  note: {lost} records dropped (queue full) in this run")
        return path_only / requests, with_writing / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    setups = {
        "all off": {"metrics": False, "access_log": False, "payload": False},
        "metrics + access log": {"metrics": True, "access_log": True, "payload": False},
        "metrics + access log + capture": {"metrics": True, "access_log": True, "payload": True},
    }
    results: dict[str, tuple[float, float]] = {}
    for name, flags in setups.items():
        runs = [one_run(args.requests, **flags) for _ in range(args.runs)]
        results[name] = (statistics.median(r[0] for r in runs) * 1e6, statistics.median(r[1] for r in runs) * 1e6)
    base_path, base_total = results["all off"]
    print(f"{args.requests} requests x {args.runs} runs, median µs per request")
    print(f"{'set-up':32} {'request path':>13} {'with writing':>13} {'overhead':>10}")
    for name, (path_us, total_us) in results.items():
        print(f"{name:32} {path_us:13.1f} {total_us:13.1f} {total_us - base_total:10.1f}")
    overhead = results["metrics + access log"][1] - base_total
    print(f"metrics + access log overhead: {overhead:.1f} µs per request (target < {TARGET_US:.0f})")
    print("PASS" if overhead < TARGET_US else "FAIL")
    raise SystemExit(0 if overhead < TARGET_US else 1)


if __name__ == "__main__":
    main()
