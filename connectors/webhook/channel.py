"""Generic webhook channels: any system a company wires itself (SMS gateway, email, an app).

Inbound `POST /webhooks/{name}` with JSON `{conversation_id, user_id, text, metadata}`,
signed with `Switchboard-Signature: t=<unix>,v1=<hex>` (see `signature`). The answer is
`202 {"status": "accepted", "message_id"}` at once; the turn runs in the durable job queue.
With an `Idempotency-Key` header, a retry of the same request is answered
`200 {"status": "duplicate", "message_id"}` (the first one's id) and not answered twice;
the same signed request (time and body) sent again, whatever its key, is a duplicate too.

Outbound: the bot's replies, agents' messages and handoff changes are POSTed to the
channel's `url`, signed the same way, each with a unique `Switchboard-Delivery` id (the
same id on every retry of one delivery: receivers deduplicate by it). Deliveries wait in
Redis (the job queue), are retried with exponential backoff and full jitter after a failure
or a timeout, and after `max_attempts` land in the dead letters, listed and replayed by the
admin API (`/admin/deliveries/dead`).

`conversation_id` is the channel's own id for the conversation; it is kept as the address
replies go to, so it should be an opaque id, not a phone number or an e-mail address.
`user_id` is kept only as a hash; `metadata` is not kept (it may hold personal data).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_validator

from bot.errors import BadRequest, Busy, ConversationNotFound, LeaseLost, StoreUnavailable
from bot.handoff import HandoffDesk, unsealed
from bot.jobs import GiveUp, Job, JobQueue, RetryLater, backoff
from bot.manager import ConversationManager
from bot.observability import DELIVERIES
from bot.sessions import Session
from bot.settings import Settings, WebhookSettings
from bot.types import InboundMessage, Message, is_text, new_id
from connectors.kv import KeyValue
from connectors.web.turns import citations_json
from connectors.webhook.signature import (
    HEADER,
    TOLERANCE_S,
    InvalidSignature,
    replay_key,
    sign,
    verify,
)
from policies.base import Context

log = logging.getLogger(__name__)
router = APIRouter(tags=["channels"])

DELIVERY_HEADER = "Switchboard-Delivery"
# How long a signed request is remembered: past it, its signature is stale anyway.
REPLAY_TTL_S = 2 * TOLERANCE_S


class WebhookMessage(BaseModel):
    """An inbound message."""

    conversation_id: str = Field(min_length=1, max_length=200)
    user_id: str | None = Field(None, max_length=200)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("conversation_id", "user_id", "text")
    @classmethod
    def _is_text(cls, value: str | None) -> str | None:
        if value is not None and not is_text(value):
            raise ValueError("holds a lone surrogate (\\ud800-\\udfff), which is not text")
        return value


class WebhookChannels:
    """Every configured webhook channel of one process."""

    def __init__(
        self,
        settings: Settings,
        manager: ConversationManager,
        desk: HandoffDesk,
        queue: JobQueue,
        kv: KeyValue,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.desk = desk
        self.queue = queue
        self.kv = kv
        self._http = httpx.AsyncClient(follow_redirects=False)
        queue.handle("webhook.turn", self._turn)
        queue.handle("webhook.deliver", self._deliver_job)
        desk.channels["webhook"] = self._deliver

    async def close(self) -> None:
        await self._http.aclose()

    def config(self, name: str) -> WebhookSettings | None:
        return self.settings.webhooks.get(name)

    async def receive(self, name: str, headers: Any, body: bytes) -> JSONResponse:
        config = self.config(name)
        if config is None:
            return _fail(404, "unknown_webhook", f"no webhook channel named {name!r}")
        secrets = [s.get_secret_value() for s in config.secrets]
        try:
            signed_at = verify(headers.get(HEADER), body, secrets)
        except InvalidSignature as exc:
            log.warning("webhook %s: request refused: %s", name, exc)
            return _fail(401, "bad_signature", str(exc))
        try:
            message = WebhookMessage.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            return _fail(400, "bad_message", problems)
        text = self.manager.validate(message.text)  # BadRequest: 400 with its code
        key = headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= 200:
            return _fail(400, "bad_idempotency_key", "Idempotency-Key must be 1-200 characters")
        # One signed request is taken once: the Idempotency-Key is not signed, so a captured
        # request re-sent with new keys must not be answered again.
        seen = f"webhook:signed:{name}:{replay_key(signed_at, body)}"
        if not await self.kv.put(seen, "", REPLAY_TTL_S, only_new=True):
            first = await self.kv.get(seen)
            for _ in range(60):  # the first is being queued right now: its id, shortly
                if first != "":
                    break
                await asyncio.sleep(0.05)
                first = await self.kv.get(seen)
            log.warning("webhook %s: a signed request was sent again; not answered again", name)
            return JSONResponse({"status": "duplicate", "message_id": first or None}, 200)
        try:
            cid = await self.conversation(name, message.conversation_id, message.user_id)
            context = Context("storage", channel="webhook", conversation=cid)
            job = {
                "name": name,
                "conversation": cid,
                "text": await self.manager.policies.redact_on_receipt(text, context),
                "key": key or "",
            }
            once = f"webhook:{name}:{key}" if key else None
            job_id, new = await self.queue.put("webhook.turn", job, once=once)
        except BaseException:
            # Not taken: the sender's retry of this very request must not look like a replay.
            with contextlib.suppress(StoreUnavailable):
                await self.kv.delete(seen)
            raise
        await self.kv.put(seen, job_id, REPLAY_TTL_S)
        if not new:
            return JSONResponse({"status": "duplicate", "message_id": job_id}, 200)
        return JSONResponse({"status": "accepted", "message_id": job_id}, 202)

    @staticmethod
    def _conversation_key(name: str, external: str) -> str:
        digest = hashlib.sha256(external.encode()).hexdigest()[:32]
        return f"webhook:conv:{name}:{digest}"

    async def find(self, name: str, external: str) -> str | None:
        """Our conversation id for the channel's own id, if there is one (nothing is made)."""
        if not is_text(external):
            return None
        return await self.kv.get(self._conversation_key(name, external))

    async def conversation(self, name: str, external: str, user: str | None) -> str:
        """Our conversation for the channel's conversation id (made on first use)."""
        key = self._conversation_key(name, external)
        ttl = self.settings.sessions.ttl_s
        cid = await self.kv.get(key)
        if cid is not None and await self.manager.store.get(cid) is not None:
            return cid
        user_hash = hashlib.sha256(f"{name}:{user}".encode()).hexdigest()[:24] if user else None
        session = await self.manager.store.create("webhook", user_hash)
        await self.manager.store.set_meta(session.id, {"webhook": name, "address": external})
        if cid is None:
            if not await self.kv.put(key, session.id, ttl, only_new=True):
                return await self.kv.get(key) or session.id
        else:
            await self.kv.put(key, session.id, ttl)
        return session.id

    # --- jobs ---------------------------------------------------------------------------

    async def _turn(self, job: Job) -> None:
        p = job.payload
        # The message's id: the sender's idempotency key, else the job's (stable on retries).
        message_id = p["key"] or job.id
        inbound = InboundMessage(p["text"], "webhook", p["conversation"], message_id)
        final: Message | None = None
        try:
            async with aclosing(self.manager.respond(inbound)) as events:
                async for event in events:
                    if isinstance(event, Message):
                        final = event
        except LeaseLost as exc:  # paused past its lease: another process answers it
            log.warning("%s", exc.message)
            return
        except ConversationNotFound as exc:
            raise GiveUp(exc.message) from None
        except (StoreUnavailable, Busy) as exc:
            raise RetryLater(backoff(job.attempt, 2.0, 60.0), exc.message) from None
        except BadRequest as exc:
            raise GiveUp(exc.message) from None
        if final is None:
            return  # a person handles the conversation
        session = await self.manager.session(p["conversation"])
        frame = {
            "type": "message",
            "id": final.id,
            "text": final.text,
            "citations": citations_json(final.citations, self._article_base()),
            "in_reply_to": message_id,
            "handoff": final.handoff,
            **({"custom": list(final.custom)} if final.custom else {}),
        }
        await self._deliver(session, frame, once=f"reply:{final.id}")

    def _article_base(self) -> str | None:
        base, article = self.settings.public_url, self.settings.web.article_base_url
        if article is None or article.startswith(("http://", "https://")):
            return article
        return None if base is None else base.rstrip("/") + article

    async def _deliver(
        self, session: Session, frame: dict[str, Any], once: str | None = None
    ) -> None:
        """Queue `frame` for the customer's channel (signed POST to its url)."""
        name = session.meta.get("webhook", "")
        config = self.config(name)
        if config is None or config.url is None:
            log.info("webhook %r has no url: reply to %s not delivered", name, session.id)
            return
        body = {
            **frame,
            "delivery_id": new_id(),
            "channel": name,
            "conversation_id": session.meta.get("address"),
            "at": frame.get("at") or time.time(),
        }
        if frame.get("type") == "agent":  # the words the customer should see, too
            messages = self.manager.policies.messages("webhook")
            state = frame.get("state")
            body["text"] = (
                messages.agent_joined.format(name=frame.get("name") or "An agent")
                if state == "human"
                else messages.closed
                if state == "closed"
                else messages.bot_back
            )
        await self.queue.put("webhook.deliver", {"name": name, "body": body}, once=once)

    async def _deliver_job(self, job: Job) -> None:
        p = job.payload
        config = self.config(p["name"])
        if config is None or config.url is None:
            raise GiveUp(f"webhook {p['name']!r} has no url any more")
        # An agent's words travel sealed in the queue; the customer gets them as written.
        body = json.dumps(unsealed(p["body"], self.desk.sealer)).encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(body, [config.secrets[0].get_secret_value()]),
            DELIVERY_HEADER: p["body"]["delivery_id"],
            "Switchboard-Attempt": str(job.attempt + 1),
            "User-Agent": "Switchboard-Webhooks/1",
        }
        try:
            response = await self._http.post(
                config.url, content=body, headers=headers, timeout=config.timeout_s
            )
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            reason = reason.replace(config.url, _without_query(config.url))
        else:
            if 200 <= response.status_code < 300:
                DELIVERIES.labels(p["name"], "delivered").inc()
                return
            reason = f"HTTP {response.status_code}"
        if job.attempt + 1 >= config.max_attempts:
            DELIVERIES.labels(p["name"], "dead").inc()
            raise GiveUp(f"{reason} (after {job.attempt + 1} tries)")
        DELIVERIES.labels(p["name"], "retry").inc()
        raise RetryLater(backoff(job.attempt, config.backoff_s, config.backoff_max_s), reason)


def _without_query(url: str) -> str:
    """`url` fit for a log line: no query string or credentials (a receiver's token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _fail(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


@router.post(
    "/webhooks/{name}",
    status_code=202,
    responses={
        200: {
            "description": "a duplicate (same Idempotency-Key, or the same signed request "
            "sent again): not answered again"
        },
        400: {"description": "bad message"},
        401: {"description": "bad or missing signature"},
        404: {"description": "no such webhook channel"},
        503: {"description": "store unavailable: retry"},
    },
)
async def webhook_in(name: str, request: Request) -> JSONResponse:
    """A message from a webhook channel; the reply is POSTed to the channel's url."""
    channels: WebhookChannels = request.app.state.webhooks
    try:
        return await channels.receive(name, request.headers, await request.body())
    except BadRequest as exc:
        return _fail(exc.http_status, exc.code, exc.message)
