"""The handoff desk and the pipeline's silent mode, with the in-memory store and job queue.

The same loop runs across two server processes, Redis, a fake Slack and a real websocket in
tests/integration/test_channels.py and in a real browser in tests/e2e/test_widget.py.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest

from bot.handoff import HandoffDesk, Sealer, unsealed
from bot.jobs import Job, MemoryJobQueue
from bot.llm.base import ScriptedModel
from bot.manager import ConversationManager
from bot.sessions import Session
from bot.types import Accepted, InboundMessage, Message, ReplyEvent
from tests.unit.test_manager import _manager


class Recorder:
    """A customer channel and an agents' console that record what reaches them."""

    def __init__(self, desk: HandoffDesk, queue: MemoryJobQueue) -> None:
        self.frames: list[tuple[dict[str, Any], str | None]] = []
        self.jobs: list[Job] = []
        desk.channels["test"] = self.deliver
        desk.console = "recorder"
        for kind in ("handoff.open", "handoff.relay", "handoff.note"):
            queue.handle(kind, self.job)

    async def deliver(self, session: Session, frame: dict[str, Any], once: str | None) -> None:
        self.frames.append((frame, once))

    async def job(self, job: Job) -> None:
        self.jobs.append(job)

    def kinds(self) -> list[str]:
        return [job.kind for job in self.jobs]


async def _setup(answers: int = 3) -> tuple[ConversationManager, HandoffDesk, Recorder, Any]:
    manager = _manager(ScriptedModel([["Refunds take ", "5 days."]] * answers))
    queue = MemoryJobQueue()
    desk = HandoffDesk(manager, queue)
    manager.desk = desk
    recorder = Recorder(desk, queue)
    await queue.start()
    return manager, desk, recorder, queue


async def _say(
    manager: ConversationManager, text: str, cid: str | None, mid: str
) -> list[ReplyEvent]:
    async with aclosing(manager.respond(InboundMessage(text, "test", cid, mid))) as events:
        return [event async for event in events]


async def _drain(queue: MemoryJobQueue) -> None:
    import asyncio

    for _ in range(50):
        await asyncio.sleep(0.01)


async def test_asking_for_a_person_opens_a_handoff_and_silences_the_bot() -> None:
    manager, _, recorder, queue = await _setup()
    try:
        first = await _say(manager, "How long do refunds take?", None, "m1")
        cid = first[-1].conversation_id  # type: ignore[union-attr]
        asked = await _say(manager, "Can I talk to a person?", cid, "m2")
        final = asked[-1]
        assert isinstance(final, Message) and final.handoff == "asked for a person"
        assert (await manager.session(cid)).status == "pending_human"
        await _drain(queue)
        assert recorder.kinds() == ["handoff.open"]
        # While a person is fetched the bot is silent: the message goes to them.
        silent = await _say(manager, "Hello? My card is 4111 1111 1111 1111", cid, "m3")
        assert len(silent) == 1 and isinstance(silent[0], Accepted) and silent[0].to_agent
        assert "4111" not in silent[0].text  # stored redacted
        await _drain(queue)
        relay = recorder.jobs[-1]
        assert relay.kind == "handoff.relay" and "4111" not in relay.payload["text"]
        # A resend (a job run again after a crash) is relayed once, not twice.
        again = await _say(manager, "Hello? My card is 4111 1111 1111 1111", cid, "m3")
        assert isinstance(again[0], Accepted) and again[0].message_id == silent[0].message_id
        await _drain(queue)
        assert recorder.kinds().count("handoff.relay") == 1
        _, turns = await manager.resume(cid)
        assert sum(t.client_id == "m3" for t in turns) == 1
    finally:
        await queue.close()


async def test_agent_joins_speaks_once_and_resolves() -> None:
    manager, desk, recorder, queue = await _setup()
    try:
        first = await _say(manager, "How long do refunds take?", None, "m1")
        cid = first[-1].conversation_id  # type: ignore[union-attr]
        assert await desk.request(cid, "asked through the admin API", tell_customer=True)
        assert not await desk.request(cid, "again", tell_customer=True)  # already pending
        assert recorder.frames[0][0]["code"] == "handoff"
        said = "Hi, Dana here. jane@example.com is on file"
        turn = await desk.agent_says(cid, "Dana", said, key="ev1")
        assert turn is not None and turn.kind == "agent" and turn.author == "Dana"
        # An agent's words are stored redacted, but for the agent's own name.
        assert turn.text == "Hi, Dana here. <EMAIL_ADDRESS> is on file"
        assert (await manager.session(cid)).status == "human"
        frames = [frame for frame, _ in recorder.frames]
        assert frames[1] == {"type": "agent", "state": "human", "name": "Dana"}
        assert frames[2]["kind"] == "agent" and frames[2]["id"] == turn.message_id
        # The same Slack event again: stored once, delivered with the same once-key.
        repeat = await desk.agent_says(cid, "Dana", said, key="ev1")
        assert repeat is not None and repeat.message_id == turn.message_id
        assert recorder.frames[-1][1] == recorder.frames[2][1] == f"agent:{turn.message_id}"
        _, turns = await manager.resume(cid)
        assert sum(t.kind == "agent" for t in turns) == 1
        assert await desk.resolve(cid, "Dana")
        assert not await desk.resolve(cid, "Dana")  # nobody is on it any more
        assert recorder.frames[-1][0] == {"type": "agent", "state": "bot", "name": "Dana"}
        assert await desk.agent_says(cid, "Dana", "still there?") is None  # a stale thread
        back = await _say(manager, "How long do refunds take?", cid, "m9")
        assert isinstance(back[-1], Message) and "5 days" in back[-1].text  # the bot again
    finally:
        await queue.close()


