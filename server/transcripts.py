"""From Whisper's decoder segments to what a user reads: sentences, subtitle cues, srt, vtt, text.

Whisper cuts its output where its 30 s window and its timestamp tokens fall,
which is neither a sentence nor a subtitle. Both are rebuilt here from word
timestamps. Everything is a pure function (or a small incremental class) over
the plain-dict segments the runner sends, so the rules are unit-tested without
a model and the streaming path and the whole-file path share one code path:
`Segmenter.feed` is called per decoder segment as it arrives, and a finished
sentence or cue is final the moment it is returned.

Rules (CONTRACT.md, "Segment granularity"):
- sentence: a segment ends at sentence-final punctuation; one longer than 30 s is
  split at its last comma-like break (else its longest pause) before the cap.
- subtitle: a cue holds at most 70 characters and lasts 1 to 7 s, cut at word boundaries.
  A cue closes at a sentence end or a pause; a full cue goes back to its last sentence
  end or comma so lines read as phrases; a short cue is held on screen until 1 s has
  passed, and the next cue starts after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Granularity = Literal["sentence", "subtitle"]

SENTENCE_MAX_SEC = 30.0
CUE_MAX_CHARS = 70
CUE_MIN_SEC = 1.0
CUE_MAX_SEC = 7.0
CUE_PAUSE_SEC = 1.5  # a silence this long starts a new cue
CUE_MIN_BREAK_CHARS = 20  # a full cue goes back to its last comma only if that leaves this much before it
LINE_CHARS = 42

_FINAL = (".", "!", "?", "…", "。", "！", "？")
_CLOSERS = "\"'”’»)]}"
_SOFT = (",", ";", ":", "，", "、", "—", "–")
# A cue that must break mid-sentence breaks before one of these rather than between "the" and its noun.
_LINKING = {
    "and", "but", "or", "so", "because", "when", "while", "where", "which", "who", "that", "with", "without",
    "from", "to", "for", "of", "in", "on", "at", "after", "before", "until", "if", "than",
}
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "mt", "no", "fig", "approx"}


@dataclass
class Word:
    start: float
    end: float
    text: str  # as Whisper spells it, usually with its leading space
    probability: float | None
    source: int  # index of the decoder segment it came from
    timed: bool  # False when the engine gave no word times and they were spread over the segment


def ends_sentence(text: str) -> bool:
    word = text.strip().rstrip(_CLOSERS)
    if not word.endswith(_FINAL):
        return False
    stem = word.rstrip(".").lower()
    if word.endswith(".") and (stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())):
        return False  # "Dr." or an initial, not the end of a sentence
    return True


def _soft_break(text: str) -> bool:
    return text.strip().rstrip(_CLOSERS).endswith(_SOFT)


def words_of(segment: dict[str, Any], source: int) -> list[Word]:
    """The segment's words; without word times, its text split on spaces with times spread by length."""
    given = segment.get("words") or []
    if given:
        return [
            Word(float(w["start"]), float(w["end"]), str(w["word"]), w.get("probability"), source, True)
            for w in given
        ]
    pieces = [" " + p for p in str(segment.get("text", "")).split()]
    start, end = float(segment.get("start", 0.0)), float(segment.get("end", 0.0))
    total = sum(len(p) for p in pieces) or 1
    words, at = [], start
    for piece in pieces:
        step = (end - start) * len(piece) / total
        words.append(Word(round(at, 3), round(at + step, 3), piece, None, source, False))
        at += step
    return words


def _text(words: Iterable[Word]) -> str:
    return "".join(w.text for w in words).strip()


# Cutting ---------------------------------------------------------------------------------
def cut_sentences(words: list[Word], final: bool) -> tuple[list[list[Word]], list[Word]]:
    """Finished sentences, and the words of the one still open (empty when `final`)."""
    done: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        while current and word.end - current[0].start > SENTENCE_MAX_SEC:
            head, current = _split_long(current)
            done.append(head)
        current.append(word)
        if ends_sentence(word.text):
            done.append(current)
            current = []
    if final and current:
        done.append(current)
        current = []
    return done, current


