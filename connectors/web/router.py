"""`WS /ws/chat`: the streaming chat protocol, and the demo page at `/`.

Client frames (JSON text):
    {"type": "hello", "conversation_id": "..."}        continue a conversation (optional)
    {"type": "message", "text": "...", "id": "<client id>"}
    {"type": "ping"}
Server frames:
    {"type": "hello", "conversation_id": ..., "history": [turn, ...]}
    {"type": "token", "text": "..."}                     (zero or more per answer)
    {"type": "notice", "code": "...", "text": "..."}
    {"type": "message", "id", "text", "citations": [{"title", "source"}], "conversation_id",
     "in_reply_to", "handoff"}                            (ends every answer; its text is the
                                                          whole answer: after a notice
                                                          "answer_withdrawn" it replaces the
                                                          tokens shown)
    {"type": "error", "code": "...", "message": "...", "in_reply_to": ...}
    {"type": "pong"}
Bad frames get an error frame; the connection stays open.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

from bot.errors import ConversationNotFound, SwitchboardError
from bot.manager import ConversationManager
from bot.types import InboundMessage, Message, Notice, ReplyEvent, Token

log = logging.getLogger(__name__)
router = APIRouter()
STATIC = Path(__file__).parent / "static"


@router.get("/", include_in_schema=False)
async def demo_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def _event_frame(event: ReplyEvent) -> dict[str, Any] | None:
    if isinstance(event, Token):
        return {"type": "token", "text": event.text}
    if isinstance(event, Notice):
        return {"type": "notice", "code": event.code, "text": event.text}
    if isinstance(event, Message):
        return {
            "type": "message",
            "id": event.id,
            "text": event.text,
            "citations": [{"title": c.title, "source": c.source} for c in event.citations],
            "conversation_id": event.conversation_id,
            "in_reply_to": event.in_reply_to,
            "handoff": event.handoff,
        }
    return None


def _error(code: str, message: str, in_reply_to: Any = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "in_reply_to": in_reply_to}


class _ChatSession:
    """One websocket connection: parses frames and runs turns one at a time."""

    def __init__(self, ws: WebSocket, manager: ConversationManager) -> None:
        self.ws = ws
        self.manager = manager
        self.conversation_id: str | None = None

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(frame))

    async def handle(self, raw: Mapping[str, Any]) -> None:
        if raw.get("text") is None:
            await self.send(_error("binary_not_supported", "send JSON text frames"))
            return
        try:
            frame = json.loads(raw["text"])
        except json.JSONDecodeError as exc:
            await self.send(_error("bad_json", f"the frame is not valid JSON: {exc.msg}"))
            return
        if not isinstance(frame, dict):
            await self.send(_error("bad_frame", "a frame must be a JSON object with a 'type'"))
            return
        kind = frame.get("type")
        if kind == "message":
            await self.message(frame)
        elif kind == "hello":
            await self.hello(frame)
        elif kind == "ping":
            await self.send({"type": "pong"})
        else:
            await self.send(
                _error(
                    "unknown_type", f"unknown frame type {kind!r}; expected hello, message or ping"
                )
            )

    async def hello(self, frame: dict[str, Any]) -> None:
        cid = frame.get("conversation_id")
        if cid is None:
            self.conversation_id = None
            await self.send({"type": "hello", "conversation_id": None, "history": []})
            return
        try:
            _, turns = await self.manager.resume(str(cid))
        except SwitchboardError as exc:
            await self.send(_error(exc.code, exc.message))
            return
        self.conversation_id = str(cid)
        history = [turn.to_json() for turn in turns]
        await self.send({"type": "hello", "conversation_id": cid, "history": history})

    async def message(self, frame: dict[str, Any]) -> None:
        client_id, text = frame.get("id"), frame.get("text")
        if not isinstance(text, str):
            await self.send(_error("bad_frame", "a message frame needs a string 'text'", client_id))
            return
        cid = frame.get("conversation_id") or self.conversation_id
        ip = self.ws.client.host if self.ws.client else None
        inbound = InboundMessage(text, "web", cid, str(client_id) if client_id else None, ip=ip)
        try:
            async with aclosing(self.manager.respond(inbound)) as events:
                async for event in events:
                    if isinstance(event, Message):
                        self.conversation_id = event.conversation_id
                    if (out := _event_frame(event)) is not None:
                        await self.send(out)
        except SwitchboardError as exc:
            if isinstance(exc, ConversationNotFound):
                self.conversation_id = None
            await self.send(_error(exc.code, exc.message, client_id))
        except (WebSocketDisconnect, RuntimeError):
            raise
        except Exception:  # a bug must cost one turn, not the connection
            log.exception("turn failed")
            await self.send(_error("internal_error", "something went wrong; try again", client_id))


@router.websocket("/ws/chat")
async def chat(ws: WebSocket) -> None:
    """The streaming chat channel used by the demo page and the widget."""
    await ws.accept()
    session = _ChatSession(ws, ws.app.state.manager)
    try:
        while True:
            raw = await ws.receive()
            if raw["type"] == "websocket.disconnect":
                return
            await session.handle(raw)
    except (WebSocketDisconnect, RuntimeError):
        # The client went away mid-answer; aclosing() already stopped the model.
        log.debug("websocket closed by the client")
