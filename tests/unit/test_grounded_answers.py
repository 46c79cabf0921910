"""The grounding check in the turn: sentences are released once supported; unsupported
ones are dropped, regenerated once with a stricter instruction, or referred to the
articles, as the policy file says; the audit records it."""

from __future__ import annotations

import logging
from contextlib import aclosing

import pytest

from bot.llm.base import ScriptedModel
from bot.manager import ConversationManager
from bot.sessions import InMemorySessionStore
from bot.settings import Settings
from bot.types import Citation, InboundMessage, Message, Passage, ReplyEvent, Token
from knowledge.embeddings import HashingEmbedder
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import parse_policy
from tests.support import FixedRetriever

RETURNS = Passage(
    "Unused items can be returned within 30 days of delivery. Return shipping is free.",
    Citation("Returns policy", "returns-policy.md"),
    0.9,
)


def manager(model: ScriptedModel, action: str) -> ConversationManager:
    # Similarity 0: these tests are about the numbers (the hashing embedder stands in for
    # MiniLM, which tests/integration/policies/test_grounding_minilm.py uses).
    policy = parse_policy(
        f"version: 1\ngrounding:\n  min_similarity: 0\n  on_unsupported: {action}\n"
    )
    # The model writes the answer (quoted answers: test_quotes.py).
    cfg = Settings(
        sessions={"rewrite_followups": "off", "summarize": False}, answers={"mode": "generate"}
    )
    m = ConversationManager(
        cfg,
        InMemorySessionStore(cfg.sessions),
        PolicyEngine(policy, PatternRedactor()),
        FixedRetriever([RETURNS]),
        model,
    )
    m.policies.warm_up()
    m.embedder = HashingEmbedder()
    return m


async def turn(m: ConversationManager) -> tuple[list[str], Message]:
    events: list[ReplyEvent] = []
    async with aclosing(m.respond(InboundMessage("How long do I have?", "web"))) as stream:
        events = [e async for e in stream]
    final = events[-1]
    assert isinstance(final, Message)
    return [e.text for e in events if isinstance(e, Token)], final


async def test_supported_sentences_are_released_whole_and_numbers_split_across_pieces_wait() -> (
    None
):
    model = ScriptedModel([["You have 3", "0 da", "ys. Return ship", "ping is free."]])
    tokens, final = await turn(manager(model, "drop"))
    assert tokens == ["You have 30 days. ", "Return shipping is free."]
    assert final.text == "You have 30 days. Return shipping is free." and final.kind == ""


async def test_drop_removes_the_unsupported_sentence(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "switchboard.audit")
    model = ScriptedModel([["You have 30 days. ", "A refund takes 9 weeks. ", "Shipping is free."]])
    tokens, final = await turn(manager(model, "drop"))
    assert final.text == "You have 30 days. Shipping is free."
    assert "9 weeks" not in "".join(tokens)
    audit = [r.getMessage() for r in caplog.records if '"stage": "grounding"' in r.getMessage()]
    assert audit and '"rule": "unsupported_number"' in audit[0]
    assert '"action": "rewrite"' in audit[0] and "9 weeks" not in audit[0]


async def test_regenerate_goes_on_once_from_what_was_shown_with_a_stricter_instruction() -> None:
    model = ScriptedModel(
        [
            ["You have 30 days. ", "It costs $4.99 to return. ", "never shown."],
            ["Return shipping is free. ", "Or 12 euros."],
        ]
    )
    _, final = await turn(manager(model, "regenerate"))
    assert final.text == "You have 30 days. Return shipping is free."
    retry = model.prompts[1]
    assert "these are not in them: $4.99" in retry[0].content
    assert retry[-1].role == "assistant" and retry[-1].content == "You have 30 days. "
    assert len(model.prompts) == 2  # once: what is still unsupported is dropped


async def test_refer_points_to_the_articles_and_offers_a_person() -> None:
    model = ScriptedModel([["You have 30 days. ", "Refunds take 14 weeks. ", "More."]])
    _, final = await turn(manager(model, "refer"))
    assert final.text.startswith("You have 30 days.")
    assert "here are the ones about your question: Returns policy" in final.text
    assert "14 weeks" not in final.text and len(model.prompts) == 1


async def test_an_answer_with_nothing_supported_says_it_does_not_know() -> None:
    model = ScriptedModel([["You have 90 days."], ["It is 60 days."]])
    tokens, final = await turn(manager(model, "regenerate"))
    assert final.kind == "no_answer"
    assert "don't know" in final.text.lower() and "90" not in "".join(tokens)
