"""The catalog a user browses: published sizes, what each model needs, fit to the PC, the recommended set.

The fit tests read machines through the same interfaces as the app (a `Hardware`
reading; a GPU probe with `read()`), so a GPU that cannot exist here is a fake
behind the real probe interface. The HTTP test reads this machine for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from models.hardware.fit import Hardware, fit, read_hardware, recommended
from models.hardware.gpu import GpuReading
from models.store.catalog import Catalog
from models.store.entries import HubSource, WheelSource
from tests.conftest import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

GB = 10**9
NO_GPU_24GB = Hardware(ram_total=24 * GB, disk_free=100 * GB)


def test_every_entry_says_what_it_is_and_needs() -> None:
    catalog = Catalog()
    assert {e.capability for e in catalog.entries} == {"asr", "tts", "llm"}
    for entry in catalog.entries:
        assert entry.size_bytes and entry.size_bytes > 1_000_000, entry.id
        assert entry.ram_bytes and entry.ram_bytes > 0 and entry.licence and entry.languages and entry.quality, entry.id
        if isinstance(entry.source, HubSource):
            pinned = re.fullmatch(r"[0-9a-f]{40}", entry.source.revision)
            recorded = all(f.sha256 or f.size for f in entry.files)  # checked against the hub before a download
            assert pinned or recorded, f"{entry.id}: neither a pinned commit nor published sizes/hashes"
            assert all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) for f in entry.files if f.sha256), entry.id
        else:
            assert isinstance(entry.source, WheelSource) and all(f.size and f.sha256 for f in entry.files), entry.id
    ids = {e.id for e in catalog.entries}
    assert {"whisper-large-v3-turbo", "whisper-distil-large-v3.en", "whisper-small"} <= ids
    assert len({e.languages[0] for e in catalog.for_capability("tts")}) >= 5
    chat_sizes = sorted(e.size_bytes or 0 for e in catalog.for_capability("llm") if not e.starter)
    assert len(chat_sizes) >= 5 and chat_sizes[0] < 1.5 * GB and chat_sizes[-1] > 4 * GB


def test_recommended_set_fits_24gb_without_a_gpu() -> None:
    catalog = Catalog()
    picks = recommended(catalog, NO_GPU_24GB)
    assert all(picks.values()), picks
    entries = [catalog.get(model_id or "") for model_id in picks.values()]
    assert all(entry is not None and fit(entry, NO_GPU_24GB)[0] == "fits" for entry in entries)
    assert sum(entry.ram_bytes or 0 for entry in entries if entry) <= 12 * GB
    assert all(entry and entry.cpu_friendly for entry in entries)  # nothing that crawls on a CPU


def test_fit_reads_ram_disk_and_vram() -> None:
    catalog = Catalog()
    seven_b, turbo = catalog.get("nous-hermes-2-mistral-7b-dpo"), catalog.get("whisper-large-v3-turbo")
    assert seven_b is not None and turbo is not None
    small_pc = Hardware(ram_total=6 * GB, disk_free=100 * GB)
    assert fit(seven_b, small_pc)[0] == "too big" and "RAM" in fit(seven_b, small_pc)[1]
    assert fit(seven_b, Hardware(ram_total=8 * GB, disk_free=100 * GB))[0] == "tight"
    full_disk = Hardware(ram_total=64 * GB, disk_free=1 * GB)
    verdict, why = fit(seven_b, full_disk)
    assert verdict == "too big" and "disk" in why
    assert fit(seven_b, full_disk, installed=True)[0] == "fits"  # already on disk: only memory counts
    gpu = Hardware(ram_total=16 * GB, disk_free=100 * GB, gpu_name="RTX 4070", vram_free=10 * GB)
    assert fit(seven_b, gpu) == ("fits", fit(seven_b, gpu)[1]) and "VRAM" in fit(seven_b, gpu)[1]
    picks = recommended(catalog, gpu)
    assert picks["asr"] in {"whisper-large-v3", "whisper-large-v3-turbo"} and picks["llm"] == "nous-hermes-2-mistral-7b-dpo"


class FakeGpu:
    """A GPU that cannot exist here, behind the probe interface (models.hardware.gpu.GpuProbe)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def read(self) -> GpuReading:
        return GpuReading(available=True, name="Pretend GPU", memory_total_bytes=12 * GB, memory_free_bytes=self.free,
                          memory_used_bytes=12 * GB - self.free)


def test_hardware_reading_uses_the_gpu_probe(tmp_path: Path) -> None:
    with_gpu = read_hardware(tmp_path / "models", FakeGpu(8 * GB))
    assert with_gpu.gpu_name == "Pretend GPU" and with_gpu.vram_free == 8 * GB and with_gpu.ram_total > GB
    without = read_hardware(tmp_path / "models", None)
    assert without.gpu_name is None and without.vram_free is None and without.disk_free > 0


def test_catalog_endpoint_marks_every_entry_on_this_machine(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(tmp_path / "data")
    body = httpx.get(server.url + "/admin/api/catalog", timeout=30).json()
    assert body["hardware"]["ram_total_bytes"] > 0 and body["hardware"]["disk_free_bytes"] > 0
    rows = body["data"]
    assert len(rows) == len(Catalog().entries)
    for row in rows:
        assert row["size_bytes"] > 0 and row["fit"] in ("fits", "tight", "too big") and row["fit_reason"], row
    recommended_rows = [r for r in rows if r["recommended"]]
    assert {r["capability"] for r in recommended_rows} == {"asr", "tts", "llm"}
    assert {r["id"] for r in recommended_rows} == set(body["recommended"].values())

    status = httpx.get(server.url + "/admin/api/status", timeout=30).json()
    assert status["first_run"] == {c: {"installed": False, "recommended": body["recommended"][c]} for c in ("asr", "tts", "llm")}
    downloads = httpx.get(server.url + "/admin/api/downloads", timeout=30).json()
    assert downloads == {"object": "list", "data": []}


def test_first_run_says_what_is_installed(starter_data_dir: Path, server: ServerProcess) -> None:
    first_run = httpx.get(server.url + "/admin/api/status", timeout=30).json()["first_run"]
    assert all(first_run[c]["installed"] is True for c in ("asr", "tts", "llm"))


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    return subprocess.run([sys.executable, "-m", "app", "models", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_catalog_and_install_recommended(tmp_path: Path) -> None:
    listing = _cli(tmp_path / "data", "catalog")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith("This PC: ") and "* = recommended" in listing.stdout
    rows = {line[2:].split()[0]: line for line in listing.stdout.splitlines() if line[:1] in ("*", " ") and line[2:3].strip()}
    catalog = Catalog()
    assert set(rows) >= {e.id for e in catalog.entries}
    assert all(re.search(r"\b(fits|tight|too big)\b", rows[e.id]) for e in catalog.entries)
    starred = {model_id for model_id, line in rows.items() if line.startswith("*")}
    assert len(starred) == 3

    # Hugging Face is unreachable here: the set is named, each install is tried and says why it failed.
    result = _cli(tmp_path / "data", "install", "--recommended")
    assert result.returncode == 1
    named = result.stdout.splitlines()[0]
    assert named.startswith("Recommended for this PC: ") and all(model_id in named for model_id in starred)
    for model_id in starred:
        assert f"aistack: {model_id}: Could not reach Hugging Face at http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
