"""A process paused past its turn's lease can no longer answer: fencing tokens on real Redis.

Process A's event loop is frozen mid-answer (a blocking sleep: what SIGSTOP or a starved
CPU does to it) for longer than the lock's lease. Meanwhile process B — another manager,
its own event loop and Redis connections — finds the lock free and finishes the turn, as the
web channel's rescue does. When A wakes up it must not say or store anything more: one
question, one stored answer, one final message.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

import pytest
import redis

from bot.errors import LeaseLost
from bot.llm.base import ChatMessage, GenerationParams, ScriptedModel
from bot.manager import ConversationManager
from bot.sessions import RedisSessionStore
from bot.settings import Settings
from bot.types import Accepted, Citation, InboundMessage, Message, Passage, ReplyEvent, Token
from knowledge.embeddings import HashingEmbedder
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import default_policy_path, load_policy
from tests.support import FixedRetriever

pytestmark = pytest.mark.integration

PREFIX = "sbfence:"
LEASE_S = 1.0
RETURNS = Passage(
    "Unused items can be returned within 30 days of delivery.",
    Citation("Returns Policy", "returns-policy.md"),
    0.8,
)
ANSWER = ["Unused items ", "can be ", "returned within ", "30 days ", "of delivery."]


class FrozenMidAnswer:
    """Streams `ANSWER`; after the second piece the whole event loop stops for `freeze_s`
    (nothing of this process runs), once, while `during` runs on another thread."""

    name = "frozen"

    def __init__(self, freeze_s: float, during: Any) -> None:
        self.freeze_s = freeze_s
        self.during = during

    def warm_up(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]:
        for i, piece in enumerate(ANSWER):
            await asyncio.sleep(0.01)
            if i == 2:
                other = threading.Thread(target=self.during)
                other.start()
                time.sleep(self.freeze_s)  # noqa: ASYNC251 - SIGSTOP: nothing of the process runs
                other.join()
            yield piece

    async def close(self) -> None:
        return None


def _manager(redis_url: str, model: Any) -> ConversationManager:
    cfg = Settings(
        key_prefix=PREFIX,
        answers={"mode": "generate"},  # type: ignore[arg-type]
        sessions={  # type: ignore[arg-type]
            "rewrite_followups": "off",
            "summarize": False,
            "lock_timeout_s": LEASE_S,
            "lock_wait_s": 10,
        },
    )
    policies = PolicyEngine(
        load_policy(default_policy_path()), PatternRedactor(), embedder=HashingEmbedder()
    )
    policies.warm_up()
    store = RedisSessionStore(redis_url, cfg.sessions, PREFIX)
    return ConversationManager(cfg, store, policies, FixedRetriever([RETURNS] * 3), model)


async def test_a_process_paused_past_its_lease_neither_answers_nor_stores_a_second_time(
    redis_url: str, clean_redis: redis.Redis
) -> None:
    asked: dict[str, str] = {}
    rescued: list[ReplyEvent] = []

    def process_b() -> None:
        async def rescue() -> None:
            b = _manager(redis_url, ScriptedModel([["30 days ", "of delivery."]]))
            await b.store.start()
            try:
                # The other process waits for A's lease to run out, then finishes the turn
                # from what A had said.
                turn = b.continue_turn(asked["cid"], asked["question"], "".join(ANSWER[:2]), "web")
                async with aclosing(turn) as events:
                    rescued.extend([event async for event in events])
            finally:
                await b.store.close()

        asyncio.run(rescue())

    a = _manager(redis_url, FrozenMidAnswer(LEASE_S * 4, process_b))
    await a.store.start()
    said: list[ReplyEvent] = []
    with pytest.raises(LeaseLost):
        message = InboundMessage("How long do I have to return an item?", "web", None, "q1")
        async with aclosing(a.respond(message)) as events:
            async for event in events:
                said.append(event)
                if isinstance(event, Accepted):
                    asked.update(cid=event.conversation_id, question=event.message_id)
    await a.store.close()

    # B answered, once.
    finals = [e for e in rescued if isinstance(e, Message)]
    assert len(finals) == 1 and finals[0].text.endswith("30 days of delivery.")
    # A said nothing after it woke up: no final message, and not the sentence it was
    # holding back (the output filter releases whole sentences; this one ended after it).
    assert not any(isinstance(e, Message | Token) for e in said)
    turns = clean_redis.lrange(f"{PREFIX}conv:{asked['cid']}:turns", 0, -1)
    assert len(turns) == 2, turns  # the question and B's answer


async def test_a_write_under_a_lost_lease_is_refused_and_stores_nothing(
    redis_url: str, clean_redis: redis.Redis
) -> None:
    """The store's own check, whatever the caller does: the lock taken by another holder
    refuses the first holder's append atomically."""
    from bot.types import Turn

    cfg = Settings(sessions={"lock_timeout_s": LEASE_S})  # type: ignore[arg-type]
    store = RedisSessionStore(redis_url, cfg.sessions, PREFIX)
    await store.start()
    try:
        session = await store.create("test")
        async with store.lock(session.id) as lease:
            await store.append(session.id, [Turn("user", "hi")], lease)
            # The lease ran out and another process holds the lock now.
            clean_redis.set(f"{PREFIX}lock:conv:{session.id}", "someone-else", px=5000)
            with pytest.raises(LeaseLost):
                await store.append(session.id, [Turn("assistant", "late")], lease)
            with pytest.raises(LeaseLost):
                await store.confirm(lease)
        # Released by its new holder only: A's exit did not delete B's lock.
        assert clean_redis.get(f"{PREFIX}lock:conv:{session.id}") == "someone-else"
        assert [t.text for t in await store.history(session.id)] == ["hi"]
    finally:
        await store.close()
