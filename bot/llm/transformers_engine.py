"""`TransformersEngine`: an in-process transformers model serving many conversations at once.

One scheduler thread per engine runs continuous (iteration-level) batching on the model's
forward pass:

- a request enters a bounded queue (full: `Busy`, at once);
- between two decoding steps, waiting requests are prefilled one by one and their KV cache
  is merged into the running batch (left-padded to a common length, an attention mask
  marks the padding, position ids count only real tokens);
- one forward pass decodes the next token of every running request;
- a request that ends (end of sequence, `max_new_tokens`, its deadline, or its consumer
  went away) leaves the batch at once; fully padded cache columns are dropped.

Tokens go back to each request's own consumer through an asyncio queue. With greedy
decoding and fp32 weights, batched answers equal unbatched ones (tested). Dynamic int8
quantization scales activations per tensor, i.e. across the batch, so int8 answers can
differ slightly with the batch's company; `bench/llm.py` checks the answers stay right.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import Busy, ConfigError, ModelError
from bot.llm.base import ChatMessage, GenerationParams, chat_template_ids
from bot.settings import DEFAULT_MODEL, LARGER_MODEL, LLMSettings

log = logging.getLogger(__name__)

_DONE = object()


def resolve_model_path(settings: LLMSettings, cache_dir: Path) -> str:
    """The directory (or hub id) to load: the built-in model is prepared on first use."""
    if settings.model == DEFAULT_MODEL:
        from bot.llm.weights import ensure_default_model

        return str(ensure_default_model(cache_dir))
    if settings.model == LARGER_MODEL:
        from bot.llm.weights import LARGER, ensure_packaged_model

        return str(ensure_packaged_model(LARGER, cache_dir))
    if settings.model.endswith(".gguf"):
        from bot.llm.weights import ensure_gguf_model

        return str(ensure_gguf_model(Path(settings.model), cache_dir))
    return settings.model


def pick_device_and_dtype(settings: LLMSettings) -> tuple[str, Any, bool]:
    """(device, torch dtype, int8-quantize?) for the settings and this machine."""
    import torch

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # int8 decodes ~2.2x faster on CPU but changed demo answers (bench/llm.py's answer check,
    # tests/integration/test_default_model.py): opt-in only. It quantizes fp32 Linear layers.
    quantize = settings.quantization == "int8"
    if quantize and (device != "cpu" or settings.dtype not in ("auto", "float32")):
        raise ConfigError(
            "SWITCHBOARD_LLM__QUANTIZATION=int8 needs the CPU and dtype float32 (or auto)"
        )
    if settings.dtype != "auto":
        dtype = getattr(torch, settings.dtype)
    elif quantize:
        dtype = torch.float32
    elif device == "cuda":
        dtype = torch.bfloat16
    else:
        # Where the CPU has native bf16 (AVX512-BF16/AMX), bf16 prefills ~2x faster than fp32
        # and batches far better (bench/llm.py: 13.8 vs 6.8 tok/s at 4 streams), with the
        # same answers; elsewhere bf16 is emulated and slow.
        native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
        dtype = torch.bfloat16 if native else torch.float32
    return device, dtype, quantize


@dataclass
class EngineStats:
    """What the engine is doing, for metrics."""

    queue_depth: int = 0
    batch_size: int = 0
    requests_total: int = 0
    rejected_total: int = 0
    tokens_total: int = 0
    steps_total: int = 0
    last_ttft_s: float = 0.0
    decode_tokens_per_s: float = 0.0  # aggregate over the batch, smoothed


@dataclass(eq=False)
class _Request:
    prompt: list[int]
    params: GenerationParams
    deadline: float
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[object]
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    sent_chars: int = 0
    timed_out: bool = False

    def put(self, item: object) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class _Batch:
    """The running requests and their merged, left-padded KV cache."""

    def __init__(self) -> None:
        self.requests: list[_Request] = []
        self.cache: Any = None
        self.mask: Any = None  # [B, T] 1 for real tokens, 0 for left padding
        self.last: Any = None  # [B, 1] the token each request feeds next

    def __len__(self) -> int:
        return len(self.requests)

    def add(self, request: _Request, cache: Any, first_token: int) -> None:
        import torch

        length = cache.get_seq_length()
        token = torch.tensor([[first_token]], device=self._device(cache))
        mask = torch.ones((1, length), dtype=torch.long, device=token.device)
        if not self.requests:
            self.requests, self.cache, self.mask, self.last = [request], cache, mask, token
            return
        width = self.mask.shape[1]
        if length < width:
            _left_pad(cache, width - length)
            mask = torch.nn.functional.pad(mask, (width - length, 0))
        elif length > width:
            _left_pad(self.cache, length - width)
            self.mask = torch.nn.functional.pad(self.mask, (length - width, 0))
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self.mask = torch.cat([self.mask, mask])
        self.last = torch.cat([self.last, token])
        self.requests.append(request)

    def keep(self, rows: list[int]) -> None:
        import torch

        index = torch.tensor(rows, device=self.mask.device)
        self.requests = [self.requests[i] for i in rows]
        self.mask = self.mask.index_select(0, index)
        self.last = self.last.index_select(0, index)
        # Columns that are padding in every remaining row are dead weight: drop them.
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]

    @staticmethod
    def _device(cache: Any) -> Any:
        return cache.layers[0].keys.device


def _left_pad(cache: Any, columns: int) -> None:
    import torch

    for layer in cache.layers:
        layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, columns, 0))
        layer.values = torch.nn.functional.pad(layer.values, (0, 0, columns, 0))


class TransformersEngine:
    """A Hugging Face causal LM run in-process with continuous batching."""

    def __init__(self, settings: LLMSettings, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self.name = settings.model
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"
        self._eos: set[int] = set()
        self._waiting: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._batch = _Batch()
        self._admitting = 0  # popped from the queue, not yet in the batch
        self.stats = EngineStats()

    # -- life cycle ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        import torch

        if self._settings.threads:
            torch.set_num_threads(self._settings.threads)
        started = time.perf_counter()
        self._model, self._tokenizer, described = self._load()
        self._eos = _eos_ids(self._model, self._tokenizer)
        self._warm_kernels()
        self._thread = threading.Thread(target=self._run, name="llm-scheduler", daemon=True)
        self._thread.start()
        log.info(
            "model %s%s loaded on %s (%s) in %.1fs; batches of up to %d, queue %d",
            self.name,
            f" + adapter {self._settings.adapter}" if self._settings.adapter else "",
            self._device,
            described,
            time.perf_counter() - started,
            self._settings.max_batch_size,
            self._settings.max_queue,
        )

    def _load(self) -> tuple[Any, Any, str]:
        """(model, tokenizer, a few words on how it runs), on `self._device`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(self._settings, self._cache_dir)
        device, dtype, quantize = pick_device_and_dtype(self._settings)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if self._settings.adapter is not None:
            from bot.llm.finetune.adapter import apply_adapter

            model = apply_adapter(model, self._settings.adapter, self._settings.model)
        model = model.to(device).eval()
        if quantize:
            model = _quantize_int8(model)
        self._device = device
        described = str(dtype).removeprefix("torch.") + (", int8 linear layers" if quantize else "")
        return model, tokenizer, f"transformers, {described}"

    def _warm_kernels(self) -> None:
        """One tiny prefill, so the first customer does not pay for kernel set-up."""
        import torch

        ids = self._template([ChatMessage("user", "hi")])
        with torch.inference_mode():
            self._prefill(ids)

    @property
    def device(self) -> str:
        """Where the model runs ("cpu" until warmed up on a GPU)."""
        return self._device

    def ready(self) -> bool:
        return self._model is not None and self._thread is not None and self._thread.is_alive()

    async def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    # -- the protocol -----------------------------------------------------------------------

    def _template(self, messages: Sequence[ChatMessage]) -> list[int]:
        return chat_template_ids(self._tokenizer, messages)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._template(messages))

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]:
        if not self.ready():
            raise ModelError("the model is not loaded yet")
        request = _Request(
            prompt=self._template(messages),
            params=params,
            deadline=time.monotonic() + params.timeout_s,
            loop=asyncio.get_running_loop(),
            out=asyncio.Queue(),
        )
        self._submit(request)
        try:
            while (item := await request.out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise ModelError(f"generation failed: {item}") from item
                yield str(item)
            if request.timed_out:
                raise ModelError(f"generation timed out after {params.timeout_s:.0f}s")
        finally:
            # The consumer went away (or finished): the scheduler drops it at the next step.
            request.cancelled.set()

    def _submit(self, request: _Request) -> None:
        with self._wake:
            free = self._settings.max_batch_size - len(self._batch) - self._admitting
            if len(self._waiting) >= self._settings.max_queue + max(0, free):
                self.stats.rejected_total += 1
                raise Busy("the assistant is busy with other customers; try again in a moment")
            self._waiting.append(request)
            self.stats.requests_total += 1
            self.stats.queue_depth = len(self._waiting)
            self._wake.notify()

    # -- the scheduler thread ---------------------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._stopping and not self._waiting and not self._batch:
                        self._wake.wait()
                    if self._stopping:
                        break
                try:
                    self._admit()
                    if self._batch:
                        self._step()
                except Exception as exc:  # a broken step fails its requests, not the engine
                    log.exception("generation step failed")
                    for request in self._batch.requests:
                        request.put(exc)
                        request.put(_DONE)
                    self._batch = _Batch()
        for request in [*self._batch.requests, *self._waiting]:
            request.put(ModelError("the model is shutting down"))
            request.put(_DONE)

    def _admit(self) -> None:
        while len(self._batch) < self._settings.max_batch_size:
            with self._wake:
                if not self._waiting:
                    return
                request = self._waiting.popleft()
                self.stats.queue_depth = len(self._waiting)
                # Counted as taking a slot until it is in the batch: its first token reaches
                # its consumer before that, and a new request then must not find the slot free.
                self._admitting += 1
            try:
                self._admit_one(request)
            finally:
                with self._wake:
                    self._admitting -= 1
            self.stats.batch_size = len(self._batch)

    def _admit_one(self, request: _Request) -> None:
        if request.cancelled.is_set():
            request.put(_DONE)
            return
        if time.monotonic() > request.deadline:  # waited out its whole time in the queue
            request.timed_out = True
            request.put(_DONE)
            return
        # The answer's own time starts now: time spent waiting for a slot is not taken
        # from it (the wait itself is bounded by the same length, above).
        request.deadline = time.monotonic() + request.params.timeout_s
        try:
            cache, logits = self._prefill(request.prompt)
        except Exception as exc:
            log.exception("prefill failed")
            request.put(exc)
            request.put(_DONE)
            return
        token = self._choose(logits, [request])[0]
        self.stats.last_ttft_s = time.perf_counter() - request.submitted
        if self._emit(request, token):
            self._batch.add(request, cache, token)

    def _prefill(self, prompt: list[int]) -> tuple[Any, Any]:
        import torch
        from transformers import DynamicCache

        ids = torch.tensor([prompt], device=self._device)
        cache = DynamicCache()
        out = self._model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return cache, out.logits[:, -1, :]  # the cache was filled in place

    def _step(self) -> None:
        import torch

        batch = self._batch
        started = time.perf_counter()
        mask = torch.cat([batch.mask, torch.ones_like(batch.last)], dim=1)
        positions = mask.sum(dim=1, keepdim=True) - 1
        out = self._model(
            input_ids=batch.last,
            attention_mask=mask,
            position_ids=positions,
            cache=batch.cache,
            use_cache=True,
        )
        batch.mask = mask  # the cache grew in place
        tokens = self._choose(out.logits[:, -1, :], batch.requests)
        batch.last = torch.tensor([[t] for t in tokens], device=batch.last.device)
        keep = [
            i
            for i, (r, t) in enumerate(zip(batch.requests, tokens, strict=True))
            if self._emit(r, t)
        ]
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.steps_total += 1
        stats.tokens_total += len(tokens)
        rate = len(tokens) / elapsed if elapsed > 0 else 0.0
        stats.decode_tokens_per_s = (
            rate if stats.steps_total == 1 else (0.9 * stats.decode_tokens_per_s + 0.1 * rate)
        )
        if not keep:
            self._batch = _Batch()
        elif len(keep) < len(batch):
            batch.keep(keep)
        stats.batch_size = len(self._batch)

    def _choose(self, logits: Any, requests: list[_Request]) -> list[int]:
        import torch

        greedy = logits.argmax(dim=-1)
        chosen = greedy.tolist()
        for row, request in enumerate(requests):
            if request.params.temperature > 0:
                probs = torch.softmax(logits[row].float() / request.params.temperature, dim=-1)
                chosen[row] = int(torch.multinomial(probs, 1))
        return [int(t) for t in chosen]

    def _emit(self, request: _Request, token: int) -> bool:
        """Send the token's text to the consumer; False when the request is finished."""
        if request.cancelled.is_set():
            request.put(_DONE)
            return False
        finished = token in self._eos and not request.params.ignore_eos
        if not finished:
            request.generated.append(token)
        if time.monotonic() > request.deadline:
            request.timed_out = finished = True
        finished = finished or len(request.generated) >= request.params.max_new_tokens
        text = self._tokenizer.decode(request.generated, skip_special_tokens=True)
        # Hold back an incomplete multi-byte character until its next piece (or the end).
        if (finished or not text.endswith("\ufffd")) and len(text) > request.sent_chars:
            request.put(text[request.sent_chars :])
            request.sent_chars = len(text)
        if finished:
            request.put(_DONE)
        return not finished


def _quantize_int8(model: Any) -> Any:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice, not actionable here
        return torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear}, dtype=torch.qint8
        )


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    return ids
