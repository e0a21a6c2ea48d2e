"""Continuous batching: N sequences in one llama.cpp context, decoded together.

The context holds `slots` sequences, each with its own part of the KV cache
(`n_ctx` tokens each; llama.cpp's non-unified cache, as `llama-server
--parallel N` uses). Each `step()` builds one batch: the next token of every
sequence that is generating, plus prompt tokens of sequences still reading
theirs, at most `prefill_slice` of them per step, so a long prompt delays the
running streams by one slice at most. One `llama_decode` runs it; then every
sequence whose input is all read samples its next token from its own row of
logits (its own sampler chain and grammar).

A sequence is a coroutine (`Decoder.generation`): it yields the tokens to add
and is sent the batch index of the last one's logits. A request that finds no
free slot waits in arrival order. A free slot is chosen by the prompt prefix
it still holds (the second turn of a conversation goes back to its first
turn's slot), else the one used longest ago. Seeded requests read their whole
prompt in the same slices whatever else runs, so a seed gives the same answer
alone and under load.

Work that needs the whole context (embeddings switch it to embedding output)
is `Exclusive`: it waits until the running sequences finish, and no new
sequence starts before it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from models.core.errors import Cancelled
from models.engines.base import JobContext

log = logging.getLogger("aistack.llama")
BATCH_TOKENS = 512  # the most prompt tokens one step reads (the context's n_ubatch); a step adds one per slot

Done = Callable[[Any, BaseException | None], None]  # (result, None) or (None, error)


@dataclass(eq=False)
class Sequence:
    """A chat or completion request: its prompt and how to start its coroutine once it has a slot."""

    tokens: list[int]
    reuse: bool  # may start from the prefix its slot holds (False for seeded requests)
    start: Callable[[int], Generator[list[int], int, Any]]  # cached prefix length -> coroutine
    finish: Callable[[Any], Any]  # the coroutine's return value -> the job's result
    ctx: JobContext
    done: Done
    coroutine: Generator[list[int], int, Any] | None = None
    feed: list[int] = field(default_factory=list)  # tokens to decode before the next sample
    fed: int = 0
    slot: Slot | None = None


@dataclass(eq=False)
class Exclusive:
    """Work that runs alone on the context: `run(seq_id)` with the id of a sequence it may use and clear."""

    run: Callable[[int], Any]
    ctx: JobContext
    done: Done


@dataclass(eq=False)
class Slot:
    id: int
    tokens: list[int] = field(default_factory=list)  # what its part of the KV cache holds, in order
    busy: Sequence | None = None
    used_at: float = 0.0


class Batcher:
    """Owns the multi-sequence context and runs the steps. Used from one thread (the runner's)."""

    def __init__(self, llm: Any, *, slots: int, n_ctx: int, prefill_slice: int):
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self.n_ctx = n_ctx
        self.prefill_slice = min(prefill_slice, BATCH_TOKENS)
        self.slots = [Slot(i) for i in range(slots)]
        self.waiting: deque[Sequence | Exclusive] = deque()
        self._batch = llama_cpp.llama_batch_init(step_tokens(slots), 0, 1)
        self._memory = llama_cpp.llama_get_memory(llm.ctx)

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None

    # State -----------------------------------------------------------------------------
    @property
    def running(self) -> list[Sequence]:
        return [slot.busy for slot in self.slots if slot.busy is not None]

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or any(slot.busy is not None for slot in self.slots)

    def forget(self, slot_id: int) -> None:
        """Clear one sequence's cache (after exclusive work used it)."""
        self._lib.llama_memory_seq_rm(self._memory, slot_id, -1, -1)
        self.slots[slot_id].tokens = []

    # Work in -----------------------------------------------------------------------------
    def submit(self, work: Sequence | Exclusive) -> None:
        self.waiting.append(work)

    def step(self) -> None:
        """Drop what was cancelled, start what fits, and decode one batch (or run one exclusive job)."""
        self._drop_cancelled()
        self._admit()
        if self.waiting and isinstance(self.waiting[0], Exclusive) and not self.running:
            self._run_exclusive(self.waiting.popleft())  # type: ignore[arg-type]
            return
        rows = self._plan()
        if rows:
            self._decode(rows)

    def _drop_cancelled(self) -> None:
        for work in [w for w in self.waiting if w.ctx.cancelled]:
            self.waiting.remove(work)
            work.done(None, Cancelled("The client closed the connection."))
        for sequence in self.running:
            if sequence.ctx.cancelled:
                self._end(sequence, None, Cancelled("The client closed the connection."))

    def _admit(self) -> None:
        while self.waiting and isinstance(self.waiting[0], Sequence):
            free = [slot for slot in self.slots if slot.busy is None]
            if not free:
                return
            sequence = self.waiting.popleft()
            assert isinstance(sequence, Sequence)
            self._start(sequence, self._choose(free, sequence))

    def _choose(self, free: list[Slot], sequence: Sequence) -> Slot:
        """The free slot holding the longest prefix of this prompt; else the one used longest ago."""
        oldest = min(free, key=lambda slot: slot.used_at)
        if not sequence.reuse:
            return oldest
        best = max(free, key=lambda slot: (common_prefix(slot.tokens, sequence.tokens), -slot.used_at))
        return best if common_prefix(best.tokens, sequence.tokens) > 0 else oldest

    def _start(self, sequence: Sequence, slot: Slot) -> None:
        cached = min(common_prefix(slot.tokens, sequence.tokens), len(sequence.tokens) - 1) if sequence.reuse else 0
        if cached <= 0 or not self._lib.llama_memory_seq_rm(self._memory, slot.id, cached, -1):
            self._lib.llama_memory_seq_rm(self._memory, slot.id, -1, -1)  # recurrent models cannot cut: start over
            cached = 0
        slot.tokens = slot.tokens[:cached]
        slot.busy, sequence.slot = sequence, slot
        try:
            sequence.coroutine = sequence.start(cached)
            sequence.feed, sequence.fed = next(sequence.coroutine), 0
        except BaseException as exc:  # noqa: BLE001 - the request's own failure (e.g. a bad logit bias)
            self._end(sequence, None, exc)

    # Decoding ----------------------------------------------------------------------------
    def _plan(self) -> list[tuple[Sequence, list[int]]]:
        """What this step decodes: every generating sequence's token, then prompt slices up to the limit."""
        rows: list[tuple[Sequence, list[int]]] = []
        prompting: list[Sequence] = []
        for sequence in self.running:
            left = len(sequence.feed) - sequence.fed
            if left == 1:  # a sampled token (or a prompt's last): never waits behind prompts
                rows.append((sequence, sequence.feed[sequence.fed :]))
            elif left > 0:
                prompting.append(sequence)
        budget = self.prefill_slice
        for sequence in prompting:
            # A slice always starts at a multiple of the slice size of this prompt, whatever else runs,
            # so the same prompt is read the same way alone and under load.
            chunk = sequence.feed[sequence.fed : sequence.fed + self.prefill_slice]
            if len(chunk) > budget:
                break
            rows.append((sequence, chunk))
            budget -= len(chunk)
        return rows

    def _decode(self, rows: list[tuple[Sequence, list[int]]]) -> None:
        batch, lib = self._batch, self._lib
        batch.n_tokens = 0
        ends: list[int] = []
        for sequence, chunk in rows:
            assert sequence.slot is not None
            position = len(sequence.slot.tokens)
            last = sequence.fed + len(chunk) == len(sequence.feed)
            for i, token in enumerate(chunk):
                j = batch.n_tokens
                batch.token[j] = token
                batch.pos[j] = position + i
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = sequence.slot.id
                batch.logits[j] = last and i == len(chunk) - 1
                batch.n_tokens += 1
            ends.append(batch.n_tokens - 1)
        code = lib.llama_decode(self.llm.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        for (sequence, chunk), end in zip(rows, ends, strict=True):
            assert sequence.slot is not None
            sequence.slot.tokens.extend(chunk)
            sequence.fed += len(chunk)
            if sequence.fed == len(sequence.feed):
                self._resume(sequence, end)

    def _resume(self, sequence: Sequence, index: int) -> None:
        assert sequence.coroutine is not None
        try:
            sequence.feed, sequence.fed = sequence.coroutine.send(index), 0
        except StopIteration as stop:
            self._end(sequence, stop.value, None)
        except BaseException as exc:  # noqa: BLE001 - one sequence's failure ends it alone
            self._end(sequence, None, exc)

    def fail_running(self, error: BaseException) -> None:
        """A decode failed (the whole batch): end every running sequence with `error`."""
        for sequence in self.running:
            self._end(sequence, None, error)

    def _end(self, sequence: Sequence, outcome: Any, error: BaseException | None) -> None:
        slot = sequence.slot
        if slot is not None:
            slot.busy, slot.used_at = None, time.monotonic()
        if sequence.coroutine is not None and error is not None:
            sequence.coroutine.close()  # runs its cleanup (frees its sampler chains)
        if error is None:
            try:
                result = sequence.finish(outcome)
            except BaseException as exc:  # noqa: BLE001 - building the answer failed: that job fails alone
                sequence.done(None, exc)
                return
            sequence.done(result, None)
        else:
            sequence.done(None, error)

    def _run_exclusive(self, work: Exclusive) -> None:
        slot = min(self.slots, key=lambda s: s.used_at)
        try:
            result = work.run(slot.id)
        except BaseException as exc:  # noqa: BLE001
            work.done(None, exc)
        else:
            work.done(result, None)
        finally:
            self.forget(slot.id)
            slot.used_at = time.monotonic()


def step_tokens(slots: int) -> int:
    """The most tokens one step decodes (the context's n_batch): a prompt slice and every slot's next token."""
    return BATCH_TOKENS + slots


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
