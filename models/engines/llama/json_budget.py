"""Keeps grammar-constrained JSON whole when `max_tokens` runs out.

A grammar guarantees that every token keeps the output a valid JSON prefix, not
that the model ever finishes: a small model can nest or ramble until the token
limit cuts it mid-string. So the decoder watches how deeply the output is
nested; once the tokens left are only just enough to close it (and to write
the keys a schema still requires), sampling turns greedy with a strong bias
towards closing: inside a string towards a closing quote, outside towards `}`
and `]` (and, weaker, towards a comma, which ends a number that would
otherwise grow digit by digit), and towards the end of the answer. The grammar still decides what is
allowed, so required keys and value types are kept and the result stays valid
against the schema; it is reported with `finish_reason: "length"` because it
was cut short.
"""

from __future__ import annotations

# Tokens left for closing: two per open level plus a margin for a pending key or value and the
# text that follows the JSON (a tool call's closing tag). Grammar.reserve adds the required keys.
_PER_LEVEL = 2
_MARGIN = 16
CLOSING_BIAS = 50.0
# A comma ends a number or an unfinished value, but opens more to write: it only wins over
# ordinary tokens, never over a closer.
COMMA_BIAS = 25.0


class JsonBudget:
    """Tracks nesting of the JSON produced so far and says when to start closing it."""

    def __init__(self, max_tokens: int, reserve: int = 0):
        self.max_tokens = max_tokens
        self.reserve = reserve
        self.depth = 0
        self.closing = False
        self._in_string = False
        self._escaped = False

    @property
    def in_string(self) -> bool:
        return self._in_string

    def feed(self, piece: bytes) -> None:
        """Account for one token's bytes (structural characters are ASCII, so bytes suffice)."""
        for byte in piece:
            char = chr(byte)
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth = max(0, self.depth - 1)

    def due(self, produced: int) -> bool:
        """True once, when the tokens left are just enough to close what is open."""
        if self.closing:
            return False
        left = self.max_tokens - produced
        if left <= _PER_LEVEL * self.depth + _MARGIN + self.reserve:
            self.closing = True
        return self.closing


def closes_string(text: str) -> bool:
    """A token that ends a string and maybe what holds it: `"`, `"}`, `"]}`..."""
    return text.startswith('"') and set(text) <= set('"}] ')


def closes_container(text: str) -> bool:
    """A token made only of `}` and `]` (and spaces)."""
    stripped = text.strip()
    return bool(stripped) and set(stripped) <= set("}]")
