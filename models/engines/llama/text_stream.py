"""Model output as text for a client: UTF-8 across token boundaries, stop sequences held back.

A token can end in the middle of a UTF-8 character, and a stop sequence can
arrive split over several tokens; text is only released once it can no longer
turn into either. Used by every engine that streams generated text.
"""

from __future__ import annotations

import codecs


class TextStream:
    """Turns token pieces into text, holding back what may still become a stop sequence.

    `capture` is a marker (the start of a tool call) after which text is kept
    for the caller instead of streamed.
    """

    def __init__(self, stops: list[str], capture: str | None = None):
        self.stops = [s for s in stops if s]
        self.capture = capture
        self._watch = self.stops + ([capture] if capture else [])
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.sent = 0
        self.stopped = False
        self.captured = False

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to send."""
        self.text += self._decoder.decode(piece)
        if self.captured:
            return ""
        hit = self._first_hit() if self._watch else None
        if hit is None:
            return self._release(len(self.text) - self._held())
        at, marker = hit
        if marker == self.capture:
            self.captured = True
        else:
            self.stopped = True
            self.text = self.text[:at]
        return self._release(at)

    def finish(self) -> str:
        """The rest of the text at the end of generation."""
        if self.stopped:
            return ""
        self.text += self._decoder.decode(b"", final=True)
        return "" if self.captured else self._release(len(self.text))

    def _release(self, end: int) -> str:
        out = self.text[self.sent : end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return out

    def _first_hit(self) -> tuple[int, str] | None:
        found = [(self.text.find(m, self.sent), m) for m in self._watch]
        found = [(at, m) for at, m in found if at >= 0]
        return min(found) if found else None

    def _held(self) -> int:
        """Length of the longest tail that starts a stop sequence or the capture marker."""
        tail = self.text[self.sent :]
        best = 0
        for marker in self._watch:
            for size in range(min(len(marker) - 1, len(tail)), best, -1):
                if tail.endswith(marker[:size]):
                    best = size
                    break
        return best
