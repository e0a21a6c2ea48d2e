"""Text-to-speech voices: what is installed, and how a requested `voice` reaches one.

Each installed TTS model holds one voice (multi-speaker voices hold several
speakers); its engine's `VoiceReader` (named in the engine registry) describes
it without loading the engine. A request's `voice` may name:

1. an installed voice by id (`piper-en_US-joe-medium`), catalog alias, or file
   stem (`en_US-joe-medium`), optionally with `:speaker` for a multi-speaker voice;
2. a speaker of an installed multi-speaker voice;
3. an OpenAI voice name (`alloy`, `echo`, ...), mapped through `OPENAI_VOICE_TABLE`:
   the first installed candidate wins, else the default voice. The setting
   `voice_map` (AISTACK_VOICE_MAP, JSON) overrides any entry, and its key
   `default` picks the default voice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from models.core.errors import Malformed
from models.engines.voice import VoiceInfo
from models.naming.aliases import ROUTING_ALIASES
from models.naming.resolve import resolve
from models.runtime.registry import voice_reader
from models.store.model_store import InstalledModel, ModelStore

# OpenAI voice name -> installed voices to try, best first. Chosen by the voice's
# character (female / male, US / British); a name whose candidates are all
# missing speaks with the default voice.
OPENAI_VOICE_TABLE: dict[str, tuple[str, ...]] = {
    "alloy": ("piper-en_US-lessac-medium", "piper-en_US-amy-medium", "piper-en_US-joe-medium", "piper-en_US-ryan-high"),
    "ash": ("piper-en_US-ryan-high", "piper-en_US-joe-medium"),
    "ballad": ("piper-en_US-joe-medium", "piper-en_US-ryan-high"),
    "cedar": ("piper-en_US-joe-medium", "piper-en_US-ryan-high"),
    "coral": ("piper-en_US-amy-medium", "piper-en_US-lessac-medium"),
    "echo": ("piper-en_US-joe-medium", "piper-en_US-ryan-high"),
    "fable": ("piper-en_GB-alba-medium", "piper-en_US-ryan-high", "piper-en_US-joe-medium"),
    "marin": ("piper-en_US-lessac-medium", "piper-en_US-amy-medium"),
    "nova": ("piper-en_US-amy-medium", "piper-en_US-lessac-medium"),
    "onyx": ("piper-en_US-ryan-high", "piper-en_US-joe-medium"),
    "sage": ("piper-en_US-lessac-medium", "piper-en_US-amy-medium"),
    "shimmer": ("piper-en_US-amy-medium", "piper-en_US-lessac-medium"),
    "verse": ("piper-en_US-ryan-high", "piper-en_US-joe-medium"),
}
OPENAI_VOICES: tuple[str, ...] = tuple(sorted(OPENAI_VOICE_TABLE))


def voice_info(model: InstalledModel) -> VoiceInfo:
    """The voice of an installed TTS model, read by its engine's `VoiceReader`."""
    reader = voice_reader(model.engine)
    if reader is None:
        raise Malformed(f"Model '{model.id}' is not a voice: its engine {model.engine} does not speak.")
    return reader.read(model)


@dataclass(frozen=True)
class VoiceChoice:
    """What a request will speak with."""

    model: InstalledModel
    voice: VoiceInfo
    speaker_id: int | None
    speaker: str | None

    @property
    def label(self) -> str:
        return self.voice.id if self.speaker is None else f"{self.voice.id}:{self.speaker}"


def _speaks(voice: VoiceInfo, language: str | None) -> bool:
    if not language:
        return True
    family = language.strip().replace("-", "_").split("_")[0].lower()
    return family in voice.languages or voice.language.lower().startswith(family)


