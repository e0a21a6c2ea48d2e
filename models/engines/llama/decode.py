"""One sequence's token loop for llama.cpp: sample, stream text, stop on time.

Written against llama.cpp's own pieces (the sampler chain, logits by batch
index) rather than `create_chat_completion`, because a server needs things
that API hides: several sequences decoded together (`batch`), the number of
prompt tokens served from the cache, a cancellation check between tokens, a
logit-bias and lazy-grammar sampler, and text streamed with stop sequences
held back. Each token's text comes from a piece cache, so the loop does no
work that grows with the answer's length.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from models.core.errors import Malformed
from models.engines.base import JobContext
from models.engines.llama.chat_format import TOOL_TRIGGER, Grammar
from models.engines.llama.json_budget import CLOSING_BIAS, COMMA_BIAS, JsonBudget, closes_container, closes_string
from models.engines.llama.text_stream import TextStream

PROVIDER = "llama.cpp"
# llama.cpp's "pick a random seed" value; a client seed never maps onto it.
_RANDOM_SEED = 0xFFFFFFFF
_PENALTY_WINDOW = 64


@dataclass
class Sampling:
    """Sampler settings of one request (OpenAI names; top_k, min_p, repeat_penalty are llama.cpp's)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_job(cls, data: dict[str, Any]) -> Sampling:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and v is not None}
        if "logit_bias" in known:
            known["logit_bias"] = {int(k): float(v) for k, v in known["logit_bias"].items()}
        return cls(**known)


@dataclass
class Outcome:
    """How a generation ended, with its real token counts and timings."""

    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_ms: float
    tokens_per_s: float | None
    captured: bool = False  # the output reached a tool call (auto mode): it was not streamed


class Decoder:
    """Tokens, samplers and the generation coroutine for one loaded `llama_cpp.Llama`."""

    def __init__(self, llm: Any):
        import llama_cpp

        self.llm = llm
        self._lib = llama_cpp
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._buffer = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self._closing_biases: tuple[dict[int, float], dict[int, float]] | None = None

    # Tokens ------------------------------------------------------------------------------
    def piece(self, token: int) -> bytes:
        """The bytes of one token, without special tokens (cached: the vocabulary never changes)."""
        cached = self._pieces.get(token)
        if cached is None:
            size = self._lib.llama_token_to_piece(self._vocab, token, self._buffer, len(self._buffer), 0, False)
            if size < 0:
                self._buffer = ctypes.create_string_buffer(-size)
                size = self._lib.llama_token_to_piece(self._vocab, token, self._buffer, len(self._buffer), 0, False)
            cached = self._pieces[token] = self._buffer.raw[:size]
        return cached

    def is_end(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def check_bias(self, logit_bias: dict[int, float]) -> None:
        bad = [t for t in logit_bias if not 0 <= t < self._n_vocab]
        if bad:
            raise Malformed(
                f"'logit_bias' names token id {bad[0]}, but this model's token ids run from 0 to {self._n_vocab - 1}.",
                provider=PROVIDER,
            )

    # Sampling ----------------------------------------------------------------------------
    def sampler(self, sampling: Sampling, grammar: Grammar | None) -> Any:
        """The sampler chain: bias, penalties, grammar, then greedy or top-k/top-p/min-p/temperature."""
        from llama_cpp._internals import LlamaSampler

        chain = LlamaSampler()
        if sampling.logit_bias:
            chain.add_logit_bias(self._n_vocab, sampling.logit_bias)
        chain.add_penalties(
            self._n_vocab,
            _PENALTY_WINDOW,
            sampling.repeat_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty,
        )
        if grammar is not None:
            self._add_grammar(chain, grammar)
        if sampling.temperature <= 0:
            chain.add_greedy()
        else:
            chain.add_top_k(sampling.top_k)
            chain.add_top_p(sampling.top_p, 1)
            chain.add_min_p(sampling.min_p, 1)
            chain.add_temp(sampling.temperature)
            chain.add_dist(_seed_value(sampling.seed))
        return chain

    def _add_grammar(self, chain: Any, grammar: Grammar) -> None:
        lib = self._lib
        text, root = grammar.text.encode(), grammar.root.encode()
        if grammar.lazy:
            patterns = (ctypes.c_char_p * 1)(TOOL_TRIGGER.encode())
            no_tokens = (lib.llama_token * 0)()
            made = lib.llama_sampler_init_grammar_lazy_patterns(self._vocab, text, root, patterns, 1, no_tokens, 0)
        else:
            made = lib.llama_sampler_init_grammar(self._vocab, text, root)
        if not made:
            raise Malformed(
                "The requested output format could not be compiled into a grammar. Simplify the JSON schema.",
                provider=PROVIDER,
            )
        lib.llama_sampler_chain_add(chain.sampler, made)

    def closing_biases(self) -> tuple[dict[int, float], dict[int, float]]:
        """Biases towards closing JSON inside a string and outside one (see `json_budget`); built once."""
        if self._closing_biases is None:
            inside: dict[int, float] = {}
            outside: dict[int, float] = {}
            for token in range(self._n_vocab):
                text = self.piece(token).decode("utf-8", errors="ignore")
                if self.is_end(token):
                    inside[token] = outside[token] = CLOSING_BIAS
                elif closes_string(text):
                    inside[token] = CLOSING_BIAS
                elif closes_container(text):
                    outside[token] = CLOSING_BIAS
                elif text.strip() == ",":
                    outside[token] = COMMA_BIAS
            self._closing_biases = (inside, outside)
        return self._closing_biases

    def _closing_chains(self, grammar: Grammar | None, generated: list[int]) -> tuple[Any, Any]:
        """Greedy chains leaning towards closers (in a string, outside one), their grammars caught up."""
        chains = tuple(self.sampler(Sampling(temperature=0, logit_bias=bias), grammar) for bias in self.closing_biases())
        for chain in chains:
            for token in generated:
                chain.accept(token)
        return chains[0], chains[1]

    # Generation --------------------------------------------------------------------------
    def generation(
        self,
        tokens: list[int],
        cached: int,
        *,
        sampling: Sampling,
        grammar: Grammar | None,
        max_tokens: int,
        stream: TextStream,
        ctx: JobContext,
        on_text: Callable[[str], None] | None = None,
    ) -> Generator[list[int], int, Outcome]:
        """One sequence's generation, as a coroutine driven by `models.engines.llama.batch`.

        It yields the tokens to add to its sequence (first the prompt after the
        `cached` prefix its slot already holds, then one sampled token at a
        time) and is sent back the batch index of the last one's logits, so
        several sequences share each `llama_decode`. `ctx.check()` runs before
        every token. Output constrained to JSON (a grammar that is not lazy) is
        closed in time if `max_tokens` would cut it (`json_budget`).
        """
        started = time.perf_counter()
        index = yield tokens[cached:]
        budget = JsonBudget(max_tokens, grammar.reserve) if grammar is not None and not grammar.lazy else None
        run = _Run(self.sampler(sampling, grammar))
        try:
            while len(run.generated) < max_tokens:
                if budget is not None and budget.due(len(run.generated)):
                    run.closing = self._closing_chains(grammar, run.generated)
                token = self._sample(run, budget, index)
                run.last_at = time.perf_counter()
                run.first_at = run.first_at or run.last_at
                if self.is_end(token):
                    run.finish = "stop"
                    break
                run.generated.append(token)
                piece = self.piece(token)
                if budget is not None:
                    budget.feed(piece)
                text = stream.feed(piece)
                if text and on_text is not None:
                    on_text(text)
                if stream.stopped:
                    run.finish = "stop"
                    break
                if len(run.generated) >= max_tokens:
                    break
                ctx.check()
                index = yield [token]
        finally:
            for chain in (run.chain, *run.closing):
                chain.close()
        rest = stream.finish()
        if rest and on_text is not None:
            on_text(rest)
        first_at = run.first_at or time.perf_counter()
        decode_s = (run.last_at or first_at) - first_at
        produced = len(run.generated)
        return Outcome(
            text=stream.text,
            finish_reason="length" if budget is not None and budget.closing else run.finish,
            prompt_tokens=len(tokens),
            completion_tokens=produced,
            cached_tokens=cached,
            ttft_ms=round((first_at - started) * 1000, 1),
            tokens_per_s=round((produced - 1) / decode_s, 1) if produced > 1 and decode_s > 0 else None,
            captured=stream.captured,
        )

    def _sample(self, run: _Run, budget: JsonBudget | None, index: int) -> int:
        ctx = self.llm._ctx
        if not run.closing or budget is None:
            return int(run.chain.sample(ctx, index))
        inside, outside = run.closing
        chosen, other = (inside, outside) if budget.in_string else (outside, inside)
        token = int(chosen.sample(ctx, index))
        other.accept(token)  # keep the other chain's grammar in step
        return token


@dataclass
class _Run:
    """The state of one generation loop."""

    chain: Any
    closing: tuple[Any, ...] = ()
    generated: list[int] = field(default_factory=list)
    finish: str = "length"
    first_at: float | None = None
    last_at: float | None = None


def _seed_value(seed: int | None) -> int:
    if seed is None:
        return _RANDOM_SEED
    value = seed % (1 << 32)
    return value ^ 1 if value == _RANDOM_SEED else value
