"""Reading a GGUF model file's header, checked against the real file, without llama.cpp.

llama.cpp trusts the header: an absurd string or array length, tensor count or
data offset in a hostile file makes it allocate without bound or read past the
end of the mapping, which kills the process that loads it. `read_gguf` walks the
whole header in pure Python, checks every length and offset against the file's
real size, and raises `GgufError` (a plain sentence naming what is wrong) before
llama.cpp ever opens the file. The same reader gives install-time metadata and
the numbers a memory estimate needs.

API (import from `models.store.gguf`):

    header = read_gguf(path)            # GgufHeader, or raises GgufError
    header.metadata                     # {"general.architecture": "llama", ...}; long arrays as ArraySummary
    header.tensors                      # [TensorInfo(name, shape, ggml_type, type_name, offset, nbytes), ...]
    header.architecture                 # "llama" | "qwen2" | ... | None
    header.layer_count                  # <arch>.block_count or None
    header.context_length               # <arch>.context_length (trained context) or None
    header.embedding_length, header.head_count, header.head_count_kv
    header.chat_template                # tokenizer.chat_template or None
    header.name                         # general.name or None
    header.tensor_bytes                 # sum of all tensors' sizes (the weights' memory)
    header.file_size, header.data_offset, header.alignment, header.version

`read_gguf(path, keep_array_items=n)` keeps arrays of up to n items as lists
(default 64); longer ones (the tokenizer's vocabulary) become
`ArraySummary(item_type, length)` so a metadata read stays small.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_STRING_BYTES = 64 * 2**20  # a chat template or a key is far smaller; a hostile length is not
MAX_ARRAY_ITEMS = 2**26  # vocabularies are ~10^5 to 10^6 entries
MAX_ARRAY_DEPTH = 4  # arrays of arrays exist in the format but not in real models beyond one level
MAX_TENSORS = 2**20  # a 400B model has ~10^4 tensors
MAX_KEYS = 2**16

# value type id -> (name, struct format or None for string/array)
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"), 4: ("uint32", "<I"),
    5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<?"), 10: ("uint64", "<Q"), 11: ("int64", "<q"),
    12: ("float64", "<d"),
}
_STRING, _ARRAY = 8, 9

# ggml tensor type id -> (name, elements per block, bytes per block); from ggml.c's type_traits.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}


class GgufError(ValueError):
    """The file is not a GGUF file this reader can vouch for; the message says what is wrong."""


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array too long to keep (e.g. `tokenizer.ggml.tokens`): its item type and length."""

    item_type: str
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    type_name: str  # "Q4_K", ...; "type<N>" for a type this reader does not know
    offset: int  # absolute offset in the file
    nbytes: int | None  # None for an unknown type


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    version: int
    file_size: int
    alignment: int
    data_offset: int
    metadata: dict[str, Any] = field(repr=False)
    tensors: list[TensorInfo] = field(repr=False)

    def _arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}") if self.architecture else None

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def layer_count(self) -> int | None:
        return _positive_int(self._arch_value("block_count"))

    @property
    def context_length(self) -> int | None:
        return _positive_int(self._arch_value("context_length"))

    @property
    def embedding_length(self) -> int | None:
        return _positive_int(self._arch_value("embedding_length"))

    @property
    def head_count(self) -> int | None:
        return _positive_int(self._arch_value("attention.head_count"))

    @property
    def head_count_kv(self) -> int | None:
        """KV heads (grouped-query attention); the head count when the file does not say."""
        return _positive_int(self._arch_value("attention.head_count_kv")) or self.head_count

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes or 0 for t in self.tensors)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        # Some converters write per-layer arrays (e.g. head_count_kv); the first entry is the usual answer.
        if isinstance(value, list) and value and isinstance(value[0], int) and value[0] > 0:
            return int(value[0])
        return None
    return value