class VoiceBook:
    """The installed voices and the table that maps names onto them. Cheap: build one per request."""

    def __init__(self, store: ModelStore, voice_map: Mapping[str, str] | None = None):
        self.store = store
        self.voice_map = {k.strip().lower(): v for k, v in (voice_map or {}).items()}
        self.models: list[InstalledModel] = []
        self.voices: list[VoiceInfo] = []
        for model in sorted(store.by_capability("tts"), key=lambda m: m.id):
            try:
                info = voice_info(model)
            except Malformed:
                continue  # a damaged voice must not take the others down; it is simply not offered
            self.models.append(model)
            self.voices.append(info)

    # Listing ---------------------------------------------------------------------------
    def default(self) -> VoiceChoice:
        """`voice_map["default"]`, else what `alloy` maps to, else the first voice by id."""
        if not self.voices:
            raise Malformed("No text-to-speech voice is installed. Install one with `aistack models install-starter`.")
        if "default" in self.voice_map:
            return self._configured("default")
        return self._first_installed(OPENAI_VOICE_TABLE["alloy"], None) or self._choice(self.models[0], None)

    def openai_table(self) -> dict[str, str]:
        """OpenAI voice name -> the voice (and speaker) it speaks with now."""
        table: dict[str, str] = {}
        for name in OPENAI_VOICES if self.voices else ():
            try:
                table[name] = self.for_openai_name(name, None).label
            except Malformed:  # a voice_map entry naming a voice that is not installed
                table[name] = f"{self.voice_map.get(name, '?')} (not installed)"
        return table

    # Resolving -------------------------------------------------------------------------
    def choose(
        self, voice: str | None, model: str | None, speaker: str | int | None = None, language: str | None = None
    ) -> VoiceChoice:
        """The voice a request speaks with, or `Malformed` naming what is installed."""
        pinned = self._pinned_model(model)
        text = (voice or "").strip()
        if not text:
            choice = self._choice(pinned, None) if pinned else self.default()
            if pinned is None and not _speaks(choice.voice, language):
                choice = self._of_language(language) or choice
        else:
            choice = self._by_name(text, pinned, language)
        if speaker is not None and speaker != "":
            choice = VoiceChoice(choice.model, choice.voice, *self._speaker(choice.voice, speaker))
        return choice

    def _pinned_model(self, model: str | None) -> InstalledModel | None:
        name = (model or "").strip()
        if not name or name.lower() in ROUTING_ALIASES["tts"] or name.lower().startswith("gpt-4o-mini-tts"):
            return None
        return resolve(self.store, "tts", name)

    def _by_name(self, text: str, pinned: InstalledModel | None, language: str | None) -> VoiceChoice:
        base, _, speaker = text.partition(":")
        model = self._voice_model(base)
        if model is not None:
            if pinned is not None and model.id != pinned.id:
                raise Malformed(
                    f"Voice '{model.id}' is a different model from the requested model '{pinned.id}'. "
                    "Leave out 'model', or pick a voice of that model."
                )
            return self._choice(model, speaker or None)
        for candidate in [pinned] if pinned else self.models:
            info = voice_info(candidate)
            if text.lower() in (s.lower() for s in info.speakers):
                return self._choice(candidate, text)
        if text.lower() in OPENAI_VOICE_TABLE:
            return self._choice(pinned, None) if pinned else self.for_openai_name(text.lower(), language)
        raise Malformed(
            f"Unknown voice '{text[:80]}'. Installed voices: {', '.join(v.id for v in self.voices) or 'none'}. "
            f"OpenAI voice names ({', '.join(OPENAI_VOICES)}) also work. GET /v1/audio/voices lists them."
        )

    def _voice_model(self, name: str) -> InstalledModel | None:
        model = self.store.find(name, "tts")
        if model is not None:
            return model
        return next((m for m, v in zip(self.models, self.voices, strict=True) if v.stem.lower() == name.lower()), None)

    def for_openai_name(self, name: str, language: str | None) -> VoiceChoice:
        """Setting override, else the table's first installed candidate, else a voice of `language`, else default."""
        if name in self.voice_map:
            return self._configured(name)
        found = self._first_installed(OPENAI_VOICE_TABLE.get(name, ()), language)
        if found is None and language:
            found = self._of_language(language)
        return found or self.default()

    def _of_language(self, language: str | None) -> VoiceChoice | None:
        return next((self._choice(m, None) for m, v in zip(self.models, self.voices, strict=True)
                     if _speaks(v, language)), None)

    def _first_installed(self, candidates: tuple[str, ...], language: str | None) -> VoiceChoice | None:
        for voice_id in candidates:
            for model, info in zip(self.models, self.voices, strict=True):
                if model.id == voice_id and _speaks(info, language):
                    return self._choice(model, None)
        return None

    def _configured(self, key: str) -> VoiceChoice:
        target = self.voice_map[key]
        base, _, speaker = target.partition(":")
        model = self._voice_model(base.strip())
        if model is None:
            raise Malformed(
                f"The voice table (setting voice_map / AISTACK_VOICE_MAP) maps '{key}' to '{target[:80]}', which is "
                "not an installed voice. Install that voice or change the setting."
            )
        return self._choice(model, speaker.strip() or None)

    def _choice(self, model: InstalledModel, speaker: str | None) -> VoiceChoice:
        info = voice_info(model)
        return VoiceChoice(model, info, *self._speaker(info, speaker))

    @staticmethod
    def _speaker(info: VoiceInfo, speaker: str | int | None) -> tuple[int | None, str | None]:
        index = info.speaker_index(speaker)
        return index, (None if index is None else info.speakers[index])
