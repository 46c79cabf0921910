"""Message and event types shared by every stage and every channel.

These are plain frozen dataclasses: connectors turn wire formats into an
`InboundMessage` and turn the `ReplyEvent`s that `ConversationManager.respond()`
yields back into wire formats. No stage knows any channel's wire format.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal


def new_id() -> str:
    """A random, URL-safe identifier for conversations and messages."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Citation:
    """Where a piece of an answer came from: an article title and its source path or URL."""

    title: str
    source: str


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved chunk of the knowledge base, with its relevance score and citation."""

    text: str
    citation: Citation
    score: float
    chunk_id: str = ""
    heading: str = ""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One user message as a connector hands it to the manager (text not yet redacted)."""

    text: str
    channel: str
    conversation_id: str | None = None
    client_message_id: str | None = None
    user: str | None = None
    ip: str | None = None  # the client's address, for per-IP rate limits; never stored


Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a conversation. `text` is always redacted."""

    role: Role
    text: str
    message_id: str = field(default_factory=new_id)
    created: float = field(default_factory=time.time)
    citations: tuple[Citation, ...] = ()
    # For assistant turns that are not answers: "no_answer", "blocked", "fallback", and
    # "agent" for a person's message.
    kind: str = ""
    # The id the client gave a user message: a resend with the same id is answered once.
    client_id: str = ""
    # Who wrote an assistant turn of kind "agent" (the person's display name).
    author: str = ""
    # Custom JSON payloads an action attached to its answer (redacted), for the channel.
    custom: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "role": self.role,
            "text": self.text,
            "message_id": self.message_id,
            "created": self.created,
            "citations": [{"title": c.title, "source": c.source} for c in self.citations],
        }
        if self.kind:
            data["kind"] = self.kind
        if self.client_id:
            data["client_id"] = self.client_id
        if self.author:
            data["author"] = self.author
        if self.custom:
            data["custom"] = list(self.custom)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Turn:
        raw_citations = data.get("citations") or []
        assert isinstance(raw_citations, list)
        role = data["role"]
        if role not in ("user", "assistant"):
            raise ValueError(f"unknown role {role!r}")
        return cls(
            role=role,
            text=str(data["text"]),
            message_id=str(data["message_id"]),
            created=float(data["created"]),  # type: ignore[arg-type]
            citations=tuple(Citation(str(c["title"]), str(c["source"])) for c in raw_citations),
            kind=str(data.get("kind") or ""),
            client_id=str(data.get("client_id") or ""),
            author=str(data.get("author") or ""),
            custom=_payloads(data.get("custom")),
        )


def _payloads(raw: object) -> tuple[dict[str, Any], ...]:
    return tuple(c for c in raw if isinstance(c, dict)) if isinstance(raw, list) else ()


# --- events yielded by ConversationManager.respond() --------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The user's message is stored (redacted): from here on it is never lost."""

    message_id: str
    text: str  # as stored: redacted
    conversation_id: str
    in_reply_to: str | None = None
    # A person handles the conversation: the message went to them, the bot stays silent.
    to_agent: bool = False


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of the answer, already through the output filter (safe to show)."""

    text: str


@dataclass(frozen=True, slots=True)
class Message:
    """The final answer: full redacted text, citations, and ids."""

    id: str
    text: str
    conversation_id: str
    citations: tuple[Citation, ...] = ()
    in_reply_to: str | None = None
    # Why the conversation should go to a person now ("" when it should not).
    handoff: str = ""
    # Custom JSON payloads from an action (e.g. an order card for the page to render).
    custom: tuple[dict[str, Any], ...] = ()
    # What kind of reply it is: "" (an answer), "action", or "no_answer", "blocked",
    # "fallback" for the fixed replies (as the stored turn's kind).
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that is not part of the answer (e.g. degraded mode)."""

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Handoff:
    """The conversation goes to a human agent."""

    conversation_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Error:
    """The turn failed; `code` is stable and machine-readable, `message` is for people."""

    code: str
    message: str


ReplyEvent = Accepted | Token | Message | Notice | Handoff | Error


def is_text(value: str) -> bool:
    """Whether `value` can be written as UTF-8: JSON may carry a lone surrogate
    ("\\ud800"), which no store, log or model can take."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
