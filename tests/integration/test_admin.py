"""The admin API on the real server: documents go in and out, and retrieval follows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.app import create_app
from bot.components import Components
from bot.llm.base import ScriptedModel
from bot.sessions import InMemorySessionStore
from bot.settings import LLMSettings, Settings
from knowledge.embeddings import MiniLMEmbedder
from knowledge.ingest import ingest
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import default_policy_path, load_policy
from tests.support import FixedRetriever, LiveServer, live_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GIFT_CARDS = b"""# Gift cards

Northwind gift cards never expire. You can redeem a gift card at checkout by entering its
16-character code in the "Gift card" field; any balance left stays on the card.
"""


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("data")
    documents = data / "documents"
    documents.mkdir()
    for name in ("returns-policy.md", "refunds.md"):
        shutil.copy(ROOT / "demo" / "kb" / name, documents / name)
    ingest(documents, data / "index", MiniLMEmbedder("builtin"), progress=False)
    settings = Settings(
        data_dir=data,
        admin_api_key=KEY,
        llm=LLMSettings(model=str(tiny_model_dir), max_new_tokens=4),
        knowledge={"abstain": False},  # no abstention model fitted for these three articles
    )
    with live_server(create_app(settings)) as live:
        yield live


def _sources(server: LiveServer, question: str) -> list[str]:
    reply = httpx.post(f"{server.http}/api/messages", json={"text": question}, timeout=60)
    assert reply.status_code == 200, reply.text
    return [citation["source"] for citation in reply.json()["citations"]]


def _names(server: LiveServer) -> list[str]:
    listing = httpx.get(f"{server.http}/admin/documents", headers=AUTH)
    assert listing.status_code == 200, listing.text
    return [document["name"] for document in listing.json()]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_unauthorized_when_the_key_is_missing_or_wrong(
    server: LiveServer, headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/admin/documents"), ("DELETE", "/admin/documents/refunds.md")):
        reply = httpx.request(method, server.http + path, headers=headers)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "unauthorized"
    assert "refunds.md" in _names(server)  # nothing was deleted


def test_uploaded_document_is_listed_and_answers_then_gone_when_deleted(
    server: LiveServer,
) -> None:
    assert _names(server) == ["refunds.md", "returns-policy.md"]
    assert "gift-cards.md" not in _sources(server, "Do Northwind gift cards expire?")

    put = httpx.put(
        f"{server.http}/admin/documents/gift-cards.md", content=GIFT_CARDS, headers=AUTH, timeout=60
    )
    assert put.status_code == 200, put.text
    assert put.json()["document"]["bytes"] == len(GIFT_CARDS)
    assert put.json()["index"]["documents"] == 3
    assert _names(server) == ["gift-cards.md", "refunds.md", "returns-policy.md"]
    assert _sources(server, "Do Northwind gift cards expire?")[0] == "gift-cards.md"

    gone = httpx.delete(f"{server.http}/admin/documents/gift-cards.md", headers=AUTH, timeout=60)
    assert gone.status_code == 200, gone.text
    assert gone.json()["index"]["documents"] == 2
    assert "gift-cards.md" not in _names(server)
    assert "gift-cards.md" not in _sources(server, "Do Northwind gift cards expire?")


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("virus.exe", b"MZ", 415, "unsupported_document"),
        (".hidden.md", b"# x\n\ntext", 400, "bad_request"),
        ("empty.md", b"  \n", 400, "bad_request"),
        ("huge.md", b"x" * (10 * 1024 * 1024 + 1), 413, "document_too_large"),
        ("latin1.txt", "Caf\u00e9 cr\u00e8me".encode("latin-1"), 422, "unreadable_document"),
        ("broken.pdf", b"%PDF-1.7\nnot really a pdf", 422, "unreadable_document"),
        (
            "deep.html",
            b"<div>" * 100_000 + b"text" + b"</div>" * 100_000,
            422,
            "unreadable_document",
        ),
    ],
)
def test_bad_upload_is_refused_and_nothing_changes(
    server: LiveServer, name: str, body: bytes, status: int, code: str
) -> None:
    before = _names(server)
    reply = httpx.put(f"{server.http}/admin/documents/{name}", content=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code
    assert reply.json()["error"]["message"]
    assert _names(server) == before


def test_an_index_that_cannot_be_written_refuses_the_upload_and_leaves_no_file(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index baked into a read-only image (the compose file's): 409 with what to do, and
    the documents folder as the index describes it. (Root writes through file modes, so the
    read-only file system is what the fake stands for; the write path is the real one.)"""
    import errno

    components = server.config.app.state.components  # type: ignore[attr-defined]

    async def read_only() -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(components, "reindex", read_only)
    before = _names(server)
    reply = httpx.put(f"{server.http}/admin/documents/gift.md", content=GIFT_CARDS, headers=AUTH)
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "index_not_writable"
    assert "INDEX_DIR" in reply.json()["error"]["message"]
    assert _names(server) == before


def test_deleting_an_unknown_document_is_not_found(server: LiveServer) -> None:
    reply = httpx.delete(f"{server.http}/admin/documents/nope.md", headers=AUTH)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "document_not_found"


def test_admin_api_is_off_when_no_key_is_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    policies = PolicyEngine(load_policy(default_policy_path()), PatternRedactor())
    parts = Components(
        settings,
        InMemorySessionStore(settings.sessions),
        policies,
        FixedRetriever([]),
        ScriptedModel([]),
    )
    with live_server(create_app(settings, parts)) as live:
        reply = httpx.get(f"{live.http}/admin/documents", headers=AUTH)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "admin_disabled"
    assert "SWITCHBOARD_ADMIN_API_KEY" in reply.json()["error"]["message"]
