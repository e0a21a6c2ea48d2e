"""The server starts and lists the starter models."""


def test_health_and_models(http):
    assert http.get("/health").json()["status"] == "ok"
    ids = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert {"whisper-tiny.en", "piper-en_US-joe-medium", "smollm2-135m-instruct", "auto"} <= ids
