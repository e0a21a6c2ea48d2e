"""Embeddings from a llama.cpp chat model, on the context that already serves its chats.

The context is switched into embedding mode for the request and back after it
(`llama_set_embeddings`), so embeddings cost no second copy of the model in
RAM or VRAM. A model with its own pooling (a real embedding GGUF) returns one
vector per input; a chat model has none, so its per-token vectors are
mean-pooled. Vectors are L2-normalised, as OpenAI's are. The KV cache is
cleared afterwards, so the next chat re-reads its prompt once.
"""

from __future__ import annotations

from typing import Any

from models.core.errors import Malformed, Overflow
from models.engines.base import JobContext

PROVIDER = "llama.cpp"


def embed(llm: Any, inputs: list[Any], ctx: JobContext) -> tuple[list[bytes], int]:
    """One float32 little-endian vector per input (as bytes) and the number of tokens read."""
    import llama_cpp

    token_lists = [_tokens_of(llm, item, i) for i, item in enumerate(inputs)]
    pooled = llama_cpp.llama_pooling_type(llm.ctx) != llama_cpp.LLAMA_POOLING_TYPE_NONE
    limit = llm.context_params.n_ubatch if pooled else llm.n_ctx()
    for i, tokens in enumerate(token_lists):
        if len(tokens) > limit:
            where = f"'input[{i}]'" if len(token_lists) > 1 else "'input'"
            raise Overflow(
                f"{where} is {len(tokens)} tokens; this model embeds at most {limit} tokens at a time. Split the text into shorter pieces.",
                provider=PROVIDER,
            )
    llama_cpp.llama_set_embeddings(llm.ctx, True)
    try:
        vectors = []
        for tokens in token_lists:
            ctx.check()
            vectors.append(_normalised(_pooled_vector(llm, tokens) if pooled else _mean_vector(llm, tokens)))
    finally:
        llama_cpp.llama_set_embeddings(llm.ctx, False)
        llm._ctx.kv_cache_clear()
        llm.reset()
    return vectors, sum(len(t) for t in token_lists)


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


def _mean_vector(llm: Any, tokens: list[int]) -> Any:
    """Average of the per-token vectors, decoding in batch-sized pieces (a causal model sees its past)."""
    import llama_cpp
    import numpy as np

    n_embd = llm.n_embd()
    total = np.zeros(n_embd, dtype=np.float64)
    llm._ctx.kv_cache_clear()
    for start in range(0, len(tokens), llm.n_batch):
        piece = tokens[start : start + llm.n_batch]
        llm._batch.set_batch(batch=piece, n_past=start, logits_all=True)
        llm._ctx.decode(llm._batch)
        rows = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(llm.ctx), shape=(len(piece) * n_embd,))
        total += rows.reshape(len(piece), n_embd).sum(axis=0, dtype=np.float64)
    return total / len(tokens)


def _pooled_vector(llm: Any, tokens: list[int]) -> Any:
    import llama_cpp
    import numpy as np

    llm._ctx.kv_cache_clear()
    llm._batch.set_batch(batch=tokens, n_past=0, logits_all=True)
    llm._ctx.decode(llm._batch)
    n_embd = llm.n_embd()
    return np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(llm.ctx, 0), shape=(n_embd,)).astype(np.float64)


def _normalised(vector: Any) -> bytes:
    import numpy as np

    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector = vector / norm
    return bytes(vector.astype("<f4").tobytes())
