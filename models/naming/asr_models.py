"""Which installed speech-to-text model a request's `model` field means.

Clients name Whisper models many ways: catalog ids (`whisper-small`, `whisper-tiny.en`),
bare sizes (`small`, `tiny.en`, `large`, `turbo`), OpenAI's `whisper-1`, `auto`, or
nothing at all. `auto`/empty and `whisper-1` pick the best installed model for the
language hint, and never fail while any ASR model is installed: English-only
models are chosen only for English, unless nothing else is installed (then the
choice comes with a note the route passes on). Unknown and not-installed names
get `models.naming.resolve`'s messages, which list the installed models or say how to
install the one asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.core.errors import Malformed
from models.naming.resolve import not_available
from models.runtime.registry import WHISPER
from models.store.entries import WHISPER_LANGUAGES
from models.store.model_store import InstalledModel, ModelStore

AUTO_NAMES = ("", "auto", "default")
OPENAI_NAME = "whisper-1"

# Best first. An English-only model ranks just above the multilingual model of its size for English.
QUALITY = ("large-v3", "large-v3-turbo", "distil-large-v3", "medium", "small", "distil-small", "base", "tiny")


@dataclass(frozen=True)
class AsrChoice:
    model: InstalledModel
    note: str | None = None  # said to the client when the choice could not honour the language hint


def normalise_language(value: str | None) -> str | None:
    """ISO 639-1 code from `en`, `EN`, `en-US` or `en_GB`; None when empty. Unknown codes are `Malformed`."""
    text = (value or "").strip().lower().replace("_", "-")
    if not text:
        return None
    code = text.split("-", 1)[0]
    if code not in WHISPER_LANGUAGES:
        raise Malformed(
            f"Language '{value[:20] if value else ''}' is not an ISO 639-1 code Whisper knows (for example en, de, "
            "fr, es, ja). Leave it out to detect the language."
        )
    return code


def english_only(model: InstalledModel) -> bool:
    return model.languages == ["en"]


def resolve_asr(
    store: ModelStore, name: str | None, servable: list[InstalledModel], *, language: str | None, translate: bool
) -> AsrChoice:
    """The installed ASR model `name` means for this request, or `Malformed` saying what to do."""
    candidates = [m for m in servable if m.capability == "asr"]
    text = (name or "").strip()
    lowered = text.lower()
    if lowered in AUTO_NAMES or lowered == OPENAI_NAME:
        pool = [m for m in candidates if m.engine == WHISPER.name] if lowered == OPENAI_NAME else candidates
        return _best(pool or candidates, language=language, translate=translate, asked=text or "auto")
    found = store.find(text, "asr")
    if found is not None and found in candidates:
        return AsrChoice(found)
    size = _size_of(lowered)
    entry = store.catalog.get(size) if size else None
    if entry is not None and entry.capability == "asr":
        exact = next((m for m in candidates if m.id == entry.id), None)
        if exact is not None:
            return AsrChoice(exact)
        sibling = _english_sibling(entry.id, candidates)
        if sibling is not None and language in (None, "en") and not translate:
            return AsrChoice(sibling)
        raise not_available(store, "asr", entry.id)
    error = not_available(store, "asr", text)
    if store.catalog.get(text) is None:  # unknown, not merely uninstalled: mention the aliases too
        error = Malformed(error.message + " 'auto' and 'whisper-1' pick the best installed one.")
    raise error


def _size_of(name: str) -> str | None:
    """`whisper-small.en`, `openai/whisper-small`, `faster-whisper-small` -> `small.en` / `small`."""
    for prefix in ("openai/", "systran/", "faster-", "distil-whisper-"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name.startswith("whisper-"):
        name = name[len("whisper-") :]
    return name or None


def _english_sibling(model_id: str, candidates: list[InstalledModel]) -> InstalledModel | None:
    """`whisper-small` asked for but only `whisper-small.en` installed: the latter serves English."""
    if model_id.endswith(".en"):
        return None
    return next((m for m in candidates if m.id == f"{model_id}.en"), None)


def _rank(model: InstalledModel, language: str | None) -> tuple[int, int, int]:
    """Sort key, smaller is better: quality tier, then the English-only edge for English, then size."""
    size = model.id.removeprefix("whisper-").removesuffix(".en")
    tier = QUALITY.index(size) if size in QUALITY else len(QUALITY)
    english_edge = 0 if (english_only(model) == (language == "en")) else 1
    return tier, english_edge, -model.size_bytes


def _best(candidates: list[InstalledModel], *, language: str | None, translate: bool, asked: str) -> AsrChoice:
    if not candidates:
        raise Malformed(
            "No speech-to-text model is installed. Install one with `aistack models install whisper-small` "
            "(or `aistack models install-starter`), then try again."
        )
    fits = [m for m in candidates if _serves(m, language, translate)]
    if fits:
        return AsrChoice(min(fits, key=lambda m: _rank(m, language)))
    if translate:
        listing = ", ".join(sorted(m.id for m in candidates))
        raise Malformed(
            f"Translation needs a multilingual Whisper model, and the installed ones ({listing}) are English-only. "
            "Install one such as whisper-small, then try again."
        )
    best = min(candidates, key=lambda m: _rank(m, "en"))
    if language is None:
        return AsrChoice(best)  # nothing to detect with: English it is, as the response's `language` says
    note = (
        f"'{asked}' chose {best.id}, which transcribes English only, because no installed model supports "
        f"language '{language}'. Install a multilingual model such as whisper-small for other languages."
    )
    return AsrChoice(best, note)


def _serves(model: InstalledModel, language: str | None, translate: bool) -> bool:
    if english_only(model):
        return language == "en" and not translate
    return language is None or not model.languages or language in model.languages