async def test_the_agents_words_reach_their_customer_as_written_and_are_stored_redacted() -> None:
    manager, desk, recorder, queue = await _setup()
    desk.sealer = Sealer("a secret every process has")
    try:
        first = await _say(manager, "How long do refunds take?", None, "m1")
        cid = first[-1].conversation_id  # type: ignore[union-attr]
        await desk.request(cid, "asked", tell_customer=False)
        said = "Hi, Dana here. jane@example.com is on file"
        turn = await desk.agent_says(cid, "Dana", said, key="ev1")
        assert turn is not None and turn.text == "Hi, Dana here. <EMAIL_ADDRESS> is on file"
        frame = recorder.frames[-1][0]
        # What the channel queues or logs: the redacted text and the words sealed.
        assert frame["text"] == turn.text and "jane@" not in frame["sealed"]
        assert unsealed(frame, desk.sealer) == {
            **{k: v for k, v in frame.items() if k != "sealed"},
            "text": said,
        }
        # Another key (another deployment, a forged frame): the redacted text, never a crash.
        assert unsealed(frame, Sealer("another secret"))["text"] == turn.text
        assert unsealed(frame, None)["text"] == turn.text
        # Slack redacts on receipt and queues the words sealed: the same frame.
        sealed = desk.sealer.seal("Thanks jane@example.com")
        again = await desk.agent_says(cid, "Dana", "Thanks <EMAIL_ADDRESS>", sealed=sealed)
        assert again is not None and again.text == "Thanks <EMAIL_ADDRESS>"
        assert unsealed(recorder.frames[-1][0], desk.sealer)["text"] == "Thanks jane@example.com"
        # Nothing to hide: nothing sealed.
        plain = await desk.agent_says(cid, "Dana", "Your refund is on its way.")
        assert plain is not None and "sealed" not in recorder.frames[-1][0]
    finally:
        await queue.close()


async def test_a_closed_conversation_starts_over_with_the_bot() -> None:
    manager, desk, _, queue = await _setup()
    try:
        first = await _say(manager, "How long do refunds take?", None, "m1")
        cid = first[-1].conversation_id  # type: ignore[union-attr]
        await desk.request(cid, "asked", tell_customer=False)
        assert await desk.resolve(cid, "Dana", close=True)
        assert (await manager.session(cid)).status == "closed"
        again = await _say(manager, "How long do refunds take?", cid, "m2")
        assert isinstance(again[-1], Message) and "5 days" in again[-1].text
        assert (await manager.session(cid)).status == "bot"
    finally:
        await queue.close()


async def test_without_a_console_a_handoff_is_only_recorded() -> None:
    manager, desk, recorder, queue = await _setup()
    desk.console = ""
    try:
        first = await _say(manager, "Can I talk to a person?", None, "m1")
        final = first[-1]
        assert isinstance(final, Message) and final.handoff == "asked for a person"
        assert (await manager.session(final.conversation_id)).status == "bot"  # not silenced
        await _drain(queue)
        assert recorder.jobs == []
    finally:
        await queue.close()


async def test_a_handoff_that_cannot_be_queued_leaves_the_bot_answering() -> None:
    manager, desk, _, queue = await _setup()

    async def broken(*args: Any, **kwargs: Any) -> tuple[str, bool]:
        raise OSError("queue down")

    try:
        first = await _say(manager, "How long do refunds take?", None, "m1")
        cid = first[-1].conversation_id  # type: ignore[union-attr]
        queue.put = broken  # type: ignore[method-assign]
        with pytest.raises(OSError):
            await desk.request(cid, "asked", tell_customer=False)
        assert (await manager.session(cid)).status == "bot"  # not stuck waiting for nobody
    finally:
        await queue.close()
