"""Handing a conversation to a person, and back: the states, and who hears what.

A conversation's `status` (kept with the session in Redis, changed atomically):

    bot ──request──▶ pending_human ──an agent replies──▶ human ──resolve──▶ bot
                                  └───────────────resolve / close─────────▶ bot | closed

`request` comes from the turn pipeline (the policy's handoff triggers: the customer asked
for a person, the bot could not answer several times, too many blocked messages) or from the
admin API. While the status is `pending_human` or `human` the bot stays silent: the
customer's messages are stored (redacted) and relayed to the agents' console. A customer
writing to a `closed` conversation starts over with the bot.

The desk knows no wire format. The agents' console (the Slack connector) handles the jobs
`handoff.open` (post the thread), `handoff.relay` (a customer message for the agents) and
`handoff.note` (a line for the agents, e.g. "resolved"). Each customer channel registers how
its customers are reached (`channels[name]`): the web channel appends to the conversation's
event log in Redis, which every API process's websockets tail, so an agent's reply handled by
one process reaches a widget connected to another.

Frames delivered to customers (the web channel's wire shapes; other channels render them):
    {"type": "message", "kind": "agent", "author", "id", "text", ...}   an agent's message
    {"type": "agent", "state": "human" | "bot" | "closed", "name"}     joined / left
    {"type": "notice", "code": "handoff", "text"}                       a person was asked
An agent's words reach their own customer as the agent wrote them ("Hi Margarethe, Dana
here"), but they are stored redacted ("Hi <PERSON>, Dana here"), as every other copy is: the
history, the logs, the agents' transcript. The words as written travel to the customer's
channel only *sealed* (`Sealer`: Fernet, a key derived from a secret every process has in its
environment and Redis never holds), in the frame's `sealed` field; the channel opens it at
the last moment (the websocket send, the webhook POST, the Slack post) and the customer sees
`text` replaced by it. Without a secret (`Sealer.from_settings` is None) they see the
redacted text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken

from bot.observability import HANDOFFS
from bot.sessions import Session, SessionStore, Status
from bot.types import Turn
from policies.base import Context
from policies.pii_rules import VAULT_KEY_ENV

if TYPE_CHECKING:
    from bot.jobs import JobQueue
    from bot.manager import ConversationManager

log = logging.getLogger(__name__)
audit = logging.getLogger("switchboard.audit")

# How a channel reaches its customers: (session, frame, once) where `once` is a key that
# makes a repeated delivery of the same frame a no-op (a job run again after a crash).
Deliver = Callable[[Session, dict[str, Any], str | None], Awaitable[None]]
WITH_AGENT: tuple[Status, ...] = ("pending_human", "human")


class Sealer:
    """Seals an agent's words for the trip to their customer (Fernet: encrypted and
    authenticated). Every process derives the same key from the same secret."""

    def __init__(self, secret: str) -> None:
        digest = hmac.new(secret.encode(), b"switchboard/agent-words/v1", hashlib.sha256)
        self._fernet = Fernet(base64.urlsafe_b64encode(digest.digest()))

    @classmethod
    def from_settings(cls, settings: Any) -> Sealer | None:
        """From $SWITCHBOARD_PII_VAULT_KEY, else the Slack signing secret (agents answer
        from Slack); None when neither is set."""
        secret = os.environ.get(VAULT_KEY_ENV, "")
        slack = getattr(settings, "slack", None)
        if not secret and slack is not None and slack.signing_secret is not None:
            secret = slack.signing_secret.get_secret_value()
        return cls(secret) if secret else None

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str | None) -> str | None:
        """The sealed text; None for no token, or one that is not ours (never raises)."""
        if not token:
            return None
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError, TypeError):
            log.warning("an agent's sealed words could not be opened; the redacted text is sent")
            return None


def unsealed(frame: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    """`frame` as the customer sees it: a sealed agent's words opened into `text`; the
    sealed field never leaves the server."""
    if "sealed" not in frame:
        return frame
    out = {k: v for k, v in frame.items() if k != "sealed"}
    words = sealer.open(frame["sealed"]) if sealer is not None else None
    if words is not None:
        out["text"] = words
    return out


def agent_frame(turn: Turn, conversation_id: str) -> dict[str, Any]:
    """The customer-facing frame of an agent's (stored, redacted) message."""
    return {
        "type": "message",
        "kind": "agent",
        "author": turn.author,
        "id": turn.message_id,
        "text": turn.text,
        "citations": [],
        "conversation_id": conversation_id,
        "in_reply_to": None,
        "handoff": "",
        "at": turn.created,
    }


