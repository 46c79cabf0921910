"""The web channel: `WS /ws/chat`, the widget (`/widget.js`), its token, the demo page.

Handshake: browsers (which send an `Origin`) connect to `/ws/chat?token=T` with a token
from `POST /api/widget/token` (site key + allowed origin); other origins get HTTP 403.
Clients without an `Origin` (servers, tests) may connect without one unless
`web.require_token` is set.

Client frames (JSON text):
    {"type": "hello", "conversation_id": "...", "resume_token": "...", "last_seq": N}
        join a conversation; without last_seq the server sends its history, with it only
        the events after N (what a dropped connection missed)
    {"type": "message", "text": "...", "id": "<client id>"}   (a resend with the same id
                                                               is answered once)
    {"type": "feedback", "message_id": "...", "rating": "up" | "down" | null}
    {"type": "identify", "email": "..."}       (rate limits per person; the email is hashed)
    {"type": "ping"}
Server frames:
    {"type": "hello", "conversation_id", "resume_token", "history": [turn...], "seq",
     "feedback": {message_id: rating}}          or {"type": "hello", ..., "resumed": true}
    {"type": "conversation", "conversation_id", "resume_token"}   a new conversation began
    Logged events, each with its "seq" (the conversation's sequence number):
    {"type": "accepted", "id", "text", "in_reply_to", "at"}   the message is stored
                                                               (redacted text); with
                                                               "to_agent": true it went to a
                                                               person and the bot is silent
    {"type": "token", "text"}                                   zero or more per answer
    {"type": "notice", "code", "text"}
    {"type": "message", "id", "text", "citations": [{"title", "source"}],
     "conversation_id", "in_reply_to", "handoff", "at"}         ends every answer; its text
                                                               is the whole answer (after a
                                                               notice "answer_withdrawn" it
                                                               replaces the tokens shown)
    {"type": "message", "kind": "agent", "author", "id", "text", "at", ...}   a person's
                                                               message (handoff)
    {"type": "agent", "state": "human" | "bot" | "closed", "name"}   a person took over / left
    {"type": "feedback", "message_id", "rating"}
    {"type": "error", "code", "message", "in_reply_to"}
    Not logged: {"type": "error", ...} for a bad frame, {"type": "pong"}.
Bad frames get an error frame; the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response

from bot.components import Components
from bot.errors import BadRequest, StoreUnavailable, SwitchboardError
from bot.events import (
    Event,
    EventLog,
    FeedbackStore,
    InMemoryEventLog,
    RedisEventLog,
    open_turn,
)
from bot.handoff import HandoffDesk, Sealer, unsealed
from bot.manager import ConversationManager
from bot.observability import WEBSOCKETS
from bot.sessions import RedisSessionStore, Session
from bot.settings import Settings
from bot.types import InboundMessage, Turn
from connectors.web.security import Denied, Signer, TokenBucket, WidgetGrant, shared_secret
from connectors.web.turns import TurnRunner, citations_json, error_frame, replay_start

log = logging.getLogger(__name__)
router = APIRouter()
STATIC = Path(__file__).parent / "static"
RATINGS = ("up", "down", None)

# The demo page may load only what this server serves.
DEMO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass
class WebChannel:
    """One process's web channel: the event log, the turn runner and the token signer."""

    settings: Settings
    components: Components
    events: EventLog
    runner: TurnRunner
    signer: Signer
    feedback: FeedbackStore
    reader: Any | None = None  # the Redis client of the websockets' blocking reads
    sealer: Sealer | None = None  # opens agents' words for their customer (bot.handoff)

    @classmethod
    async def start(cls, components: Components, desk: HandoffDesk | None = None) -> WebChannel:
        settings = components.settings
        store, redis, reader = components.store, None, None
        events: EventLog
        if isinstance(store, RedisSessionStore) and settings.redis_url is not None:
            from redis.asyncio import Redis

            redis = store.client
            # Each open widget blocks on one connection of this client, never the store's.
            reader = Redis.from_url(
                settings.redis_url.get_secret_value(),
                decode_responses=True,
                max_connections=10_000,
                socket_connect_timeout=3,
                socket_timeout=10,
            )
            events = RedisEventLog(
                redis, settings.key_prefix, settings.sessions.ttl_s, reader=reader
            )
        else:
            events = InMemoryEventLog(settings.sessions.ttl_s)
        secret = await shared_secret(settings.web, redis, settings.key_prefix)
        runner = TurnRunner(components.manager, events, settings.web.article_base_url)
        feedback = FeedbackStore(redis, settings.key_prefix)
        signer = Signer(secret, settings.web)
        if desk is not None:  # agents' messages reach widgets through the event log

            async def deliver(session: Session, frame: dict[str, Any], once: str | None) -> None:
                await events.append(session.id, frame)  # the widget shows an id once

            desk.channels["web"] = deliver
        sealer = desk.sealer if desk is not None else None
        return cls(settings, components, events, runner, signer, feedback, reader, sealer)

    async def close(self) -> None:
        await self.runner.close()
        if self.reader is not None:
            await self.reader.aclose()


