"""Admin endpoints: upload, list and delete help-center documents, behind an API key.

Documents live as files in `settings.documents_dir`; every change re-indexes that folder
(the old index serves until the new one is complete) and switches retrieval to it.
Switched off (404) unless `SWITCHBOARD_ADMIN_API_KEY` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel

from bot.components import Components
from bot.errors import BadRequest, ConversationNotFound, SwitchboardError
from bot.files import write_atomically
from knowledge.loaders import SUPPORTED_SUFFIXES, UnreadableDocument, load_file

router = APIRouter(prefix="/admin", tags=["admin"])

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
# What the loaders read; anything else is refused at upload rather than ignored at ingest.
DOCUMENT_TYPES = SUPPORTED_SUFFIXES
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,150}$")


def document_name_pattern() -> str:
    """What a document's name may be, as the OpenAPI document states it (the route checks
    it itself, answering 400 or 415 with a message rather than a bare 422)."""
    either = "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in "|".join(
        sorted(suffix.lstrip(".") for suffix in DOCUMENT_TYPES)
    ))  # fmt: skip
    return rf"^[A-Za-z0-9][A-Za-z0-9._ -]{{0,140}}\.({either})$"


class Unauthorized(SwitchboardError):
    code = "unauthorized"
    http_status = 401


class AdminDisabled(SwitchboardError):
    code = "admin_disabled"
    http_status = 404


class DocumentNotFound(SwitchboardError):
    code = "document_not_found"
    http_status = 404


class UnsupportedDocument(BadRequest):
    code = "unsupported_document"
    http_status = 415


class DocumentTooLarge(BadRequest):
    code = "document_too_large"
    http_status = 413


class UnreadableUpload(BadRequest):
    code = "unreadable_document"
    http_status = 422


class EmptyKnowledgeBase(SwitchboardError):
    code = "knowledge_base_empty"
    http_status = 409


def _components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


def _authorized(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Components:
    components = _components(request)
    key = components.settings.admin_api_key
    if key is None:
        raise AdminDisabled("the admin API is off; set SWITCHBOARD_ADMIN_API_KEY to turn it on")
    expected = f"Bearer {key.get_secret_value()}"
    if authorization is None or not hmac.compare_digest(authorization, expected):
        raise Unauthorized("missing or wrong API key (send 'Authorization: Bearer <key>')")
    return components


AdminDep = Annotated[Components, Depends(_authorized)]


class DocumentOut(BaseModel):
    name: str
    bytes: int
    sha256: str


class IndexOut(BaseModel):
    documents: int
    chunks: int
    seconds: float


class ChangeOut(BaseModel):
    document: DocumentOut | None
    index: IndexOut


def _path(components: Components, name: str) -> Path:
    if not _NAME.match(name) or name in {".", ".."}:
        raise BadRequest(
            "a document name is a plain file name (letters, digits, '.', '_', '-', spaces)"
        )
    if Path(name).suffix.lower() not in DOCUMENT_TYPES:
        raise UnsupportedDocument(
            f"{name!r}: supported types are {', '.join(sorted(DOCUMENT_TYPES))}"
        )
    return components.settings.documents_dir / name


def _describe(path: Path) -> DocumentOut:
    data = path.read_bytes()
    return DocumentOut(name=path.name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


async def _reindex(components: Components) -> IndexOut:
    try:
        report = await components.reindex()
    except ValueError as exc:  # no document has any text left
        raise EmptyKnowledgeBase(f"cannot index the documents: {exc}") from exc
    except OSError as exc:  # e.g. an index baked into a read-only image
        raise IndexNotWritable(
            f"cannot write the index ({exc.strerror or exc}): point "
            "SWITCHBOARD_KNOWLEDGE__INDEX_DIR at a writable folder to change documents here"
        ) from exc
    return IndexOut(documents=report.documents, chunks=report.chunks, seconds=report.seconds)


@router.get("/documents")
async def list_documents(components: AdminDep) -> list[DocumentOut]:
    """The documents in the help-center folder."""
    folder = components.settings.documents_dir
    if not folder.is_dir():
        return []
    return [
        _describe(path)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in DOCUMENT_TYPES
    ]


@router.put(
    "/documents/{name}",
    responses={
        400: {"description": "bad name"},
        409: {"description": "the index or documents folder cannot be written"},
        413: {"description": "too large"},
        415: {"description": "unsupported type"},
        422: {"description": "the document cannot be read"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The file itself (Markdown, text, HTML or PDF), at most 10 MiB.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_document(name: str, request: Request, components: AdminDep) -> ChangeOut:
    """Add or replace a document (the request body is the file), then re-index."""
    path = _path(components, name)
    body = await request.body()
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(f"a document may be at most {MAX_DOCUMENT_BYTES} bytes")
    if not body.strip():
        raise BadRequest("the document is empty")
    await asyncio.to_thread(_check_readable, name, body)
    previous = path.read_bytes() if path.exists() else None
    try:
        write_atomically(path, body)
    except OSError as exc:
        raise IndexNotWritable(f"cannot write {name}: {exc.strerror or exc}") from exc
    try:
        index = await _reindex(components)
    except BaseException:
        # Leave the folder as the index describes it, whatever went wrong.
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, previous)
        raise
    return ChangeOut(document=_describe(path), index=index)


@router.delete(
    "/documents/{name}",
    responses={
        400: {"description": "bad name"},
        404: {"description": "no such document"},
        409: {"description": "the index or documents folder cannot be written"},
        415: {"description": "unsupported type"},
    },
)
async def delete_document(name: str, components: AdminDep) -> ChangeOut:
    """Remove a document, then re-index."""
    path = _path(components, name)
    if not path.is_file():
        raise DocumentNotFound(f"no document named {name!r}")
    previous = path.read_bytes()
    try:
        path.unlink()
    except OSError as exc:
        raise IndexNotWritable(f"cannot remove {name}: {exc.strerror or exc}") from exc
    try:
        index = await _reindex(components)
    except BaseException:
        write_atomically(path, previous)
        raise
    return ChangeOut(document=None, index=index)


def _check_readable(name: str, body: bytes) -> None:
    """Refuse a file the loaders would skip (bad encoding, encrypted or text-less PDF...)."""
    with tempfile.TemporaryDirectory(prefix="switchboard-upload-") as folder:
        staged = Path(folder) / name
        staged.write_bytes(body)
        try:
            load_file(staged, folder)
        except UnreadableDocument as exc:
            raise UnreadableUpload(f"{name}: cannot be read ({exc})") from exc
        except RecursionError:
            raise UnreadableUpload(f"{name}: nested too deeply to read") from None
        except (ValueError, LookupError, OSError) as exc:  # a parser's own fault on odd input
            raise UnreadableUpload(f"{name}: cannot be read ({type(exc).__name__})") from exc


@router.get("/feedback")
async def list_feedback(
    request: Request, components: AdminDep, limit: int = 1000
) -> list[dict[str, Any]]:
    """Thumbs up/down on answers, newest first: conversation id, message id, rating, time."""
    rows: list[dict[str, Any]] = await request.app.state.web.feedback.all(limit)
    return rows


# --- conversations and handoff ---------------------------------------------------------


class HandoffIn(BaseModel):
    reason: str = "asked through the admin API"


class ResolveIn(BaseModel):
    agent: str = "An agent"
    close: bool = False


class ConversationOut(BaseModel):
    id: str
    channel: str
    status: str
    turns: list[dict[str, Any]]


async def _conversation(request: Request, conversation_id: str, webhook: str | None) -> str:
    """Our conversation id: as given, or (with `webhook`) the one that webhook channel's own
    conversation id maps to — what its payloads carry."""
    if webhook is None:
        return conversation_id
    found = await request.app.state.webhooks.find(webhook, conversation_id)
    if found is None:
        raise ConversationNotFound(
            f"webhook channel {webhook!r} has no conversation {conversation_id!r}"
        )
    return str(found)


WebhookQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="The webhook channel whose own conversation id the path names (as in its "
        "payloads); unset: the path is Switchboard's conversation id.",
    ),
]


@router.get("/conversations/{conversation_id}", responses={404: {"description": "unknown"}})
async def get_conversation(
    conversation_id: str, request: Request, components: AdminDep, webhook: WebhookQuery = None
) -> ConversationOut:
    """A conversation's status (bot, pending_human, human, closed) and its redacted turns."""
    conversation_id = await _conversation(request, conversation_id, webhook)
    session, turns = await components.manager.resume(conversation_id)
    return ConversationOut(
        id=session.id,
        channel=session.channel,
        status=session.status,
        turns=[t.to_json() for t in turns],
    )