def _split_long(words: list[Word]) -> tuple[list[Word], list[Word]]:
    """Split an over-long sentence at its last comma-like break, else at its longest pause."""
    if len(words) < 2:
        return words, []
    soft = [i for i in range(len(words) - 1) if _soft_break(words[i].text)]
    if soft:
        cut = soft[-1] + 1
    else:
        cut = max(range(1, len(words)), key=lambda i: words[i].start - words[i - 1].end)
    return words[:cut], words[cut:]


def cut_cues(words: list[Word], final: bool) -> tuple[list[list[Word]], list[Word]]:
    """Finished subtitle cues (word groups), and the words of the one still open."""
    done: list[list[Word]] = []
    current: list[Word] = []
    for word in _split_overlong_words(words):
        if current and _closes_before(current, word):
            done.append(current)
            current = []
        while current and not _fits(current, word):
            head, current = _break_cue(current)
            done.append(head)
        current.append(word)
        if ends_sentence(word.text) and current[-1].end - current[0].start >= CUE_MIN_SEC:
            done.append(current)
            current = []
    if final and current:
        done.append(current)
        current = []
    return done, current


def _closes_before(current: list[Word], word: Word) -> bool:
    """A pause, or a short finished sentence that can stay on screen for 1 s before `word` starts."""
    if word.start - current[-1].end >= CUE_PAUSE_SEC:
        return True
    return ends_sentence(current[-1].text) and word.start - current[0].start >= CUE_MIN_SEC


def _fits(current: list[Word], word: Word) -> bool:
    return len(_text([*current, word])) <= CUE_MAX_CHARS and word.end - current[0].start <= CUE_MAX_SEC


def _break_cue(words: list[Word]) -> tuple[list[Word], list[Word]]:
    """Where a full cue ends: its last sentence end or comma, else before its last linking word.

    Each choice must leave a reasonable first part; failing all, the cue is cut where it is full.
    """
    def long_enough(i: int) -> bool:
        return len(_text(words[: i + 1])) >= CUE_MIN_BREAK_CHARS

    last = len(words) - 1
    punctuation = [i for i in range(last + 1) if ends_sentence(words[i].text) or (_soft_break(words[i].text) and long_enough(i))]
    linking = [i for i in range(last) if words[i + 1].text.strip().lower() in _LINKING and long_enough(i)]
    breaks = punctuation or linking
    cut = breaks[-1] + 1 if breaks else len(words)
    return words[:cut], words[cut:]


def _split_overlong_words(words: list[Word]) -> list[Word]:
    """A "word" longer than a cue (a URL, a run of symbols) is cut into cue-sized pieces."""
    out: list[Word] = []
    for word in words:
        body = word.text.strip()
        if len(body) <= CUE_MAX_CHARS:
            out.append(word)
            continue
        parts = [body[i : i + CUE_MAX_CHARS] for i in range(0, len(body), CUE_MAX_CHARS)]
        step = (word.end - word.start) / len(parts)
        for i, part in enumerate(parts):
            start = word.start + i * step
            out.append(Word(round(start, 3), round(start + step, 3), " " + part, word.probability, word.source, word.timed))
    return out


