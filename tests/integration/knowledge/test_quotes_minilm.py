"""Quoted answers through the real server: real MiniLM, presidio, Redis, the demo help center,
a websocket and the REST channel. Every answer is word for word the help center's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from websockets.sync.client import connect

from bot.app import create_app
from bot.quotes import is_quoted, strip_markup
from bot.types import Citation, Passage
from knowledge.loaders import load_folder
from tests.conftest import DEMO_KB
from tests.support import LiveServer, demo_settings, live_server, ws_turn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, demo_index: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("data")
    # The tiny model writes nonsense: nothing it says may reach a quoted answer.
    settings = demo_settings(tiny_model_dir, demo_index, redis_url, data, "sbquote:")
    assert settings.answers.mode == "quote"  # the default
    with live_server(create_app(settings)) as live:
        yield live


@pytest.fixture(scope="module")
def help_center() -> list[Passage]:
    return [Passage(doc.text, Citation(doc.title, doc.source), 1.0) for doc in load_folder(DEMO_KB)]


@pytest.mark.parametrize(
    ("question", "fact", "articles"),
    [
        # (two articles state the return window: either may be quoted)
        ("hey how long do i have to send stuff back", "30 days",
         {"returns-policy.md", "changing-or-cancelling-an-order.md"}),
        ("how much is shiping and how long does it take", "$5.95",
         {"shipping-options-and-times.md"}),
        ("forgot my pasword", "Forgot password?", {"creating-an-account-and-password-reset.md"}),
        ("I paid with a gift card and returned the item. where does my money go?",
         "returned to that gift card", {"refunds.md"}),
    ],
)  # fmt: skip
def test_a_question_gets_the_articles_own_sentences_and_only_their_citation(
    server: LiveServer, help_center: list[Passage], question: str, fact: str, articles: set[str]
) -> None:
    with connect(server.ws) as ws:
        tokens, final, _ = ws_turn(ws, question)
    assert final["type"] == "message", final
    text = final["text"]
    assert text == "".join(tokens).strip()
    assert fact in text, text
    body = text.split("\n\nI'm not sure")[0]  # the doubt, when there is one, is the bot's
    assert is_quoted(body, help_center), text
    assert "<PERSON>" not in text and "**" not in text
    cited = [c["source"] for c in final["citations"]]
    assert len(cited) == 1 and cited[0] in articles, cited  # the one article quoted
    quoted_from = [p for p in help_center if p.citation.source == cited[0]]
    assert is_quoted(body, quoted_from), "every sentence comes from the cited article"
    assert "**" not in final["citations"][0]["title"]


def test_a_question_the_help_center_does_not_answer_is_declined(server: LiveServer) -> None:
    with connect(server.ws) as ws:
        _, final, _ = ws_turn(ws, "Can you recommend a good lasagna recipe?")
    assert final["citations"] == []
    assert final["text"].startswith("I don't know") and "talk to a person" in final["text"]


def test_help_center_words_reach_the_customer_and_redis_unredacted(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    reply = httpx.post(
        server.http + "/api/messages",
        json={"text": "can gift cards be exchanged for cash?"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert "Gift cards" in answer["text"] and "<PERSON>" not in answer["text"]
    stored = clean_redis.lrange(f"sbquote:conv:{answer['conversation_id']}:turns", 0, -1)
    assert "Gift cards" in json.loads(stored[-1])["text"]
    assert strip_markup(answer["text"]) == answer["text"]


def test_a_follow_up_is_answered_from_the_same_article(server: LiveServer) -> None:
    with connect(server.ws) as ws:
        _, first, frames = ws_turn(ws, "do you sell gift cards?")
        _, second, _ = ws_turn(ws, "do they expire?", "c2")
    assert first["citations"][0]["source"] == "payment-methods.md"
    assert second["conversation_id"] == first["conversation_id"]
    assert "never expire" in second["text"], second["text"]
    assert frames


def test_a_follow_up_without_a_subject_takes_the_conversations(server: LiveServer) -> None:
    """ "the link" is the password reset link after a password question; a chained follow-up
    keeps the conversation's subject; a change of subject is answered on its own."""
    with connect(server.ws) as ws:
        _, first, _ = ws_turn(ws, "cant log in, forgot my password")
        _, link, _ = ws_turn(ws, "how long is the link good for", "l2")
        _, other, _ = ws_turn(ws, "do you take paypal?", "l3")
        # Off-topic in the middle of a conversation: the conversation does not lift it.
        _, lasagna, _ = ws_turn(ws, "Can you recommend a good lasagna recipe?", "l4")
    assert "Forgot password" in first["text"], first["text"]
    assert "24 hours" in link["text"] and "7 days" not in link["text"], link["text"]
    assert "PayPal" in other["text"], other["text"]
    assert other["citations"][0]["source"] == "payment-methods.md", other["citations"]
    assert lasagna["text"].startswith("I don't know") and lasagna["citations"] == [], lasagna
    with connect(server.ws) as ws:
        ws_turn(ws, "how much is standard shipping?")
        _, express, _ = ws_turn(ws, "and for express?", "s2")
    assert "$14.95" in express["text"], express["text"]
