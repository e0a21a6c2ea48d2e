"""The server starts and lists the starter models."""

import httpx
import pytest

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)


def test_health_and_models(http: httpx.Client) -> None:
    assert http.get("/health").json()["status"] == "ok"
    ids = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert {"whisper-tiny.en", "piper-en_US-joe-medium", "smollm2-135m-instruct", "auto"} <= ids