def read_gguf(path: Path | str, *, keep_array_items: int = 64) -> GgufHeader:
    """Read and check the whole header of the GGUF file at `path`; raise GgufError if it cannot be trusted."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            if size < 24:
                raise GgufError(f"{path.name} is too short ({size} bytes) to be a GGUF model file.")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return _Reader(view, path, size, keep_array_items).header()
    except OSError as exc:
        raise GgufError(f"{path.name} cannot be read: {exc.strerror or exc}.") from exc


class _Reader:
    """A cursor over the mapped file that refuses to step past its end."""

    def __init__(self, view: mmap.mmap, path: Path, size: int, keep_array_items: int):
        self.view = view
        self.path = path
        self.size = size
        self.pos = 0
        self.keep = keep_array_items
        self._len_fmt = "<Q"  # version 1 used 32-bit lengths

    def fail(self, what: str) -> GgufError:
        return GgufError(f"{self.path.name} is not a valid GGUF model file: {what} (at byte {self.pos}).")

    def take(self, fmt: str) -> Any:
        width = struct.calcsize(fmt)
        if self.pos + width > self.size:
            raise self.fail("the file ends inside the header")
        (value,) = struct.unpack_from(fmt, self.view, self.pos)
        self.pos += width
        return value

    def count(self, fmt: str, limit: int, what: str, min_item_bytes: int) -> int:
        value = int(self.take(fmt))
        if value > limit or value * min_item_bytes > self.size - self.pos:
            raise self.fail(f"{what} is {value}, more than the {self.size}-byte file can hold")
        return value

    def string(self, what: str) -> str:
        length = self.count(self._len_fmt, MAX_STRING_BYTES, f"the length of {what}", 1)
        raw = bytes(self.view[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, n: int, key: str) -> None:
        """Step over `n` strings (a vocabulary of 10^5 of them): the hot loop of a header read."""
        unpack, width = struct.Struct(self._len_fmt).unpack_from, struct.calcsize(self._len_fmt)
        view, size, pos = self.view, self.size, self.pos
        for _ in range(n):
            if pos + width > size:
                break
            (length,) = unpack(view, pos)
            if length > MAX_STRING_BYTES or pos + width + length > size:
                break
            pos += width + length
        else:
            self.pos = pos
            return
        self.pos = pos
        raise self.fail(f"an item of array '{key[:80]}' runs past the end of the file")

    # Structure -------------------------------------------------------------------------
    def header(self) -> GgufHeader:
        if bytes(self.view[0:4]) != MAGIC:
            raise GgufError(f"{self.path.name} is not a GGUF model file (it lacks the GGUF signature).")
        self.pos = 4
        version = int(self.take("<I"))
        if version not in (1, 2, 3):
            raise self.fail(f"version {version} is not one this reader knows (1 to 3)")
        self._len_fmt = "<I" if version == 1 else "<Q"
        n_tensors = self.count(self._len_fmt, MAX_TENSORS, "the tensor count", 8 + 4 + 4 + 8)
        n_keys = self.count(self._len_fmt, MAX_KEYS, "the metadata key count", 8 + 4)
        metadata: dict[str, Any] = {}
        for _ in range(n_keys):
            key = self.string("a metadata key")
            metadata[key] = self.value(int(self.take("<I")), key, depth=0)
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment > 2**20:
            raise self.fail(f"general.alignment {alignment!r} is not a power of two")
        infos = [self.tensor_info() for _ in range(n_tensors)]
        data_offset = -(-self.pos // alignment) * alignment
        if infos and data_offset > self.size:  # a vocabulary-only file has no data section at all
            raise self.fail("the tensor data starts past the end of the file")
        tensors = [self.place(info, data_offset, alignment) for info in infos]
        return GgufHeader(self.path, version, self.size, alignment, data_offset, metadata, tensors)

    def value(self, kind: int, key: str, depth: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind][1])
        if kind == _STRING:
            return self.string(f"the value of '{key[:80]}'")
        if kind != _ARRAY:
            raise self.fail(f"'{key[:80]}' has value type {kind}, which GGUF does not define")
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(f"'{key[:80]}' nests arrays more than {MAX_ARRAY_DEPTH} deep")
        item = int(self.take("<I"))
        item_bytes = struct.calcsize(_SCALARS[item][1]) if item in _SCALARS else 4 if item == _ARRAY else 8
        length = self.count("<Q", MAX_ARRAY_ITEMS, f"the length of array '{key[:80]}'", item_bytes)
        if length > self.keep:
            self.skip_array(item, length, key, depth)
            return ArraySummary(_SCALARS[item][0] if item in _SCALARS else "string" if item == _STRING else "array", length)
        return [self.value(item, key, depth + 1) for _ in range(length)]

    def skip_array(self, item: int, length: int, key: str, depth: int) -> None:
        if item in _SCALARS:
            self.pos += length * struct.calcsize(_SCALARS[item][1])  # count() has checked it fits
        elif item == _STRING:
            self.skip_strings(length, key)
        else:
            for _ in range(length):
                self.value(item, key, depth + 1)

    def tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self.string("a tensor name")
        n_dims = int(self.take("<I"))
        if not 1 <= n_dims <= MAX_DIMS:
            raise self.fail(f"tensor '{name[:80]}' has {n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})")
        shape = tuple(int(self.take("<Q")) for _ in range(n_dims))
        return name, shape, int(self.take("<I")), int(self.take("<Q"))

    def place(self, info: tuple[str, tuple[int, ...], int, int], data_offset: int, alignment: int) -> TensorInfo:
        name, shape, ggml_type, relative = info
        elements = 1
        for dim in shape:
            elements *= dim
        start = data_offset + relative
        if relative % alignment or start > self.size:
            raise self.fail(f"tensor '{name[:80]}' starts at {start}, past the end or off its alignment")
        known = GGML_TYPES.get(ggml_type)
        if known is None:
            return TensorInfo(name, shape, ggml_type, f"type{ggml_type}", start, None)
        type_name, block, block_bytes = known
        if shape[0] % block:
            raise self.fail(f"tensor '{name[:80]}' has a row of {shape[0]}, not a multiple of {type_name}'s block")
        nbytes = elements // block * block_bytes
        if start + nbytes > self.size:
            raise self.fail(f"tensor '{name[:80]}' ({nbytes} bytes at {start}) runs past the end of the file")
        return TensorInfo(name, shape, ggml_type, type_name, start, nbytes)