@router.post(
    "/conversations/{conversation_id}/handoff",
    responses={
        404: {"description": "unknown conversation"},
        409: {"description": "no agent console (Slack support channel)"},
    },
)
async def hand_off(
    conversation_id: str,
    body: HandoffIn,
    request: Request,
    components: AdminDep,
    webhook: WebhookQuery = None,
) -> dict[str, Any]:
    """Hand the conversation to a person (the agents' Slack channel gets a thread)."""
    conversation_id = await _conversation(request, conversation_id, webhook)
    await components.manager.session(conversation_id)  # 404 when unknown
    desk = request.app.state.desk
    if not desk.console:
        raise HandoffUnavailable(
            "no agent console: set SWITCHBOARD_SLACK__SUPPORT_CHANNEL (and the Slack app)"
        )
    done = await desk.request(conversation_id, body.reason, tell_customer=True)
    return {"handed_off": done}


@router.post(
    "/conversations/{conversation_id}/resolve",
    responses={
        404: {"description": "unknown conversation"},
    },
)
async def resolve(
    conversation_id: str,
    body: ResolveIn,
    request: Request,
    components: AdminDep,
    webhook: WebhookQuery = None,
) -> dict[str, Any]:
    """End a person's part: the bot answers again (or, with `close`, the conversation ends)."""
    conversation_id = await _conversation(request, conversation_id, webhook)
    await components.manager.session(conversation_id)
    done = await request.app.state.desk.resolve(conversation_id, body.agent, close=body.close)
    return {"resolved": done}


class IndexNotWritable(SwitchboardError):
    code = "index_not_writable"
    http_status = 409


class HandoffUnavailable(SwitchboardError):
    code = "no_agent_console"
    http_status = 409


# --- background deliveries ---------------------------------------------------------------


@router.get("/deliveries/dead")
async def dead_deliveries(
    request: Request, components: AdminDep, limit: int = 100
) -> list[dict[str, Any]]:
    """Jobs that used up their tries (webhook deliveries, Slack posts), newest first: the job
    (kind, payload, tries), the last error and when it failed."""
    rows: list[dict[str, Any]] = await request.app.state.queue.dead(limit)
    return rows


@router.post(
    "/deliveries/dead/{job_id}/replay", responses={404: {"description": "no such dead job"}}
)
async def replay_delivery(job_id: str, request: Request, components: AdminDep) -> dict[str, Any]:
    """Queue a dead job again, with its tries reset."""
    if not await request.app.state.queue.replay(job_id):
        raise DeliveryNotFound(f"no dead job {job_id!r}")
    return {"replayed": job_id}


class DeliveryNotFound(SwitchboardError):
    code = "delivery_not_found"
    http_status = 404
