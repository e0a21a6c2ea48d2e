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
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from models.core.errors import EngineUnavailable, Malformed, Overflow
from models.engines.base import JobContext
from models.engines.llama.batch import BATCH_TOKENS, Batcher, Done, Exclusive, Sequence, step_tokens
from models.engines.llama.chat_format import CHATML_TEMPLATE, TOOL_OPEN, ChatTemplate, Grammar, parse_tool_calls, plan_chat
from models.engines.llama.decode import Decoder, Outcome, Sampling
from models.engines.llama.text_stream import TextStream
from models.runtime.protocol import ChatJob, CompletionJob, EmbeddingJob
from models.store.gguf import GgufError, GgufHeader, read_gguf

log = logging.getLogger("aistack.llama")
PROVIDER = "llama.cpp"
# Prompt tokens one step reads on the CPU, between two tokens of the running streams and two cancel
# checks (on a GPU, a whole batch takes milliseconds). A CPU reads a prompt at a few hundred tokens/s
# for the starter model on 2 cores, so a full 512-token batch would stall the streams and could
# outlast the cancel grace; a fixed slice also keeps results reproducible.
CPU_PREFILL_SLICE = 128
SCRATCH_CONTEXT = 256  # the context `Llama` makes before it is replaced by the multi-sequence one


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
        # models.hardware.device_choice picked the build (LLAMA_CPP_LIB_PATH), how many layers fit in free
        # VRAM and how many sequences (slots) the context holds.
        layers = spec.get("gpu_layers")
        self.gpu_layers = int(layers) if isinstance(layers, int) and layers != 0 else -1
        self.device_detail, self.device_reason = spec.get("device_detail"), spec.get("device_reason")
        self.wanted_slots = max(1, int(spec.get("slots") or 1))
        self.slots = self.wanted_slots
        self.llm = self._load(path, str(spec.get("device") or "auto"))
        self.template = _chat_template(self.llm, options)
        on_gpu = self._info.get("device") == "cuda"
        self.decoder = Decoder(self.llm)
        self.batcher = Batcher(self.llm, slots=self.slots, n_ctx=self.n_ctx,
                               prefill_slice=BATCH_TOKENS if on_gpu else CPU_PREFILL_SLICE)
        self._info.update(
            context=self.n_ctx,
            slots=self.slots,
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

        # `Llama` makes a one-sequence context; it is swapped for one with a sequence per slot below.
        llm = Llama(
            str(path),
            n_ctx=SCRATCH_CONTEXT,
            n_batch=SCRATCH_CONTEXT,
            n_gpu_layers=gpu_layers,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )
        try:
            self._give_slots(llm)
        except BaseException:
            llm.close()
            raise
        return llm

    def _give_slots(self, llm: Any) -> None:
        """Replace the context with one of `self.slots` sequences of `n_ctx` tokens each; fewer if they do not fit.

        Each sequence has its own part of the KV cache, so the cache is `slots` times one
        sequence's. When the memory is not there (llama.cpp cannot allocate the cache),
        the slots halve, with a log line, rather than the load failing.
        """
        import llama_cpp
        from llama_cpp._internals import LlamaContext

        params = llm.context_params
        params.n_ubatch = BATCH_TOKENS
        params.kv_unified = False
        slots = self.wanted_slots
        while True:
            params.n_ctx, params.n_seq_max, params.n_batch = self.n_ctx * slots, slots, step_tokens(slots)
            try:
                context = LlamaContext(model=llm._model, params=params, verbose=False)
                break
            except ValueError:  # "Failed to create llama_context": the cache did not fit
                if slots == 1:
                    raise
                log.warning("%s: %d sequences of %d tokens do not fit in memory; trying %d",
                            self.model_id, slots, self.n_ctx, slots // 2)
                slots //= 2
        if slots < self.wanted_slots:
            self._info["slots_reason"] = f"{self.wanted_slots} sequences did not fit in memory; {slots} do."
        llm._ctx.close()
        llm._ctx = context
        self.slots = slots
        # Warm up: CUDA kernels and CPU buffers are set up on the first decode, so failures surface here.
        batch = llama_cpp.llama_batch_get_one((llama_cpp.llama_token * 1)(max(llm.token_bos(), 0)), 1)
        if llama_cpp.llama_decode(context.ctx, batch) != 0:
            raise RuntimeError("llama.cpp could not decode its first token")
        context.kv_cache_clear()

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        self.batcher.close()
        self.llm.close()

    # Jobs ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A job is running or waiting for a slot: call `step()` again."""
        return self.batcher.busy

    def submit(self, job: ChatJob | CompletionJob | EmbeddingJob, ctx: JobContext, done: Done) -> None:
        """Queue a job; `step()` runs it beside the others and calls `done(result, error)` when it ends.

        The input is checked here: a job that cannot run gets `done(None, error)` at once.
        """
        try:
            self.batcher.submit(self._work(job, ctx, done))
        except BaseException as exc:  # noqa: BLE001 - the job's own failure, reported to it alone
            done(None, exc)

    def step(self) -> None:
        """One decode step of every running sequence (continuous batching, `batch.Batcher`)."""
        try:
            self.batcher.step()
        except (RuntimeError, OSError) as exc:
            from models.hardware.device_choice import gpu_lost_error, is_cuda_failure

            error: BaseException = exc
            if self._info.get("device") == "cuda" and is_cuda_failure(exc):
                self.gpu_lost = True
                error = gpu_lost_error(PROVIDER, exc)
            log.error("a llama.cpp decode step failed: %s", exc)
            self.batcher.fail_running(error)
            for slot in self.batcher.slots:
                self.batcher.forget(slot.id)

    def run(self, job: ChatJob | CompletionJob | EmbeddingJob, ctx: JobContext) -> Any:
        """One job to the end (the `Engine` protocol); the runner uses `submit` and `step`."""
        outcome: list[tuple[Any, BaseException | None]] = []
        self.submit(job, ctx, lambda result, error: outcome.append((result, error)))
        while not outcome:
            self.step()
        result, error = outcome[0]
        if error is not None:
            raise error
        return result

    def _work(self, job: ChatJob | CompletionJob | EmbeddingJob, ctx: JobContext, done: Done) -> Sequence | Exclusive:
        if job["task"] == "chat":
            return self._chat(job, ctx, done)
        if job["task"] == "completion":
            return self._completion(job, ctx, done)
        if job["task"] == "embeddings":
            return self._embeddings(job, ctx, done)
        raise Malformed(f"The llama.cpp engine cannot run a '{job.get('task')}' job.", provider=PROVIDER)

    def _chat(self, job: ChatJob, ctx: JobContext, done: Done) -> Sequence:
        plan = plan_chat(self.template, job)
        # Templates write their own BOS (`{{ bos_token }}`) where the model wants one.
        tokens = self.llm.tokenize(plan.prompt.encode("utf-8"), add_bos=False, special=True)

        def answer(outcome: Outcome) -> dict[str, Any]:
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

        return self._sequence(tokens, job, ctx, done, answer, grammar=plan.grammar,
                              capture=TOOL_OPEN if plan.tool_mode == "auto" else None, quiet=plan.tool_mode == "forced")

    def _completion(self, job: CompletionJob, ctx: JobContext, done: Done) -> Sequence:
        tokens = self.llm.tokenize(str(job.get("prompt", "")).encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            raise Malformed("'prompt' is empty. Send the text to continue.", provider=PROVIDER)
        return self._sequence(tokens, job, ctx, done, lambda outcome: {**_usage(outcome), "text": outcome.text},
                              grammar=None, capture=None, quiet=False)

    def _embeddings(self, job: EmbeddingJob, ctx: JobContext, done: Done) -> Exclusive:
        from models.engines.llama.embed import embed

        def run(seq_id: int) -> dict[str, Any]:
            vectors, tokens = embed(self.llm, list(job.get("inputs") or []), ctx, seq_id=seq_id, n_ctx=self.n_ctx)
            return {"vectors": vectors, "prompt_tokens": tokens, "dimensions": self.llm.n_embd()}

        return Exclusive(run, ctx, done)

    def _sequence(
        self,
        tokens: list[int],
        job: ChatJob | CompletionJob,
        ctx: JobContext,
        done: Done,
        answer: Callable[[Outcome], dict[str, Any]],
        *,
        grammar: Grammar | None,
        capture: str | None,
        quiet: bool,
    ) -> Sequence:
        """A generation job, checked (bias, room in the context) and accepted, ready for a slot."""
        sampling = Sampling.from_job(job.get("sampling") or {})
        self.decoder.check_bias(sampling.logit_bias)
        max_tokens = self._budget(len(tokens), job.get("max_tokens"))
        streaming = bool(job.get("stream"))
        ctx.accept(prompt_tokens=len(tokens))
        sender = _DeltaSender(ctx, self.stream_interval)

        def start(cached: int) -> Generator[list[int], int, Outcome]:
            return self.decoder.generation(
                tokens,
                cached,
                sampling=sampling,
                grammar=grammar,
                max_tokens=max_tokens,
                stream=TextStream(list(job.get("stop") or []), capture=capture),
                ctx=ctx,
                on_text=sender.add if streaming and not quiet else None,
            )

        def finish(outcome: Outcome) -> dict[str, Any]:
            sender.flush()
            return answer(outcome)

        # A seeded request reads its whole prompt afresh: logits of a prompt partly read from a cache
        # differ in the last bits from one read at once, which is enough to change a sampled token.
        return Sequence(tokens, sampling.seed is None, start, finish, ctx, done)

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
