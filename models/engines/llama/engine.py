"""The llama.cpp engine: chat, text completion and embeddings on one GGUF model.

Built inside the model's runner process. The context size is the model's
(the catalog's, else the GGUF's) capped by `AISTACK_LLM_CONTEXT`; threads are
the machine's physical cores (or `AISTACK_LLM_THREADS`): llama.cpp runs no
faster on hyper-threads and slower when it fights the server for them. With a CUDA build and an NVIDIA GPU
all layers go to the GPU; if that fails at load or warm-up the model loads on
the CPU and `info()` says why, never silently.

Jobs (plain data from server.routes.chat):
- `{"task": "chat", "messages", "tools", "tool_choice", "response_format", ...}`
- `{"task": "completion", "prompt", ...}`
- `{"task": "embeddings", "inputs": [str | [token ids]]}`
Chat and completion share `sampling`, `max_tokens`, `stop` and `stream`. A
job is accepted once the prompt fits (`prompt_tokens`); a streamed job then
emits `{"delta": text}` per token (tokens that come faster than
`llm_stream_interval_ms` share one delta).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from models.core.errors import EngineUnavailable, Malformed, Overflow
from models.engines.base import JobContext
from models.engines.llama.chat_format import CHATML_TEMPLATE, TOOL_OPEN, ChatTemplate, Grammar, parse_tool_calls, plan_chat
from models.engines.llama.decode import Decoder, Outcome, Sampling
from models.engines.llama.text_stream import TextStream
from models.runtime.protocol import ChatJob, CompletionJob, EmbeddingJob
from models.store.gguf import GgufError, GgufHeader, read_gguf

log = logging.getLogger("aistack.llama")
PROVIDER = "llama.cpp"
# Prompt tokens read between two cancel checks on the CPU (on a GPU, a whole batch takes milliseconds).
CPU_PREFILL_SLICE = 128


class LlamaEngine:
    def __init__(self, spec: dict[str, Any]):
        settings = spec.get("settings") or {}
        options = spec.get("options") or {}
        self.model_id = str(spec.get("id"))
        path = _gguf_path(spec)
        self.n_ctx = context_size(options, settings, _checked_header(path, self.model_id).context_length)
        self.threads = int(settings.get("llm_threads") or 0) or physical_cores()
        self.stream_interval = float(settings.get("llm_stream_interval_ms") or 0) / 1000
        self._info: dict[str, Any] = {}
        self.gpu_lost = False  # a CUDA error mid-job: the runner exits after it
        # models.hardware.device_choice picked the build (LLAMA_CPP_LIB_PATH) and how many layers fit in free VRAM.
        layers = spec.get("gpu_layers")
        self.gpu_layers = int(layers) if isinstance(layers, int) and layers != 0 else -1
        self.device_detail, self.device_reason = spec.get("device_detail"), spec.get("device_reason")
        self.llm = self._load(path, str(spec.get("device") or "auto"))
        self.template = _chat_template(self.llm, options)
        on_gpu = self._info.get("device") == "cuda"
        self.decoder = Decoder(self.llm, prefill_slice=None if on_gpu else CPU_PREFILL_SLICE)
        self._info.update(
            context=self.n_ctx,
            threads=self.threads,
            chat_template=self.template.source,
            embedding_size=self.llm.n_embd(),
        )

    # Loading ---------------------------------------------------------------------------
    def _load(self, path: Path, device: str) -> Any:
        if device != "cpu" and _gpu_offload_possible():
            try:
                llm = self._open(path, gpu_layers=self.gpu_layers)
                self._info.update(device="cuda", gpu_layers=self.gpu_layers, device_detail=self.device_detail,
                                  device_reason=self.device_reason)
                return llm
            except Exception as exc:  # noqa: BLE001 - any CUDA failure means: try the CPU, and say so
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                log.warning("CUDA load of %s failed (%s); loading on the CPU", self.model_id, reason)
                self._info["fallback"] = f"CUDA failed ({reason}); running on the CPU"
                self.device_reason = f"CUDA failed at load or warm-up ({reason}); running on the CPU instead."
        try:
            llm = self._open(path, gpu_layers=0)
        except Exception as exc:  # llama.cpp raises bare ValueError/RuntimeError on load
            raise EngineUnavailable(
                f"llama.cpp could not load model {self.model_id}. The GGUF file may be damaged or use an "
                "architecture this llama.cpp build does not support; reinstall the model or pick another.",
                provider=PROVIDER,
            ) from exc
        self._info.update(device="cpu", gpu_layers=0, device_detail=None, device_reason=self.device_reason)
        return llm

    def _open(self, path: Path, *, gpu_layers: int) -> Any:
        from llama_cpp import Llama

        llm = Llama(
            str(path),
            n_ctx=self.n_ctx,
            n_gpu_layers=gpu_layers,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )
        # Warm up: CUDA kernels and CPU buffers are set up on the first decode, so failures surface here.
        llm.eval([llm.token_bos() if llm.token_bos() >= 0 else 0])
        llm.reset()
        return llm

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        self.llm.close()

    # Jobs ------------------------------------------------------------------------------
    def run(self, job: ChatJob | CompletionJob | EmbeddingJob, ctx: JobContext) -> dict[str, Any]:
        try:
            return self._run(job, ctx)
        except (RuntimeError, OSError) as exc:
            from models.hardware.device_choice import gpu_lost_error, is_cuda_failure

            if self._info.get("device") != "cuda" or not is_cuda_failure(exc):
                raise
            self.gpu_lost = True
            raise gpu_lost_error(PROVIDER, exc) from exc

    def _run(self, job: ChatJob | CompletionJob | EmbeddingJob, ctx: JobContext) -> dict[str, Any]:
        if job["task"] == "chat":
            return self._chat(job, ctx)
        if job["task"] == "completion":
            return self._completion(job, ctx)
        if job["task"] == "embeddings":
            return self._embeddings(job, ctx)
        raise Malformed(f"The llama.cpp engine cannot run a '{job.get('task')}' job.", provider=PROVIDER)

    def _chat(self, job: ChatJob, ctx: JobContext) -> dict[str, Any]:
        plan = plan_chat(self.template, job)
        # Templates write their own BOS (`{{ bos_token }}`) where the model wants one.
        tokens = self.llm.tokenize(plan.prompt.encode("utf-8"), add_bos=False, special=True)
        capture = TOOL_OPEN if plan.tool_mode == "auto" else None
        outcome = self._generate(tokens, job, ctx, grammar=plan.grammar, capture=capture, quiet=plan.tool_mode == "forced")
        result = _usage(outcome)
        if plan.tool_mode != "none" and (outcome.captured or plan.tool_mode == "forced"):
            content, calls = parse_tool_calls(outcome.text, plan.tool_names)
            if calls:
                # A call closed early because max_tokens ran out is valid JSON but may be cut short: say so.
                finish = "length" if outcome.finish_reason == "length" else "tool_calls"
                return {**result, "content": content, "tool_calls": calls, "finish_reason": finish}
            # An unfinished call (cut by max_tokens): show the raw text rather than nothing.
            # `unsent` is the part a stream has not shown yet.
            cut = 0 if plan.tool_mode == "forced" else max(outcome.text.find(TOOL_OPEN), 0)
            return {**result, "content": outcome.text, "tool_calls": [], "unsent": outcome.text[cut:]}
        return {**result, "content": outcome.text, "tool_calls": []}

    def _completion(self, job: CompletionJob, ctx: JobContext) -> dict[str, Any]:
        tokens = self.llm.tokenize(str(job.get("prompt", "")).encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            raise Malformed("'prompt' is empty. Send the text to continue.", provider=PROVIDER)
        outcome = self._generate(tokens, job, ctx, grammar=None, capture=None, quiet=False)
        return {**_usage(outcome), "text": outcome.text}

    def _embeddings(self, job: EmbeddingJob, ctx: JobContext) -> dict[str, Any]:
        from models.engines.llama.embed import embed

        vectors, tokens = embed(self.llm, list(job.get("inputs") or []), ctx)
        return {"vectors": vectors, "prompt_tokens": tokens, "dimensions": self.llm.n_embd()}

    def _generate(
        self,
        tokens: list[int],
        job: ChatJob | CompletionJob,
        ctx: JobContext,
        *,
        grammar: Grammar | None,
        capture: str | None,
        quiet: bool,
    ) -> Outcome:
        sampling = Sampling.from_job(job.get("sampling") or {})
        self.decoder.check_bias(sampling.logit_bias)
        max_tokens = self._budget(len(tokens), job.get("max_tokens"))
        streaming = bool(job.get("stream"))
        ctx.accept(prompt_tokens=len(tokens))
        sender = _DeltaSender(ctx, self.stream_interval)
        outcome = self.decoder.generate(
            tokens,
            sampling=sampling,
            grammar=grammar,
            max_tokens=max_tokens,
            stream=TextStream(list(job.get("stop") or []), capture=capture),
            ctx=ctx,
            on_text=sender.add if streaming and not quiet else None,
        )
        sender.flush()
        return outcome

    def _budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """Tokens the answer may have: what was asked, clipped to the room left in the context."""
        room = self.n_ctx - prompt_tokens
        if room < 1:
            raise Overflow(
                f"The prompt is {prompt_tokens} tokens, but {self.model_id} is loaded with a context of "
                f"{self.n_ctx} tokens. Shorten the conversation, or raise AISTACK_LLM_CONTEXT if the model allows.",
                provider=PROVIDER,
            )
        return room if not max_tokens else min(int(max_tokens), room)


class _DeltaSender:
    """Sends streamed text to the server, at most once per `interval` seconds.

    Every message costs a pipe write here and a socket write in the server,
    which on a small CPU take time from the decoding threads; tokens that come
    faster than the interval travel together (the first one always goes at once).
    """

    def __init__(self, ctx: JobContext, interval: float):
        self._ctx = ctx
        self._interval = interval
        self._pending: list[str] = []
        self._last = float("-inf")

    def add(self, text: str) -> None:
        self._pending.append(text)
        now = time.perf_counter()
        if now - self._last >= self._interval:
            self._last = now
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._ctx.emit({"delta": "".join(self._pending)})
            self._pending.clear()


def _usage(outcome: Outcome) -> dict[str, Any]:
    return {
        "finish_reason": outcome.finish_reason,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cached_tokens": outcome.cached_tokens,
        "ttft_ms": outcome.ttft_ms,
        "tokens_per_s": outcome.tokens_per_s,
    }


def context_size(options: dict[str, Any], settings: dict[str, Any], trained: int | None) -> int:
    """The model's context (the catalog's, else the one it was trained with), capped by `llm_context`."""
    limit = int(settings.get("llm_context") or 4096)
    model = options.get("context") or trained
    return min(int(model), limit) if model else limit


def _checked_header(path: Path, model_id: str) -> GgufHeader:
    """The GGUF header, checked against the file before llama.cpp (which trusts it) ever opens the file."""
    try:
        return read_gguf(path)
    except GgufError as exc:
        raise EngineUnavailable(
            f"Model {model_id} cannot be loaded: {exc} Reinstall the model, or remove it if it came from "
            "an untrusted source.",
            provider=PROVIDER,
        ) from None


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _gguf_path(spec: dict[str, Any]) -> Path:
    folder = Path(str(spec["path"]))
    names = [n for n in spec.get("files") or [] if str(n).lower().endswith(".gguf")]
    if not names:
        raise EngineUnavailable(f"Model {spec.get('id')} has no .gguf file. Reinstall it.", provider=PROVIDER)
    return folder / names[0]


def _chat_template(llm: Any, options: dict[str, Any]) -> ChatTemplate:
    """The catalog's template if it sets one, else the GGUF's, else ChatML."""
    model = llm._model
    eos = model.token_get_text(llm.token_eos()) if llm.token_eos() >= 0 else ""
    bos = model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else ""
    if options.get("chat_template"):
        return ChatTemplate(str(options["chat_template"]), bos_token=bos, eos_token=eos, source="catalog")
    if llm.metadata.get("tokenizer.chat_template"):
        return ChatTemplate(llm.metadata["tokenizer.chat_template"], bos_token=bos, eos_token=eos, source="gguf")
    return ChatTemplate(CHATML_TEMPLATE, bos_token=bos, eos_token=eos, source="chatml")


def _gpu_offload_possible() -> bool:
    """A CUDA build of llama.cpp and an NVIDIA GPU that NVML can see."""
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return False
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount()) > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - any NVML failure means no usable NVIDIA GPU
        return False
