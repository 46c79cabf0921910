"""Turns that outlive their websocket: run in the background, logged, finished by anyone.

A message from the widget starts a turn that belongs to no connection: its events go to the
conversation's event log (`bot.events`) and every connection watching that conversation —
the one that asked, the same page after a reload, another tab, on any process — streams
them from there. Closing the page does not stop the answer.

If the process running a turn dies, its lock lease runs out; a connection that sees the
answer stall (`WebSettings.stall_s`) on an unlocked conversation finishes it here, from
what was already said (`ConversationManager.continue_turn`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from bot.errors import Busy, LeaseLost, StoreUnavailable, SwitchboardError
from bot.events import Event, EventLog, open_turn
from bot.manager import ConversationManager
from bot.types import Accepted, Citation, InboundMessage, Message, Notice, ReplyEvent, Token

log = logging.getLogger(__name__)


def citation_url(source: str, base: str | None) -> str | None:
    """Where a citation links: its URL, or the article base plus its path."""
    if source.startswith(("http://", "https://")):
        return source
    return None if base is None else base + quote(source)


def citations_json(citations: Sequence[Citation], base: str | None) -> list[dict[str, Any]]:
    return [
        {"title": c.title, "source": c.source, "url": citation_url(c.source, base)}
        for c in citations
    ]


def event_frame(event: ReplyEvent, base: str | None = None) -> dict[str, Any] | None:
    """The wire frame of a turn's event (None for events the widget does not show)."""
    if isinstance(event, Token):
        return {"type": "token", "text": event.text} if event.text else None
    if isinstance(event, Accepted):
        return {
            "type": "accepted",
            "id": event.message_id,
            "text": event.text,
            "conversation_id": event.conversation_id,
            "in_reply_to": event.in_reply_to,
            "at": time.time(),
            **({"to_agent": True} if event.to_agent else {}),
        }
    if isinstance(event, Notice):
        return {"type": "notice", "code": event.code, "text": event.text}
    if isinstance(event, Message):
        return {
            "type": "message",
            "id": event.id,
            "text": event.text,
            "citations": citations_json(event.citations, base),
            "conversation_id": event.conversation_id,
            "in_reply_to": event.in_reply_to,
            "handoff": event.handoff,
            "at": time.time(),
            **({"custom": list(event.custom)} if event.custom else {}),
        }
    return None


def error_frame(code: str, message: str, in_reply_to: Any = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "in_reply_to": in_reply_to}


class TurnRunner:
    """Runs this process's turns in the background and rescues others' dead ones."""

    def __init__(
        self, manager: ConversationManager, events: EventLog, article_base: str | None = None
    ) -> None:
        self.manager = manager
        self.events = events
        self.article_base = article_base
        self._tasks: set[asyncio.Task[None]] = set()
        self._rescuing: set[str] = set()
        self._pending: set[tuple[str, str]] = set()  # (conversation, client id) not accepted yet

    def _spawn(self, work: AsyncIterator[ReplyEvent], cid: str, reply_to: str | None) -> None:
        task = asyncio.create_task(self._publish(work, cid, reply_to), name=f"turn-{cid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pending(self, cid: str, client_id: str | None) -> bool:
        """Whether this message is being taken in by this process right now (a resend)."""
        return client_id is not None and (cid, client_id) in self._pending

    def submit(self, message: InboundMessage) -> None:
        """Answer `message` (its conversation exists) in the background."""
        assert message.conversation_id is not None
        cid, client_id = message.conversation_id, message.client_message_id
        if client_id is not None:
            self._pending.add((cid, client_id))

        async def events() -> AsyncIterator[ReplyEvent]:
            try:
                async with aclosing(self.manager.respond(message)) as stream:
                    async for event in stream:
                        yield event
                        if isinstance(event, Accepted):  # logged by now
                            self._pending.discard((cid, client_id or ""))
            finally:
                self._pending.discard((cid, client_id or ""))

        self._spawn(events(), cid, client_id)

    async def rescue(self, cid: str, channel: str = "web") -> bool:
        """Finish the conversation's open turn if no process holds it; True if started."""
        if cid in self._rescuing or await self.manager.store.locked(cid):
            return False
        turn = open_turn(await self.events.since(cid, 0))
        if turn is None:
            return False
        accepted, after = turn
        # What the client was shown. After a notice (the answer withdrawn by a policy, the
        # model failed) the shown text is not the model's answer: start again instead.
        restart = any(e.frame.get("type") == "notice" for e in after)
        said = (
            ""
            if restart
            else "".join(e.frame["text"] for e in after if e.frame.get("type") == "token")
        )
        question, reply_to = str(accepted.frame["id"]), accepted.frame.get("in_reply_to")
        self._rescuing.add(cid)

        async def events() -> AsyncIterator[ReplyEvent]:
            if restart:
                yield Notice("answer_withdrawn", "The answer is being written again.")
            try:
                work = self.manager.continue_turn(cid, question, said, channel, reply_to)
                async with aclosing(work) as stream:
                    async for event in stream:
                        yield event
            except Busy:  # someone else got there first
                return
            finally:
                self._rescuing.discard(cid)

        self._spawn(events(), cid, reply_to)
        return True

    async def _publish(
        self, work: AsyncIterator[ReplyEvent], cid: str, reply_to: str | None
    ) -> None:
        try:
            async for event in work:
                if (frame := event_frame(event, self.article_base)) is not None:
                    await self.events.append(cid, frame)
        except LeaseLost as exc:
            # This process was paused past its lease and another one took the turn over:
            # that one's answer is the answer; this one says nothing more.
            log.warning("%s", exc.message)
        except SwitchboardError as exc:
            await self._log_error(cid, error_frame(exc.code, exc.message, reply_to))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must cost one turn, not the process
            log.exception("turn failed")
            await self._log_error(
                cid, error_frame("internal_error", "something went wrong; try again", reply_to)
            )

    async def _log_error(self, cid: str, frame: dict[str, Any]) -> None:
        try:
            await self.events.append(cid, frame)
        except StoreUnavailable:
            log.error("conversation %s: could not log the turn's error %s", cid, frame["code"])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def replay_start(
    turn: tuple[Event, list[Event]] | None, events: list[Event], history_ids: list[str]
) -> int:
    """Where a client that rebuilt the conversation from its stored history starts streaming.

    From the open turn's (`open_turn(events)`) acceptance, so that its tokens are replayed,
    when that question is the last stored message; else from the end of the log.
    """
    if turn is not None and history_ids and history_ids[-1] == turn[0].frame.get("id"):
        return turn[0].seq
    return events[-1].seq if events else 0
