"""A malicious model file: the GGUF header is checked against the real file before llama.cpp opens it.

llama.cpp trusts the header's lengths, counts and offsets. `models.store.gguf` reads
the header in Python, refuses absurd ones with a sentence, and the llama.cpp
engine runs that check first: a hostile file gets a 503 envelope and kills at
most its own runner, never the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench.harness import ServerProcess
from models.store.gguf import ArraySummary, GgufError, read_gguf
from tests.support.gguf_files import HOSTILE, gguf_bytes, write
from tests.support.speech import default_models_dir

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)


def test_reader_reads_a_well_formed_file(tmp_path: Path) -> None:
    header = read_gguf(write(tmp_path / "ok.gguf", gguf_bytes(metadata={"tokenizer.chat_template": "{{ x }}"})))
    assert header.architecture == "llama" and header.context_length == 2048 and header.layer_count == 2
    assert header.chat_template == "{{ x }}"
    assert [t.name for t in header.tensors] == ["token_embd.weight", "output.weight"]
    assert header.tensor_bytes == 2 * 8 * 4 * 4 and header.tensors[0].type_name == "F32"
    assert header.tensors[-1].offset + (header.tensors[-1].nbytes or 0) <= header.file_size


@pytest.mark.parametrize("case", list(HOSTILE))
def test_reader_refuses_hostile_headers(tmp_path: Path, case: str) -> None:
    path = write(tmp_path / "evil.gguf", HOSTILE[case])
    with pytest.raises(GgufError) as caught:
        read_gguf(path)
    assert "evil.gguf" in str(caught.value)


def test_reader_agrees_with_llama_cpp_on_the_starter_model() -> None:
    """The same metadata llama.cpp reads, from the real starter GGUF (SmolLM2 135M)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    files = sorted((default_models_dir() / "smollm2-135m-instruct").glob("*.gguf"))
    if not files:
        pytest.skip("starter chat model not installed")
    header = read_gguf(files[0])
    vocab = llama_cpp.Llama(str(files[0]), vocab_only=True, verbose=False)
    try:
        meta = vocab.metadata
        assert header.architecture == meta["general.architecture"] == "llama"
        assert str(header.context_length) == meta["llama.context_length"]
        assert str(header.layer_count) == meta["llama.block_count"]
        assert header.chat_template == meta.get("tokenizer.chat_template")
        tokens = header.metadata["tokenizer.ggml.tokens"]
        assert isinstance(tokens, ArraySummary) and tokens.length == vocab.n_vocab()
    finally:
        vocab.close()
    assert 0 < header.tensor_bytes <= header.file_size and header.tensors


def install_gguf_model(data_dir: Path, model_id: str, data: bytes) -> None:
    """A llama.cpp model whose one file is `data` (a store-valid install, as `aistack models import` makes)."""
    import hashlib

    folder = data_dir / "models" / model_id
    write(folder / "model.gguf", data)
    manifest = {
        "id": model_id, "capability": "llm", "engine": "llama.cpp", "owned_by": "tests",
        "files": [{"name": "model.gguf", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}], "options": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", ["absurd array length", "absurd tensor count", "tensor past the end"])
def test_hostile_model_file_gets_503_and_the_server_lives(
    start_server: Callable[..., ServerProcess], tmp_path: Path, case: str
) -> None:
    pytest.importorskip("llama_cpp")
    data_dir = tmp_path / "data"
    install_gguf_model(data_dir, "evil-model", HOSTILE[case])
    server = start_server(data_dir=data_dir)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        body = {"model": "evil-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["kind"] == "network" and "not a valid GGUF" in error["message"] and "Reinstall" in error["message"]
        assert client.get("/health").status_code == 200
        assert client.post("/v1/chat/completions", json=body).status_code == 503  # again: same answer, no crash
    assert server.proc.poll() is None
