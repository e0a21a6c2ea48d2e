"""An extra ASR engine for the tests, registered through AISTACK_ENGINES.

`WholeFileWhisper` is the real faster-whisper engine on the real starter model;
it only declares that it cannot stream, which is how an engine without
incremental output looks to the server. It exists to drive the contract's
`streaming_unsupported` warning path, which no installed Whisper model takes.
"""

from __future__ import annotations

from typing import Any

from models.engines.whisper import WhisperEngine


class WholeFileWhisper(WhisperEngine):
    def info(self) -> dict[str, Any]:
        return {**super().info(), "supports_streaming": False}
