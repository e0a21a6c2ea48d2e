"""What a text-to-speech engine tells the server about a voice, without loading the engine.

The server lists voices, resolves a request's `voice` and `speaker`, and
reports the sample rate before any model is loaded. Each TTS engine package
provides a `VoiceReader` that reads this from the model's small files; the
engine registry names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from models.core.errors import Malformed
from models.store.model_store import InstalledModel


@dataclass(frozen=True)
class VoiceInfo:
    """One installed voice."""

    id: str
    name: str
    stem: str  # the voice's file name without extension: clients may name it so
    language: str  # e.g. en_US
    languages: tuple[str, ...]  # ISO 639-1, e.g. ("en",)
    sample_rate: int
    quality: str
    speakers: tuple[str, ...]  # names by speaker index; empty for a single-speaker voice

    @property
    def num_speakers(self) -> int:
        return max(1, len(self.speakers))

    def speaker_index(self, speaker: str | int | None) -> int | None:
        """The index of `speaker` (name or index), None for the voice's own default; Malformed if unknown."""
        if speaker is None or speaker == "":
            return None
        text = str(speaker).strip()
        if isinstance(speaker, int) and not isinstance(speaker, bool) and 0 <= speaker < self.num_speakers:
            return speaker if self.speakers else None  # a JSON number is an index
        if not self.speakers:
            if text == "0" or text.lower() == self.name.lower():
                return None
            raise Malformed(f"Voice '{self.id}' has a single speaker; leave out 'speaker'.")
        if text in self.speakers:
            return self.speakers.index(text)
        lowered = [s.lower() for s in self.speakers]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if text.isdigit() and int(text) < len(self.speakers):
            return int(text)
        shown = ", ".join(self.speakers[:20]) + (", ..." if len(self.speakers) > 20 else "")
        raise Malformed(
            f"Voice '{self.id}' has no speaker '{text[:60]}'. Use an index from 0 to {len(self.speakers) - 1} "
            f"or a name: {shown}. GET /v1/audio/voices lists them."
        )

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "voice",
            "name": self.name,
            "language": self.language,
            "languages": list(self.languages),
            "sample_rate": self.sample_rate,
            "quality": self.quality,
            "num_speakers": self.num_speakers,
            "speakers": [{"id": i, "name": name} for i, name in enumerate(self.speakers)],
        }


class VoiceReader(Protocol):
    def read(self, model: InstalledModel) -> VoiceInfo:
        """The voice an installed model holds; `Malformed` (saying to reinstall) when its files are damaged."""
        ...