def _web(request: Request | WebSocket) -> WebChannel:
    web: WebChannel = request.app.state.web
    return web


@router.get("/", include_in_schema=False)
async def demo_page() -> FileResponse:
    """A sample company page with the widget embedded, under a strict CSP."""
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": DEMO_CSP, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/demo.css", include_in_schema=False)
async def demo_css() -> FileResponse:
    return FileResponse(STATIC / "demo.css", media_type="text/css")


@functools.cache
def _widget() -> tuple[bytes, str]:
    body = (STATIC / "widget.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


@router.get("/widget.js", include_in_schema=False)
async def widget_js(request: Request) -> Response:
    """The widget, one file; cached for five minutes, then revalidated by its ETag."""
    body, etag = _widget()
    headers = {
        "Cache-Control": "public, max-age=300, must-revalidate",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


ARTICLE_TYPES = {
    ".md": "text/plain",
    ".txt": "text/plain",
    ".html": "text/plain",
    ".htm": "text/plain",
}


@router.get("/help/{name:path}", include_in_schema=False)
async def article(name: str, request: Request) -> Response:
    """A help-center document, as text, for citation links (never rendered as HTML here)."""
    root = _web(request).settings.documents_dir.resolve()
    if "\x00" in name or not name.isprintable():  # no file is named so; open() would fail
        return _fail(404, "not_found", "no such article")
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.suffix not in ARTICLE_TYPES:
        return _fail(404, "not_found", f"no article {name!r}")
    return FileResponse(
        path,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        },
    )


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@router.options("/api/widget/token", include_in_schema=False)
async def widget_token_preflight(request: Request) -> Response:
    origin = request.headers.get("origin", "")
    web = _web(request)
    host = request.headers.get("host")
    if not any(web.signer.origin_allowed(site, origin, host) for site in web.settings.web.sites):
        return Response(status_code=403)
    headers = {
        **_cors(origin),
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
    }
    return Response(status_code=204, headers=headers)


@router.post(
    "/api/widget/token",
    tags=["channels"],
    responses={400: {"description": "no site key or origin"}, 403: {"description": "refused"}},
    openapi_extra={
        "parameters": [
            {
                "name": "Origin",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
                "description": "The page's origin (browsers send it); it must be allowed for "
                "the site key.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                media: {
                    "schema": {
                        "type": "object",
                        "required": ["site_key"],
                        "properties": {"site_key": {"type": "string"}},
                    }
                }
                for media in ("application/json", "text/plain")
            },
        },
    },
)
async def widget_token(request: Request) -> JSONResponse:
    """A short-lived token for the widget's websocket: body `{"site_key": "..."}`.

    Called by the page (the browser sends its `Origin`); the origin must be allowed for the
    site key. The body may be sent as text/plain so that no CORS preflight is needed.
    """
    origin = request.headers.get("origin")
    if not origin:
        return _fail(400, "no_origin", "call this from a web page: the Origin header is missing")
    try:
        body = json.loads(await request.body() or b"{}")
        site = body["site_key"]
        if not isinstance(site, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return _fail(400, "bad_request", 'send {"site_key": "..."} as JSON', origin)
    web = _web(request)
    try:
        token, ttl = web.signer.widget_token(site, origin, request.headers.get("host"))
    except Denied as exc:
        log.info("widget token refused: %s", exc)
        # With CORS headers, so that the widget can show the page's owner why.
        return _fail(403, "origin_not_allowed", str(exc), origin)
    config = {"image_domains": web.settings.web.image_domains}
    return JSONResponse(
        {"token": token, "expires_in": ttl, "config": config},
        headers={**_cors(origin), "Cache-Control": "no-store"},
    )


def _fail(status: int, code: str, message: str, origin: str | None = None) -> JSONResponse:
    headers = _cors(origin) if origin else {}
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


class _ChatSession:
    """One websocket connection: reads frames, and streams its conversation's events."""

    def __init__(self, ws: WebSocket, web: WebChannel, grant: WidgetGrant | None) -> None:
        self.ws = ws
        self.web = web
        self.grant = grant
        self.conversation_id: str | None = None
        self.user: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        settings = web.settings.web
        self._bucket = TokenBucket(settings.messages_per_minute, settings.burst)

    @property
    def manager(self) -> ConversationManager:
        return self.web.components.manager

    async def send(self, frame: Mapping[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(frame))

    async def handle(self, raw: Mapping[str, Any]) -> None:
        if raw.get("text") is None:
            await self.send(error_frame("binary_not_supported", "send JSON text frames"))
            return
        try:
            frame = json.loads(raw["text"])
        except json.JSONDecodeError as exc:
            await self.send(error_frame("bad_json", f"the frame is not valid JSON: {exc.msg}"))
            return
        except RecursionError:
            await self.send(error_frame("bad_json", "the frame is nested too deeply"))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str | None):
            await self.send(error_frame("bad_frame", "a frame must be a JSON object with a 'type'"))
            return
        if not all(isinstance(frame.get(k), str | None) for k in ("id", "text", "message_id")):
            await self.send(
                error_frame("bad_frame", "'id', 'text' and 'message_id' must be strings")
            )
            return
        kind = frame.get("type")
        if kind in ("hello", "feedback") and (wait := self._bucket.take()):
            await self.send(
                error_frame("rate_limited", f"too many frames: wait {wait:.0f} s", frame.get("id"))
            )
            return
        handler = {
            "message": self.message,
            "hello": self.hello,
            "feedback": self.feedback,
            "identify": self.identify,
        }.get(kind)  # type: ignore[arg-type]
        try:
            if kind == "ping":
                await self.send({"type": "pong"})
            elif handler is not None:
                await handler(frame)
            else:
                await self.send(
                    error_frame(
                        "unknown_type",
                        f"unknown frame type {kind!r}; expected hello, message, feedback, "
                        "identify or ping",
                    )
                )
        except SwitchboardError as exc:
            await self.send(error_frame(exc.code, exc.message, frame.get("id")))
        except (UnicodeError, TypeError, ValueError, AttributeError, KeyError) as exc:
            # A frame no client should send: its error, and the connection stays up.
            log.info("websocket: a %s frame could not be handled: %s", kind, type(exc).__name__)
            await self.send(error_frame("bad_frame", "the frame could not be handled"))

    # --- following a conversation's events --------------------------------------------

    def follow(self, cid: str, after: int, open_turn: bool) -> None:
        self.stop()
        self.conversation_id = cid
        self._pump = asyncio.create_task(self._stream(cid, after, open_turn), name="ws-pump")

    def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _stream(self, cid: str, after: int, open_: bool) -> None:
        try:
            await self._follow(cid, after, open_)
        except (WebSocketDisconnect, RuntimeError):
            log.debug("websocket closed while streaming")
        except asyncio.CancelledError:
            raise
        except Exception:  # never a silent dead pump: close, and the widget reconnects
            log.exception("conversation %s: streaming failed", cid)
            with contextlib.suppress(Exception):
                await self.ws.close(code=1011)

    async def _follow(self, cid: str, after: int, open_: bool) -> None:
        """Send the conversation's events after `after`, live; finish a dead turn."""
        events, stall_s = self.web.events, self.web.settings.web.stall_s
        quiet_since, failing, asked = time.monotonic(), False, None
        while True:
            try:
                batch = await events.wait(cid, after, timeout_s=min(1.0, stall_s))
                failing = False
            except StoreUnavailable as exc:
                if not failing:
                    await self.send(error_frame(exc.code, exc.message))
                failing = True
                await asyncio.sleep(1.0)
                continue
            for event in batch:
                await self.send(unsealed(event.wire(), self.web.sealer))
                after = event.seq
                kind = event.frame.get("type")
                if kind == "accepted":  # a message relayed to a person gets no bot answer
                    open_, asked = not event.frame.get("to_agent"), event.frame.get("in_reply_to")
                elif kind == "message" or (
                    kind == "error" and event.frame.get("in_reply_to") == asked
                ):
                    open_ = False
            now = time.monotonic()
            if batch:
                quiet_since = now
            elif open_ and now - quiet_since >= stall_s:
                # Silent while answering: if no process holds the turn, it died; finish it.
                quiet_since = now
                try:
                    if await self.web.runner.rescue(cid):
                        log.info("conversation %s: taking over an interrupted answer", cid)
                except StoreUnavailable:
                    pass

    # --- frames ------------------------------------------------------------------------

    async def hello(self, frame: dict[str, Any]) -> None:
        cid = frame.get("conversation_id")
        if cid is None:
            self.stop()
            self.conversation_id = None
            await self.send({"type": "hello", "conversation_id": None, "history": [], "seq": 0})
            return
        cid = str(cid)
        if not self.web.signer.check_resume_token(cid, frame.get("resume_token")):
            await self.send(
                error_frame(
                    "bad_resume_token",
                    "this conversation cannot be resumed without its resume token; start a new one",
                )
            )
            return
        # The log before the history: an answer stored in between is then in the history,
        # and its final event (replayed) is shown once (the client knows message ids).
        events = await self.web.events.since(cid, 0)
        _, turns = await self.manager.resume(cid)  # unknown_conversation when it is gone
        turn = open_turn(events)
        token = self.web.signer.resume_token(cid)
        last = frame.get("last_seq")
        # The log keeps every event of the conversation's lifetime but the oldest beyond its
        # cap: the client's `last` must still be in it (or just before it).
        first, head = (events[0].seq, events[-1].seq) if events else (1, 0)
        if isinstance(last, int) and not isinstance(last, bool) and first - 1 <= last <= head:
            # A dropped connection: the client has everything up to `last`.
            await self.send(
                {
                    "type": "hello",
                    "conversation_id": cid,
                    "resume_token": token,
                    "resumed": True,
                    "seq": last,
                }
            )
            self.follow(cid, last, turn is not None)
            return
        start = replay_start(turn, events, [t.message_id for t in turns])
        # An agent's words as written, for their customer, while the log still holds them.
        sealed = {
            e.frame.get("id"): e.frame["sealed"]
            for e in events
            if e.frame.get("kind") == "agent" and "sealed" in e.frame
        }
        await self.send(
            {
                "type": "hello",
                "conversation_id": cid,
                "resume_token": token,
                "history": [self._turn(t, sealed) for t in turns],
                "seq": start,
                "feedback": _ratings(events),
            }
        )
        self.follow(cid, start, turn is not None)

    def _turn(self, turn: Turn, sealed: dict[Any, str] | None = None) -> dict[str, Any]:
        base = self.web.settings.web.article_base_url
        out = {**turn.to_json(), "citations": citations_json(turn.citations, base)}
        if sealed and turn.kind == "agent" and turn.message_id in sealed:
            out = unsealed({**out, "sealed": sealed[turn.message_id]}, self.web.sealer)
        return out

    async def message(self, frame: dict[str, Any]) -> None:
        client_id, text = frame.get("id"), frame.get("text")
        client_id = str(client_id) if client_id is not None else None
        if not isinstance(text, str):
            await self.send(
                error_frame("bad_frame", "a message frame needs a string 'text'", client_id)
            )
            return
        if wait := self._bucket.take():
            await self.send(
                error_frame(
                    "rate_limited",
                    f"too many messages: wait {wait:.0f} s before sending another",
                    client_id,
                )
            )
            return
        text = self.manager.validate(text)
        cid = frame.get("conversation_id") or self.conversation_id
        if cid is not None and cid != self.conversation_id:
            await self.manager.resume(str(cid))  # unknown_conversation when it is not there
            raise BadRequest(
                "join the conversation first: send a hello with its resume token",
                code="hello_first",
            )
        if cid is None:
            session = await self.manager.store.create("web", self.user)
            cid = session.id
            await self.send(
                {
                    "type": "conversation",
                    "conversation_id": cid,
                    "resume_token": self.web.signer.resume_token(cid),
                }
            )
            self.follow(cid, 0, False)
        elif client_id is not None and await self._resent(cid, client_id):
            return  # a resend after a reconnect: the log already has (or will have) it
        ip = self.ws.client.host if self.ws.client else None
        self.web.runner.submit(InboundMessage(text, "web", cid, client_id, self.user, ip))

    async def _resent(self, cid: str, client_id: str) -> bool:
        """Whether this message is already answered or being answered: then a resend is
        not run again. A stored question nobody answers (refused as busy after it was
        stored, or its turn failed) is run again: the turn answers the stored question,
        once, under the conversation's lock."""
        if self.web.runner.pending(cid, client_id):
            return True
        turns = await self.manager.store.history(cid)
        asked = next(
            (i for i, t in enumerate(turns) if t.role == "user" and t.client_id == client_id),
            None,
        )
        if asked is None:
            return False
        # Only the last message is still waiting: an older one left unanswered stays so.
        waiting = asked == len(turns) - 1
        return not waiting or await self.manager.store.locked(cid)

    async def feedback(self, frame: dict[str, Any]) -> None:
        cid, mid, rating = self.conversation_id, frame.get("message_id"), frame.get("rating")
        if cid is None or not isinstance(mid, str) or rating not in RATINGS:
            raise BadRequest(
                "feedback needs a joined conversation, a 'message_id' and a 'rating' of "
                "'up', 'down' or null",
                code="bad_frame",
            )
        _, turns = await self.manager.resume(cid)
        if not any(t.message_id == mid and t.role == "assistant" for t in turns):
            raise BadRequest(f"no answer {mid!r} in this conversation", code="unknown_message")
        await self.web.feedback.put(cid, mid, rating)
        await self.web.events.append(cid, {"type": "feedback", "message_id": mid, "rating": rating})

    async def identify(self, frame: dict[str, Any]) -> None:
        email = frame.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise BadRequest("identify needs an 'email'", code="bad_frame")
        self.user = self.web.signer.user_id(email)


def _ratings(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in events:
        if event.frame.get("type") == "feedback":
            mid, rating = event.frame["message_id"], event.frame["rating"]
            if rating is None:
                out.pop(mid, None)
            else:
                out[mid] = rating
    return out


@router.websocket("/ws/chat")
async def chat(ws: WebSocket) -> None:
    """The streaming chat channel of the widget (see the module's docstring)."""
    web = _web(ws)
    origin, host = ws.headers.get("origin"), ws.headers.get("host")
    token = ws.query_params.get("token")
    grant = None
    try:
        if token:
            grant = web.signer.check_widget_token(token, origin, host)
        elif origin is not None or web.settings.web.require_token:
            raise Denied("a widget token is required: get one from POST /api/widget/token")
    except Denied as exc:
        log.info("websocket refused (origin %s): %s", origin, exc)
        await ws.close(code=1008, reason=str(exc)[:120])  # before accept: HTTP 403
        return
    await ws.accept()
    session = _ChatSession(ws, web, grant)
    WEBSOCKETS.inc()
    try:
        while True:
            raw = await ws.receive()
            if raw["type"] == "websocket.disconnect":
                return
            await session.handle(raw)
    except (WebSocketDisconnect, RuntimeError):
        log.debug("websocket closed by the client")
    finally:
        WEBSOCKETS.dec()
        session.stop()
