"""HTTP routes: health, readiness, and the REST message channel (`POST /api/messages`)."""

from __future__ import annotations

from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator

from bot.components import Components
from bot.errors import Forbidden, Unavailable
from bot.manager import ConversationManager
from bot.observability import metrics_text
from bot.types import Accepted, InboundMessage, Message, is_text

router = APIRouter()


def _components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


def _manager(request: Request) -> ConversationManager:
    manager: ConversationManager = request.app.state.manager
    return manager


ComponentsDep = Annotated[Components, Depends(_components)]
ManagerDep = Annotated[ConversationManager, Depends(_manager)]


class CitationOut(BaseModel):
    title: str
    source: str


# Conversation ids, tokens and the caller's message ids: what any real id needs, and no more
# (an id is stored with its message for the conversation's lifetime).
MAX_ID_CHARS = 200


class MessageIn(BaseModel):
    """A user message sent server-to-server."""

    text: str = Field(
        # Documented, checked by the turn itself (400 empty_message / message_too_long).
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
        description="The user's message (redacted before it is stored); at most "
        "SWITCHBOARD_MAX_MESSAGE_CHARS characters (the document gives this server's limit).",
    )
    conversation_id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="Continue this conversation (its `conversation_token` is then required).",
    )
    conversation_token: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="The token the first answer of the conversation carried; it may come "
        "in the X-Conversation-Token header instead.",
    )
    id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="The caller's id for this message: a resend with the same id gets the "
        "stored answer, not a second one.",
    )

    @field_validator("*")
    @classmethod
    def _is_text(cls, value: object) -> object:
        if isinstance(value, str) and not is_text(value):
            raise ValueError("holds a lone surrogate (\\ud800-\\udfff), which is not text")
        return value


class MessageOut(BaseModel):
    """The bot's final answer (PII redacted), as the websocket's final frame carries it.

    `type` "relayed": a person handles the conversation; the message went to them (no
    answer now; theirs is in the conversation's history)."""

    type: Literal["message", "relayed"] = "message"
    id: str
    text: str
    citations: list[CitationOut]
    conversation_id: str
    conversation_token: str = Field(
        "", description="Send it with every later message of this conversation."
    )
    in_reply_to: str | None = None
    handoff: str = Field(
        "", description="Why the conversation should now go to a person (empty: it should not)."
    )
    custom: list[dict[str, Any]] = Field(
        default_factory=list, description="Custom JSON payloads an action attached (redacted)."
    )


def message_out(message: Message) -> MessageOut:
    return MessageOut(
        id=message.id,
        text=message.text,
        citations=[CitationOut(title=c.title, source=c.source) for c in message.citations],
        conversation_id=message.conversation_id,
        in_reply_to=message.in_reply_to,
        handoff=message.handoff,
        custom=list(message.custom),
    )


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok"}


@router.get("/metrics", tags=["ops"], response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics: turns, latencies, the model's queue and batch, policy decisions,
    handoffs, deliveries, Redis errors, websockets (see the README's Observability)."""
    body, content_type = metrics_text()
    return Response(body, media_type=content_type)


@router.get("/readyz", tags=["ops"], responses={503: {"description": "not ready"}})
async def readyz(components: ComponentsDep) -> JSONResponse:
    """Readiness: the store answers, the model is loaded and the action server (when actions
    are configured) answers its health check; the knowledge base is reported."""
    checks: dict[str, Any] = {
        "store": "ok" if await components.store.ping() else "unreachable",
        "model": "ok" if components.llm.ready() else "loading",
        "knowledge": components.knowledge_error or "ok",
    }
    actions = components.manager.actions
    if actions is not None:  # configured: its action server must answer
        checks["actions"] = "ok" if await actions.client.healthy() else "unreachable"
    ready = all(checks[name] == "ok" for name in ("store", "model", "actions") if name in checks)
    body = {
        "status": "ready" if ready else "not ready",
        "checks": checks,
        # The index version being served: replicas pick up a new one within seconds.
        "knowledge_version": getattr(components.retriever, "version", None),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.post(
    "/api/messages",
    tags=["channels"],
    responses={
        400: {"description": "bad message"},
        403: {"description": "the conversation's token is missing or wrong"},
        404: {"description": "unknown conversation"},
        503: {
            "description": "store unavailable or busy; once the question is stored, the "
            "error carries its conversation_id and conversation_token: send it again with the "
            "same id"
        },
    },
)
async def post_message(
    body: MessageIn,
    manager: ManagerDep,
    request: Request,
    x_conversation_token: Annotated[str | None, Header(max_length=MAX_ID_CHARS)] = None,
) -> MessageOut:
    """Send one message and get the bot's complete answer (no streaming).

    A new conversation's answer carries its `conversation_token`; every later message of
    that conversation must present it (body or `X-Conversation-Token`): a conversation id
    alone, seen in a log or a webhook payload, writes nothing."""
    signer = request.app.state.web.signer
    if body.conversation_id is not None:
        token = body.conversation_token or x_conversation_token
        if token is None:
            raise Forbidden(
                "continuing a conversation needs its conversation_token (from the first answer)",
                code="conversation_token_required",
            )
        if not signer.check_resume_token(body.conversation_id, token):
            raise Forbidden(
                "the conversation_token does not belong to this conversation",
                code="bad_conversation_token",
            )
    ip = request.client.host if request.client else None
    inbound = InboundMessage(body.text, "rest", body.conversation_id, body.id, ip=ip)
    final: Message | None = None
    accepted: Accepted | None = None
    try:
        async with aclosing(manager.respond(inbound)) as events:
            async for event in events:
                if isinstance(event, Message):
                    final = event
                elif isinstance(event, Accepted):
                    accepted = event
    except Unavailable as exc:
        if accepted is None:
            raise
        # The question is stored: the caller needs the conversation to ask again (the same
        # `id` then gets this question answered, once) — not a stranded question.
        cid = accepted.conversation_id
        exc.message += "; send the same message (same id) again to have it answered"
        exc.extra = {"conversation_id": cid, "conversation_token": signer.resume_token(cid)}
        raise
    if final is None:
        assert accepted is not None and accepted.to_agent, "an answer or a relayed message"
        return MessageOut(
            type="relayed",
            id=accepted.message_id,
            text="",
            citations=[],
            conversation_id=accepted.conversation_id,
            conversation_token=signer.resume_token(accepted.conversation_id),
            in_reply_to=accepted.in_reply_to,
        )
    out = message_out(final)
    out.conversation_token = signer.resume_token(final.conversation_id)
    return out
