"""Embeddings from a llama.cpp chat model, on the context that already serves its chats.

The context is switched into embedding mode for the request and back after it
(`llama_set_embeddings`), so embeddings cost no second copy of the model in
RAM or VRAM. That switch is the whole context's, so an embedding job runs
alone, between chat steps (`batch.Exclusive`), in one sequence whose cache it
clears after. A model with its own pooling (a real embedding GGUF) returns one
vector per input; a chat model has none, so its per-token vectors are
mean-pooled. Vectors are L2-normalised, as OpenAI's are.
"""

from __future__ import annotations

from typing import Any

from models.core.errors import Malformed, Overflow
from models.engines.base import JobContext
from models.engines.llama.batch import BATCH_TOKENS

PROVIDER = "llama.cpp"


def embed(llm: Any, inputs: list[Any], ctx: JobContext, *, seq_id: int, n_ctx: int) -> tuple[list[bytes], int]:
    """One float32 little-endian vector per input (as bytes) and the number of tokens read.

    `seq_id` is the sequence to use (its cache is cleared), `n_ctx` its room in the cache.
    """
    import llama_cpp

    token_lists = [_tokens_of(llm, item, i) for i, item in enumerate(inputs)]
    pooled = llama_cpp.llama_pooling_type(llm.ctx) != llama_cpp.LLAMA_POOLING_TYPE_NONE
    limit = min(BATCH_TOKENS, n_ctx) if pooled else n_ctx
    for i, tokens in enumerate(token_lists):
        if len(tokens) > limit:
            where = f"'input[{i}]'" if len(token_lists) > 1 else "'input'"
            raise Overflow(
                f"{where} is {len(tokens)} tokens; this model embeds at most {limit} tokens at a time. Split the text into shorter pieces.",
                provider=PROVIDER,
            )
    batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
    llama_cpp.llama_set_embeddings(llm.ctx, True)
    try:
        vectors = []
        for tokens in token_lists:
            ctx.check()
            _clear(llm, seq_id)
            if pooled:
                _decode(llm, batch, tokens, 0, seq_id)
                vector = _pooled_vector(llm, seq_id)
            else:
                vector = _mean_vector(llm, batch, tokens, seq_id)
            vectors.append(_normalised(vector))
    finally:
        llama_cpp.llama_set_embeddings(llm.ctx, False)
        llama_cpp.llama_batch_free(batch)
        _clear(llm, seq_id)
    return vectors, sum(len(t) for t in token_lists)


def _clear(llm: Any, seq_id: int) -> None:
    import llama_cpp

    memory = llama_cpp.llama_get_memory(llm.ctx)
    if memory is not None:  # embedding models with non-causal attention may have no cache
        llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)


def _decode(llm: Any, batch: Any, tokens: list[int], start: int, seq_id: int) -> None:
    """Tokens at positions `start`.., every one with its output row."""
    import llama_cpp

    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, start + i, 1, True
        batch.seq_id[i][0] = seq_id
    if llama_cpp.llama_decode(llm.ctx, batch) != 0:
        raise RuntimeError("llama_decode failed while embedding")


def _tokens_of(llm: Any, item: Any, index: int) -> list[int]:
    if isinstance(item, str):
        tokens: list[int] = llm.tokenize(item.encode("utf-8"), add_bos=True, special=False)
    else:
        tokens = [int(t) for t in item]
        n_vocab = llm.n_vocab()
        if any(not 0 <= t < n_vocab for t in tokens):
            raise Malformed(
                f"'input[{index}]' holds a token id outside this model's vocabulary (0 to {n_vocab - 1}).",
                provider=PROVIDER,
            )
    if not tokens:
        raise Malformed(f"'input[{index}]' is empty. Send text to embed.", provider=PROVIDER)
    return tokens


def _mean_vector(llm: Any, batch: Any, tokens: list[int], seq_id: int) -> Any:
    """Average of the per-token vectors, decoding in batch-sized pieces (a causal model sees its past)."""
    import llama_cpp
    import numpy as np

    n_embd = llm.n_embd()
    total = np.zeros(n_embd, dtype=np.float64)
    for start in range(0, len(tokens), BATCH_TOKENS):
        piece = tokens[start : start + BATCH_TOKENS]
        _decode(llm, batch, piece, start, seq_id)
        rows = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(llm.ctx), shape=(len(piece) * n_embd,))
        total += rows.reshape(len(piece), n_embd).sum(axis=0, dtype=np.float64)
    return total / len(tokens)


def _pooled_vector(llm: Any, seq_id: int) -> Any:
    import llama_cpp
    import numpy as np

    n_embd = llm.n_embd()
    return np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(llm.ctx, seq_id), shape=(n_embd,)).astype(np.float64)


def _normalised(vector: Any) -> bytes:
    import numpy as np

    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector = vector / norm
    return bytes(vector.astype("<f4").tobytes())
