"""`TransformersEngine`: an in-process transformers model that streams tokens.

This first engine runs one generation at a time (requests wait their turn on a lock);
the batching engine replaces the scheduling, not this interface. Generation runs in a
worker thread; text comes back to the event loop through an asyncio queue, and a
stopping criterion checks a cancel flag and the deadline at every decoding step, so a
consumer that goes away stops the model within one step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.errors import ModelError
from bot.llm.base import ChatMessage, GenerationParams
from bot.settings import DEFAULT_MODEL, LLMSettings

log = logging.getLogger(__name__)

_DONE = object()


def resolve_model_path(settings: LLMSettings, cache_dir: Path) -> str:
    """The directory (or hub id) to load: the built-in model is prepared on first use."""
    if settings.model == DEFAULT_MODEL:
        from bot.llm.weights import ensure_default_model

        return str(ensure_default_model(cache_dir))
    return settings.model


def _pick_device_and_dtype(settings: LLMSettings) -> tuple[str, Any]:
    import torch

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if settings.dtype != "auto":
        return device, getattr(torch, settings.dtype)
    if device == "cuda":
        return device, torch.bfloat16
    # bf16 on CPU is ~3x faster to first token than fp32 where the CPU has native bf16
    # (AVX512-BF16/AMX), with the same answers; elsewhere it is emulated and slow.
    native_bf16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return device, torch.bfloat16 if native_bf16 else torch.float32


class TransformersEngine:
    """A Hugging Face causal LM run in-process; CUDA + bf16 when present, CPU otherwise."""

    def __init__(self, settings: LLMSettings, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self.name = settings.model
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"
        self._lock = asyncio.Lock()
        # One worker: torch already uses every core for one generation.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm")

    def warm_up(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._settings.threads:
            torch.set_num_threads(self._settings.threads)
        path = resolve_model_path(self._settings, self._cache_dir)
        device, dtype = _pick_device_and_dtype(self._settings)
        started = time.perf_counter()
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        self._model = model.to(device).eval()
        self._device = device
        log.info(
            "model %s loaded on %s (%s) in %.1fs",
            self.name,
            device,
            str(dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )

    def ready(self) -> bool:
        return self._model is not None

    def _template(self, messages: Sequence[ChatMessage]) -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        ids = self._tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._template(messages))

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]:
        if self._model is None:
            raise ModelError("the model is not loaded yet")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        deadline = time.monotonic() + params.timeout_s
        async with self._lock:
            job = loop.run_in_executor(
                self._executor, self._generate, messages, params, queue, loop, cancel, deadline
            )
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise ModelError(f"generation failed: {item}") from item
                    yield str(item)
                if time.monotonic() > deadline:
                    raise ModelError(f"generation timed out after {params.timeout_s:.0f}s")
            finally:
                cancel.set()
                # Hold the lock until the worker has really stopped.
                await asyncio.shield(job)

    def _generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        queue: asyncio.Queue[object],
        loop: asyncio.AbstractEventLoop,
        cancel: threading.Event,
        deadline: float,
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        class _Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    put(text)

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = cancel.is_set() or time.monotonic() > deadline
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)

        try:
            ids = torch.tensor([self._template(messages)], device=self._device)
            sampling: dict[str, Any] = {"do_sample": False}
            if params.temperature > 0:
                sampling = {"do_sample": True, "temperature": params.temperature}
            with torch.inference_mode():
                self._model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=params.max_new_tokens,
                    streamer=_Streamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True),
                    stopping_criteria=StoppingCriteriaList([_Stop()]),
                    pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                    **sampling,
                )
        except Exception as exc:  # reported to the consumer as a ModelError
            log.exception("generation failed")
            put(exc)
        finally:
            put(_DONE)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
