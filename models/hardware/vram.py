"""How much GPU memory a model needs, and how many llama.cpp layers fit in what is free.

Estimates, not promises: they decide before loading (a model that does not fit
would fail inside CUDA with a message nobody can act on), so each errs high.

- llama.cpp: each repeating layer's weights (read from the GGUF header's tensor
  table), the context cache for that layer (keys and values in f16), the output
  layer when every layer is on the GPU, and a compute buffer that grows with the
  context. As many layers go to the GPU as fit; the rest run on the CPU.
- CTranslate2 (Whisper): the weights in float16 plus decoding buffers (beam 5,
  a batch of 30 s windows); int8_float16 halves the weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.store.gguf import GgufHeader

MIB = 1 << 20
COMPUTE_BASE_BYTES = 384 * MIB  # llama.cpp's CUDA compute buffer and cuBLAS workspace at a small context
COMPUTE_PER_TOKEN_BYTES = 32 * 1024  # and its growth with the context (measured: ~0.5 GB at 4096 for 8B)
CUDA_CONTEXT_BYTES = 320 * MIB  # what any process pays the driver for a CUDA context
WHISPER_BUFFERS_BYTES = 768 * MIB  # beam search, 8 windows in a batch, the mel features
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class LlamaNeed:
    """A GGUF model's GPU memory, layer by layer."""

    layers: int
    layer_bytes: int  # weights of the largest repeating layer
    kv_layer_bytes: int  # the context cache of one layer
    output_bytes: int  # output norm and head: on the GPU only with every layer
    compute_bytes: int

    def gpu_bytes(self, layers_on_gpu: int) -> int:
        """VRAM with `layers_on_gpu` layers offloaded (0 still pays nothing: llama.cpp stays on the CPU)."""
        if layers_on_gpu <= 0:
            return 0
        layers_on_gpu = min(layers_on_gpu, self.layers)
        output = self.output_bytes if layers_on_gpu == self.layers else 0
        return CUDA_CONTEXT_BYTES + self.compute_bytes + output + layers_on_gpu * (self.layer_bytes + self.kv_layer_bytes)

    @property
    def full_bytes(self) -> int:
        return self.gpu_bytes(self.layers)


def llama_need(header: GgufHeader, context: int, sequences: int = 1) -> LlamaNeed:
    """Read the per-layer sizes from the GGUF header's tensors; the cache from width, heads, context and sequences."""
    per_layer: dict[int, int] = {}
    output = 0
    for tensor in header.tensors:
        match = _LAYER.match(tensor.name)
        if match:
            index = int(match.group(1))
            per_layer[index] = per_layer.get(index, 0) + (tensor.nbytes or 0)
        elif tensor.name.startswith("output"):
            output += tensor.nbytes or 0
    if output == 0:  # tied embeddings: the head is the token table, copied to the GPU
        output = next((t.nbytes or 0 for t in header.tensors if t.name == "token_embd.weight"), 0)
    layers = header.layer_count or len(per_layer)
    width, heads = header.embedding_length or 0, header.head_count or 1
    kv_heads: int = header.head_count_kv or heads
    kv_layer = 2 * context * sequences * (width * kv_heads // heads) * 2
    return LlamaNeed(
        layers=layers,
        layer_bytes=max(per_layer.values(), default=0),
        kv_layer_bytes=kv_layer,
        output_bytes=output,
        compute_bytes=COMPUTE_BASE_BYTES + context * COMPUTE_PER_TOKEN_BYTES,
    )


def fit_layers(need: LlamaNeed, free_bytes: int, reserve_bytes: int) -> int:
    """How many layers fit in `free_bytes` after keeping `reserve_bytes` free; all of them when the model fits."""
    budget = free_bytes - reserve_bytes
    if need.layers <= 0 or budget <= 0:
        return 0
    if need.full_bytes <= budget:
        return need.layers
    fixed = CUDA_CONTEXT_BYTES + need.compute_bytes
    per_layer = need.layer_bytes + need.kv_layer_bytes
    if per_layer <= 0 or budget <= fixed:
        return 0
    return max(0, min(need.layers - 1, (budget - fixed) // per_layer))


def whisper_need(model_bytes: int, compute_type: str) -> int:
    """VRAM of a CTranslate2 Whisper model sized by its file (float16 on disk, as published faster-whisper models are)."""
    weights = model_bytes // 2 if compute_type.startswith("int8") else model_bytes
    return CUDA_CONTEXT_BYTES + weights + WHISPER_BUFFERS_BYTES


def split_text(layers_on_gpu: int, layers: int) -> str:
    """The split as a person reads it: "24/32 layers on GPU"."""
    return f"{layers_on_gpu}/{layers} layers on GPU"
