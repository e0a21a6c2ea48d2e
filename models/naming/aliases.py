"""Routing aliases: model names aistack resolves to a real installed model per request.

Every engine here streams, so an alias's `supports_streaming` is true whenever
it has something to resolve to.
"""

from __future__ import annotations

ROUTING_ALIASES: dict[str, tuple[str, ...]] = {
    # `auto`: the best installed ASR model for the language hint; `whisper-1`: the best installed Whisper.
    "asr": ("auto", "whisper-1"),
    # OpenAI's TTS model names speak with the default installed voice's model.
    "tts": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
}