# Assembling output segments ------------------------------------------------------------------
class Segmenter:
    """Turns decoder segments, fed one at a time, into finished sentences or subtitle cues."""

    def __init__(self, granularity: Granularity):
        self.granularity = granularity
        self._sources: dict[int, dict[str, Any]] = {}
        self._source_words: dict[int, int] = {}
        self._pending: list[Word] = []
        self._next_id = 0
        self._not_before = 0.0  # a cue held on screen pushes the next one back
        self._emitted_text = False

    def feed(self, segment: dict[str, Any]) -> list[dict[str, Any]]:
        source = len(self._sources)
        self._sources[source] = segment
        words = words_of(segment, source)
        self._source_words[source] = len(words)
        self._pending += words
        return self._cut(final=False)

    def finish(self) -> list[dict[str, Any]]:
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[dict[str, Any]]:
        cut = cut_cues if self.granularity == "subtitle" else cut_sentences
        groups, self._pending = cut(self._pending, final)
        return [self._segment(group) for group in groups if _text(group)]

    def _segment(self, words: list[Word]) -> dict[str, Any]:
        start, end = words[0].start, words[-1].end
        if self.granularity == "subtitle":
            start = max(start, self._not_before)
            end = min(max(end, start + CUE_MIN_SEC), start + CUE_MAX_SEC)
            self._not_before = end
        raw = "".join(w.text for w in words)
        delta = raw if self._emitted_text else raw.lstrip()
        self._emitted_text = True
        segment = {
            "id": self._next_id,
            "start": round(start, 3),
            "end": round(end, 3),
            "text": raw.strip(),
            **self._diagnostics(words),
            "words": [_word_out(w) for w in words if w.timed],
            "delta": delta,
        }
        self._next_id += 1
        return segment

    def _diagnostics(self, words: list[Word]) -> dict[str, Any]:
        """Whisper's per-segment scores, weighted by how many of the words came from each decoder segment."""
        counts: dict[int, int] = {}
        for word in words:
            counts[word.source] = counts.get(word.source, 0) + 1
        sources = [self._sources[i] for i in counts]
        whole = all(counts[i] == self._source_words[i] for i in counts)
        out: dict[str, Any] = {
            "seek": sources[0].get("seek", 0),
            "tokens": [t for s in sources for t in s.get("tokens", [])] if whole else [],
        }
        for key in ("avg_logprob", "compression_ratio", "no_speech_prob"):
            values = [(self._sources[i].get(key), n) for i, n in counts.items()]
            numbers = [(float(v), n) for v, n in values if v is not None]
            if numbers and len(numbers) == len(values):
                out[key] = round(sum(v * n for v, n in numbers) / sum(n for _, n in numbers), 4)
        temps = [float(t) for s in sources if (t := s.get("temperature")) is not None]
        if temps:
            out["temperature"] = max(temps)
        return out


def _word_out(word: Word) -> dict[str, Any]:
    out: dict[str, Any] = {"start": word.start, "end": word.end, "word": word.text.strip()}
    if word.probability is not None:
        out["probability"] = word.probability
    return out


def segment_all(decoder_segments: list[dict[str, Any]], granularity: Granularity) -> list[dict[str, Any]]:
    segmenter = Segmenter(granularity)
    out = [s for segment in decoder_segments for s in segmenter.feed(segment)]
    return out + segmenter.finish()


def as_one(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """All segments as a single one: what an engine that cannot stream sends as its one delta."""
    text = full_text(segments)
    return {
        "id": 0,
        "start": segments[0]["start"] if segments else 0.0,
        "end": segments[-1]["end"] if segments else 0.0,
        "text": text,
        "words": [w for s in segments for w in s.get("words", [])],
        "delta": text,
    }


def full_text(segments: list[dict[str, Any]]) -> str:
    """The transcript: every delta in order, exactly what a streaming client gets by concatenating them."""
    return "".join(s["delta"] for s in segments).strip()


# Response bodies ---------------------------------------------------------------------------
def public(segment: dict[str, Any]) -> dict[str, Any]:
    """A segment as clients see it (the streaming `delta` bookkeeping removed)."""
    return {k: v for k, v in segment.items() if k != "delta"}


def verbose_json(
    result: dict[str, Any], segments: list[dict[str, Any]], *, with_segments: bool = True, with_words: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": result.get("task", "transcribe"),
        "language": result.get("language", ""),
        "duration": result.get("duration", 0.0),
        "text": full_text(segments),
    }
    if with_segments:
        body["segments"] = [public(s) for s in segments]
    if with_words:
        body["words"] = [w for s in segments for w in s.get("words", [])]
    body["usage"] = {"type": "duration", "seconds": round(float(result.get("duration", 0.0)), 3)}
    return body


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def wrap_cue(text: str) -> str:
    """Two balanced lines when a cue is longer than one subtitle line."""
    if len(text) <= LINE_CHARS or " " not in text:
        return text
    middle = len(text) // 2
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return text[:cut] + "\n" + text[cut + 1 :]


def srt(cues: list[dict[str, Any]]) -> str:
    blocks = [
        f"{i}\n{_clock(c['start'], ',')} --> {_clock(c['end'], ',')}\n{wrap_cue(c['text'])}\n"
        for i, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def vtt(cues: list[dict[str, Any]]) -> str:
    blocks = [f"{_clock(c['start'], '.')} --> {_clock(c['end'], '.')}\n{wrap_cue(c['text'])}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)
