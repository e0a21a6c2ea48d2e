"""Small GGUF files written byte by byte: well-formed ones, and the hostile shapes the header check must refuse."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

ALIGN = 32


def _string(text: str | bytes, length: int | None = None) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def _value(value: Any) -> bytes:
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<Iq", 11, value)
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, list):
        items = b"".join(_string(v) for v in value)
        return struct.pack("<IIQ", 9, 8, len(value)) + items
    raise TypeError(type(value))


def gguf_bytes(
    metadata: dict[str, Any] | None = None,
    tensors: list[tuple[str, tuple[int, ...], int]] | None = None,
    *,
    tensor_count: int | None = None,
    key_count: int | None = None,
    offsets: list[int] | None = None,
    raw_kv: bytes = b"",
    data_bytes: int | None = None,
) -> bytes:
    """A GGUF v3 file; `tensors` are (name, shape, ggml type) with F32 = 0; counts, offsets and data size may lie."""
    metadata = {"general.architecture": "llama", "llama.context_length": 2048, "llama.block_count": 2, **(metadata or {})}
    tensors = tensors if tensors is not None else [("token_embd.weight", (8, 4), 0), ("output.weight", (8, 4), 0)]
    kv = b"".join(_string(k) + _value(v) for k, v in metadata.items()) + raw_kv
    n_keys = len(metadata) + (1 if raw_kv else 0)
    infos, sizes, at = b"", [], 0
    for index, (name, shape, ggml_type) in enumerate(tensors):
        size = 4
        for dim in shape:
            size *= dim
        offset = offsets[index] if offsets else at
        infos += _string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", ggml_type, offset)
        sizes.append(size)
        at += -(-size // ALIGN) * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if tensor_count is None else tensor_count,
                                 n_keys if key_count is None else key_count)
    body = head + kv + infos
    body += b"\0" * (-len(body) % ALIGN)
    return body + b"\0" * (at if data_bytes is None else data_bytes)


HOSTILE: dict[str, bytes] = {
    "absurd key length": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + b"key" + b"\0" * 64,
    "absurd string value": gguf_bytes(raw_kv=_string("evil") + struct.pack("<I", 8) + struct.pack("<Q", 2**40) + b"x"),
    "absurd array length": gguf_bytes(raw_kv=_string("evil") + struct.pack("<IIQ", 9, 4, 2**40) + b"\0" * 16),
    "absurd tensor count": gguf_bytes(tensor_count=2**40),
    "absurd key count": gguf_bytes(key_count=2**40),
    "tensor past the end": gguf_bytes(offsets=[0, 2**30]),
    "tensor bigger than the file": gguf_bytes(tensors=[("big", (1 << 20, 1 << 10), 0)], data_bytes=4096),
    "five dimensions": gguf_bytes(tensors=[("t", (1, 1, 1, 1, 1), 0)]),
    "unknown value type": gguf_bytes(raw_kv=_string("evil") + struct.pack("<I", 99)),
    "truncated header": gguf_bytes()[:60],
    "not gguf": b"GGML" + b"\0" * 100,
}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
