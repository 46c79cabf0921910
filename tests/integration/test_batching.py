"""Continuous batching in the local engine, on a real (tiny, fp32) transformers model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import pytest

from bot.errors import Busy
from bot.llm.base import ChatMessage, GenerationParams, chat_template_ids
from bot.llm.transformers_engine import TransformersEngine
from bot.settings import LLMSettings

pytestmark = pytest.mark.integration

PROMPTS = [
    [ChatMessage("user", "hello")],
    [
        ChatMessage("system", "be brief"),
        ChatMessage("user", "how long do i have to return an item"),
    ],
    [ChatMessage("user", "track my order please, the number is in the email you sent")],
    [ChatMessage("user", "refund")],
]


@asynccontextmanager
async def engine(model_dir: Path, **limits: int) -> AsyncIterator[TransformersEngine]:
    settings = LLMSettings(model=str(model_dir), dtype="float32", quantization="none", **limits)
    llm = TransformersEngine(settings, Path("."))
    await asyncio.to_thread(llm.warm_up)
    try:
        yield llm
    finally:
        await llm.close()


async def collect(
    llm: TransformersEngine,
    messages: list[ChatMessage],
    tokens: int,
    log: list[int] | None = None,
    tag: int = 0,
) -> str:
    pieces: list[str] = []
    async with aclosing(llm.stream(messages, GenerationParams(max_new_tokens=tokens))) as stream:
        async for piece in stream:
            pieces.append(piece)
            if log is not None:
                log.append(tag)
    return "".join(pieces)


def reference(model_dir: Path, messages: list[ChatMessage], tokens: int) -> str:
    """What plain `model.generate()` answers, greedy, one request at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = chat_template_ids(tokenizer, messages)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False)
    return str(tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True))


async def test_batched_answers_equal_unbatched_and_generate_when_greedy(
    tiny_model_dir: Path,
) -> None:
    async with engine(tiny_model_dir, max_batch_size=1) as llm:
        alone = [await collect(llm, p, 24) for p in PROMPTS]
    async with engine(tiny_model_dir, max_batch_size=4) as llm:
        together = await asyncio.gather(*(collect(llm, p, 24) for p in PROMPTS))
        assert llm.stats.steps_total < 4 * 23, "the four requests must have shared steps"
    assert together == alone
    assert alone == [reference(tiny_model_dir, p, 24) for p in PROMPTS]
    assert len(set(alone)) == len(PROMPTS)  # distinct answers: a mix-up would show


async def test_streams_interleave_and_each_gets_its_own_tokens_when_concurrent(
    tiny_model_dir: Path,
) -> None:
    async with engine(tiny_model_dir, max_batch_size=4) as llm:
        solo = [await collect(llm, p, 120) for p in PROMPTS[:2]]
        order: list[int] = []
        # The second request arrives while the first is decoding: it joins the running batch.
        first = asyncio.create_task(collect(llm, PROMPTS[0], 120, order, 0))
        while not order:  # noqa: ASYNC110 -- polling the token log is the point here
            await asyncio.sleep(0.001)
        second = await collect(llm, PROMPTS[1], 120, order, 1)
        assert [await first, second] == solo
        assert order.index(1) < len(order) - 1 - order[::-1].index(0), "no interleaving"


async def test_busy_at_once_when_the_batch_and_queue_are_full(tiny_model_dir: Path) -> None:
    async with engine(tiny_model_dir, max_batch_size=1, max_queue=1) as llm:
        params = GenerationParams(max_new_tokens=4000)
        running = llm.stream(PROMPTS[0], params)
        await anext(running)  # in the batch
        queued = asyncio.create_task(collect(llm, PROMPTS[1], 4))
        await asyncio.sleep(0.05)  # in the queue
        with pytest.raises(Busy):
            await collect(llm, PROMPTS[2], 4)
        assert llm.stats.rejected_total == 1
        await running.aclose()
        assert len(await asyncio.wait_for(queued, 30)) > 0


async def test_cancelling_a_stream_frees_its_slot_for_the_next_request(
    tiny_model_dir: Path,
) -> None:
    async with engine(tiny_model_dir, max_batch_size=1, max_queue=0) as llm:
        # ignore_eos: the random tiny model may end early, freeing the slot by itself.
        running = llm.stream(PROMPTS[0], GenerationParams(max_new_tokens=4000, ignore_eos=True))
        await anext(running)
        with pytest.raises(Busy):
            await collect(llm, PROMPTS[1], 4)
        await running.aclose()  # the customer went away
        # The scheduler drops it at its next step, which is slow under load. batch_size is no
        # signal to wait on: the first token reaches its consumer before the request is counted
        # in the batch, so it can still read 0 while the slot is taken. Retry as a client would.
        answer = ""
        for _ in range(3000):
            try:
                answer = await collect(llm, PROMPTS[1], 4)
                break
            except Busy:
                await asyncio.sleep(0.01)
        assert answer, "the cancelled stream never gave its slot back"
        assert llm.stats.tokens_total < 200, "the cancelled request kept decoding"
