"""Windows file semantics: a file another process has open cannot be renamed or deleted.

Removing a loaded model gets a clear 409 and loses nothing; removing right after an
unload succeeds (models.store.model_store waits up to 3 s for an exiting runner to let go of its
files). Wine renames a folder that holds an open file, which Windows refuses, so the
409 for a file held by another program is left to a real Windows PC.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.windows.support import App, data_dir_with_starter

CHAT = "smollm2-135m-instruct"


@pytest.fixture()
def app(tmp_path: Path) -> App:
    server = App(data_dir_with_starter(tmp_path / "Dätä dir"), "serve")
    yield server
    server.stop()


def delete(app: App, model: str) -> httpx.Response:
    return httpx.delete(f"{app.url}/admin/api/models/{model}", headers=app.admin_headers, timeout=30)


def chat(app: App) -> httpx.Response:
    return httpx.post(f"{app.url}/v1/chat/completions", timeout=120,
                      json={"model": CHAT, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})


def test_a_loaded_model_is_not_removed_and_keeps_working(app: App) -> None:
    assert chat(app).status_code == 200  # the runner maps the GGUF file
    refused = delete(app, CHAT)
    assert refused.status_code == 409 and "Unload it first" in refused.json()["error"]["message"], refused.text
    assert chat(app).status_code == 200 and any((app.data_dir / "models" / CHAT).glob("*.gguf"))


def test_removing_right_after_an_unload_waits_for_the_runner_to_let_go(app: App) -> None:
    assert chat(app).status_code == 200
    httpx.post(f"{app.url}/admin/api/models/{CHAT}/unload", headers=app.admin_headers, timeout=60).raise_for_status()
    removed = delete(app, CHAT)  # the runner process may still be exiting, its file mapping still open
    assert removed.status_code == 200, removed.text
    assert not (app.data_dir / "models" / CHAT).exists()
    assert not list((app.data_dir / "models" / ".partial").glob(f"{CHAT}*"))  # nothing left behind
    gone = chat(app)
    assert gone.status_code == 400 and CHAT in gone.json()["error"]["message"], gone.text
