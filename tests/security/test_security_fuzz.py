"""Schemathesis against the live /openapi.json: no 500, no answer outside its declared schema, no hang.

Bounded so it fits the suite: a few examples per operation and a request
timeout. It runs against a private server with the starter models installed
(so model names resolve) and no admin token (state-changing admin routes
answer 403 and change nothing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from bench.harness import ServerProcess  # noqa: E402

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

EXAMPLES = 12  # per operation and generation mode
REQUEST_TIMEOUT = 30  # seconds: an answer slower than this counts as a hang


@pytest.fixture(scope="module")
def fuzz_server(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The starter models (shared, read-only) with this server's own logs, captures and config."""
    proc = ServerProcess(starter_data_dir, {"AISTACK_OBS_LOG_DIR": str(tmp_path_factory.mktemp("fuzz-logs")),
                                            "AISTACK_MODEL_KEEP_ALIVE_SEC": "30"})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


def not_a_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.path} answered {response.status_code}: {response.text[:300]}")
    return None


def header(response: Any, name: str) -> str:
    """schemathesis keeps every header as a list of values."""
    values = {k.lower(): v for k, v in response.headers.items()}.get(name) or [""]
    return str(values[0] if isinstance(values, list) else values)


def check(case: Any, server: ServerProcess) -> None:
    started = time.monotonic()
    response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT)
    # A stream is declared as one string (OpenAPI 3.1 cannot describe events); schemathesis would check each event.
    streamed = header(response, "content-type").startswith("text/event-stream")
    case.validate_response(response, checks=[not_a_server_error] + ([] if streamed else [response_schema_conformance]))
    assert time.monotonic() - started < REQUEST_TIMEOUT, f"{case.method} {case.path} took too long"
    assert header(response, "x-request-id"), f"{case.method} {case.path} has no X-Request-ID"
    if response.status_code >= 400 and header(response, "content-type").startswith("application/json"):
        assert set(response.json()) == {"error"}, response.text[:300]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_every_operation(api_schema: Any, fuzz_server: ServerProcess, mode: str) -> None:
    """Valid and invalid requests for every operation in /openapi.json."""
    generation = schemathesis.GenerationMode.POSITIVE if mode == "positive" else schemathesis.GenerationMode.NEGATIVE
    tried = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: Any) -> None:
            check(case, fuzz_server)

        try:
            run()
        except Unsatisfiable:
            continue  # no invalid request exists for it (a GET without parameters)
        tried.append(f"{operation.method.upper()} {operation.path}")
    assert any("/v1/chat/completions" in t for t in tried) and len(tried) >= 8, tried