class HandoffDesk:
    """Moves conversations between the bot and people, and carries their messages."""

    def __init__(
        self, manager: ConversationManager, queue: JobQueue, sealer: Sealer | None = None
    ) -> None:
        self.manager = manager
        self.queue = queue
        self.sealer = sealer
        self.channels: dict[str, Deliver] = {}
        # Set by the connector that hosts the agents (Slack with a support channel). Without
        # one a handoff is only recorded in the audit log and the bot keeps answering.
        self.console = ""

    @property
    def store(self) -> SessionStore:
        return self.manager.store

    async def _session(self, conversation_id: str) -> Session:
        return await self.manager.session(conversation_id)

    async def request(self, conversation_id: str, reason: str, *, tell_customer: bool) -> bool:
        """Ask for a person; False when there is no console or a person is already on it.

        `tell_customer`: say so on the customer's channel (the pipeline's final message
        already carries the handoff, so turns pass False).
        """
        if not self.console:
            log.info(
                "conversation %s: handoff (%s) recorded; no agent console", conversation_id, reason
            )
            return False
        if not await self.store.set_status(conversation_id, "pending_human", ("bot", "closed")):
            return False
        try:
            await self.queue.put(
                "handoff.open", {"conversation": conversation_id, "reason": reason}
            )
        except BaseException:
            # No thread will open: the bot must not stay silent waiting for nobody.
            await self.store.set_status(conversation_id, "bot", ("pending_human",))
            raise
        HANDOFFS.labels("requested").inc()
        audit.info(
            "handoff %s",
            json.dumps(
                {"conversation": conversation_id, "state": "pending_human", "reason": reason}
            ),
        )
        if tell_customer:
            session = await self._session(conversation_id)
            text = self.manager.handoff_text(session.channel)
            await self.deliver(session, {"type": "notice", "code": "handoff", "text": text})
        return True

    async def customer_says(self, session: Session, turn: Turn) -> None:
        """A customer's (stored, redacted) message while a person handles the conversation.
        Safe to repeat (a resend, a job run again): relayed once."""
        await self.queue.put(
            "handoff.relay",
            {"conversation": session.id, "message_id": turn.message_id, "text": turn.text},
            once=f"relay:{turn.message_id}",
        )

    async def agent_says(
        self,
        conversation_id: str,
        agent: str,
        text: str,
        key: str = "",
        *,
        sealed: str | None = None,
    ) -> Turn | None:
        """An agent's message to the customer: stored redacted, delivered on the customer's
        channel as written (sealed; see the module's docstring). The first one moves
        `pending_human` to `human`. None when no person is on the conversation any more (a
        stale thread). `key` (e.g. Slack's event id) makes a repeat of the same message a
        no-op. `sealed`: the words as written, already sealed, when `text` was redacted on
        receipt (Slack queues only redacted text)."""
        session = await self._session(conversation_id)
        if session.status not in WITH_AGENT:
            return None
        if key:
            for turn in await self.store.history(conversation_id):
                if turn.kind == "agent" and turn.client_id == key:
                    # Stored by a run that may have died before delivering: deliver (once).
                    frame = agent_frame(turn, conversation_id)
                    await self.deliver(session, frame, once=f"agent:{turn.message_id}")
                    return turn
        if session.status == "pending_human" and await self.store.set_status(
            conversation_id, "human", ("pending_human",)
        ):
            HANDOFFS.labels("taken").inc()
            audit.info(
                "handoff %s", json.dumps({"conversation": conversation_id, "state": "human"})
            )
            await self.deliver(session, {"type": "agent", "state": "human", "name": agent})
        redacted = await self.redact_agent(text, agent, session)
        if sealed is None and self.sealer is not None and redacted != text:
            sealed = self.sealer.seal(text)
        turn = Turn("assistant", redacted, kind="agent", author=agent, client_id=key)
        await self.store.append(conversation_id, [turn])
        frame = agent_frame(turn, conversation_id)
        if sealed is not None:
            frame["sealed"] = sealed
        await self.deliver(session, frame, once=f"agent:{turn.message_id}")
        return turn

    async def redact_agent(self, text: str, agent: str, session: Session) -> str:
        """An agent's words as they may be stored: redacted, except the agent's own name
        (not the customer's personal data; "Hi, Dana here" must not read "Hi, <PERSON>")."""
        context = Context("storage", channel=session.channel, conversation=session.id)
        redact = self.manager.policies.redact_for_storage
        names = sorted(set(re.findall(r"[^\W\d_]{2,}", agent)), key=len, reverse=True)
        if not names:
            return await redact(text, context)
        own = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
        parts = own.split(text)  # odd places: the agent's name
        out = [
            part if i % 2 or not part.strip() else await redact(part, context)
            for i, part in enumerate(parts)
        ]
        return "".join(out)

    async def resolve(self, conversation_id: str, agent: str, *, close: bool = False) -> bool:
        """The person is done: the bot answers again (or the conversation is closed).
        False when no person was on it."""
        state: Status = "closed" if close else "bot"
        if not await self.store.set_status(conversation_id, state, WITH_AGENT):
            return False
        # Kept for `switchboard finetune export`: a conversation a person resolved is data.
        await self.store.set_meta(conversation_id, {"resolved": f"{time.time():.0f}"})
        HANDOFFS.labels("closed" if close else "resolved").inc()
        audit.info("handoff %s", json.dumps({"conversation": conversation_id, "state": state}))
        session = await self._session(conversation_id)
        await self.deliver(session, {"type": "agent", "state": state, "name": agent})
        done = "closed the conversation" if close else "resolved it; the assistant is back"
        await self.queue.put(
            "handoff.note", {"conversation": conversation_id, "text": f"{agent} {done}."}
        )
        return True

    async def deliver(
        self, session: Session, frame: dict[str, Any], once: str | None = None
    ) -> None:
        """Send `frame` to the customer on their channel (once per `once` key, if given;
        the widget itself shows a message id once)."""
        deliver = self.channels.get(session.channel)
        if deliver is None:  # e.g. the REST channel: the history shows it
            log.info(
                "conversation %s: no way to reach %s customers; stored only",
                session.id,
                session.channel,
            )
            return
        await deliver(session, frame, once)
