"""The turn pipeline with honest fakes: scripted model, regex redactor, fixed passages.

The same paths run with the real parts in tests/integration/test_server.py and
test_default_model.py.
"""

from __future__ import annotations

import itertools
import json
import logging
from contextlib import aclosing

import pytest

from bot.errors import BadRequest, ConversationNotFound, ModelError
from bot.llm.base import ScriptedModel
from bot.manager import ConversationManager
from bot.sessions import InMemorySessionStore
from bot.settings import Settings
from bot.types import Citation, InboundMessage, Message, Notice, Passage, ReplyEvent, Token
from knowledge.embeddings import HashingEmbedder
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import default_policy_path, load_policy
from tests.support import FixedRetriever

RETURNS = Passage(
    "Unused items can be returned within 30 days.",
    Citation("Returns Policy", "returns-policy.md"),
    0.8,
)
REFUNDS = Passage("Refunds take 5 business days.", Citation("Refunds", "refunds.md"), 0.6)


def _manager(
    model: ScriptedModel, retriever: FixedRetriever | None = None, **settings: object
) -> ConversationManager:
    # Scripted answers are consumed in order: the memory's side questions (follow-up
    # rewriting, summaries) are off unless a test turns them on (test_memory.py does).
    settings.setdefault("sessions", {"rewrite_followups": "off", "summarize": False})
    cfg = Settings(max_message_chars=200, **settings)  # type: ignore[arg-type]
    # The hashing embedder stands in for MiniLM in the topics stage (real one: integration).
    policies = PolicyEngine(
        load_policy(default_policy_path()), PatternRedactor(), embedder=HashingEmbedder()
    )
    policies.warm_up()
    return ConversationManager(
        cfg,
        InMemorySessionStore(cfg.sessions),
        policies,
        retriever or FixedRetriever([RETURNS, REFUNDS, RETURNS]),
        model,
    )


_IDS = itertools.count(1)


async def _run(manager: ConversationManager, text: str, cid: str | None = None) -> list[ReplyEvent]:
    message = InboundMessage(text, "test", cid, f"m{next(_IDS)}")  # each send its own id
    async with aclosing(manager.respond(message)) as events:
        return [event async for event in events]


async def test_tokens_then_final_message_with_citations_when_answered() -> None:
    model = ScriptedModel([["You have ", "30 days. ", "Keep the ", "receipt."]])
    events = await _run(_manager(model), "How long to return?")
    tokens = [e.text for e in events if isinstance(e, Token)]
    final = events[-1]
    assert isinstance(final, Message)
    assert final.text == "".join(tokens) == "You have 30 days. Keep the receipt."
    # Only the article the answer's words come from ("Keep the receipt." is in none).
    assert final.citations == (RETURNS.citation,)
    assert final.in_reply_to == "m1"
    assert "30 days" in model.prompts[0][0].content  # passages reached the system prompt


async def test_pii_never_reaches_model_store_client_or_logs_when_present(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    model = ScriptedModel(
        [
            [
                "Thanks! We wrote to ",
                "jane@",
                "example.com",
                " and charged ",
                "4111 1111 ",
                "1111 1111",
                ". Anything else?",
            ]
        ]
    )
    manager = _manager(model)
    events = await _run(manager, "I am jane@example.com, card 4111 1111 1111 1111")
    final = events[-1]
    assert isinstance(final, Message)
    streamed = "".join(e.text for e in events if isinstance(e, Token))
    stored = await manager.store.history(final.conversation_id)
    logs = "\n".join(record.getMessage() for record in caplog.records)
    seen = streamed + final.text + repr(stored) + repr(model.prompts) + logs
    for secret in ("jane@", "example.com", "4111 1111", "1111 1111"):  # not "4111": timestamps
        assert secret not in seen
    assert stored[0].text == "I am <EMAIL_ADDRESS>, card <CREDIT_CARD>"
    lines = [r.getMessage() for r in caplog.records if r.name == "switchboard.audit"]
    [turn_log] = [line for line in lines if line.startswith("turn ")]
    audit = json.loads(turn_log.removeprefix("turn "))
    assert audit["conversation_id"] == final.conversation_id
    assert sorted(audit["pii_in"]) == ["CREDIT_CARD", "EMAIL_ADDRESS"]
    # One policy event per entity type, per point, counts and types only.
    events = [json.loads(line.removeprefix("policy ")) for line in lines if "policy " in line]
    found = {(e["point"], e["entity_type"], e["count"]) for e in events if e["stage"] == "pii"}
    assert {("input", "EMAIL_ADDRESS", 1), ("input", "CREDIT_CARD", 1)} <= found


async def test_history_reaches_model_when_conversation_continues() -> None:
    model = ScriptedModel([["First answer."], ["Second answer."]])
    manager = _manager(model)
    first = (await _run(manager, "first question"))[-1]
    assert isinstance(first, Message)
    await _run(manager, "second question", first.conversation_id)
    contents = [m.content for m in model.prompts[1][1:]]
    assert contents == ["first question", "First answer.", "second question"]


async def test_fallback_reply_and_notice_when_model_fails() -> None:
    manager = _manager(ScriptedModel([ModelError("boom")]))
    events = await _run(manager, "hello")
    assert any(isinstance(e, Notice) and e.code == "model_unavailable" for e in events)
    final = events[-1]
    assert isinstance(final, Message)
    assert final.text == manager.policies.messages("test").fallback
    stored = await manager.store.history(final.conversation_id)
    assert [t.role for t in stored] == ["user", "assistant"]


async def test_held_text_then_fallback_apart_when_model_fails_mid_answer() -> None:
    model = ScriptedModel([["You have 30 days", ModelError("connection lost")]])
    manager = _manager(model)
    events = await _run(manager, "how long?")
    final = events[-1]
    assert isinstance(final, Message)
    assert final.text == "You have 30 days\n\n" + manager.policies.messages("test").fallback
    streamed = "".join(e.text for e in events if isinstance(e, Token))
    assert streamed == final.text


async def test_passage_pii_is_replaced_before_the_prompt_unless_the_policy_allows_it() -> None:
    contact = Passage(
        "Call +1 555 0100 or write to support@northwind.example; "
        "our manager's cell is 415 555 0199 and mail jo@northwind.example.",
        Citation("Contact us", "contact-us.md"),
        0.7,
    )
    model = ScriptedModel([["Call us."]])
    policy = load_policy(default_policy_path())
    policy.pii.allow.extend(["+1 555 0100", "support@northwind.example"])
    policies = PolicyEngine(policy, PatternRedactor(policy.pii), embedder=HashingEmbedder())
    policies.warm_up()
    cfg = Settings()
    manager = ConversationManager(
        cfg, InMemorySessionStore(cfg.sessions), policies, FixedRetriever([contact]), model
    )
    await _run(manager, "how do I reach you?")
    system = model.prompts[0][0].content
    assert "+1 555 0100" in system and "support@northwind.example" in system  # allowed
    assert "415 555 0199" not in system and "jo@northwind.example" not in system
    assert "<PHONE_NUMBER>" in system and "<EMAIL_ADDRESS>" in system


async def test_says_it_does_not_know_without_asking_the_model_when_confidence_is_low(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    retriever = FixedRetriever([RETURNS], confidence=0.2, threshold=0.6)
    manager = _manager(ScriptedModel([]), retriever)  # any model call fails the test
    events = await _run(manager, "What's the capital of Australia?")
    final = events[-1]
    assert isinstance(final, Message)
    assert final.text == manager.policies.messages("test").no_answer
    assert final.citations == ()
    assert [e.text for e in events if isinstance(e, Token)] == [final.text]
    stored = await manager.store.history(final.conversation_id)
    assert [t.role for t in stored] == ["user", "assistant"]
    [turn_log] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "switchboard.audit" and r.getMessage().startswith("turn ")
    ]
    audit = json.loads(turn_log.removeprefix("turn "))
    assert audit["abstained"] is True and audit["confidence"] == 0.2


@pytest.mark.parametrize(
    ("confidence", "threshold", "abstain"),
    [(0.7, 0.6, True), (0.2, 0.6, False), (None, 0.6, True), (0.2, None, True)],
)
async def test_answers_when_confident_or_abstention_is_off_or_has_no_signal(
    confidence: float | None, threshold: float | None, abstain: bool
) -> None:
    retriever = FixedRetriever([RETURNS], confidence=confidence, threshold=threshold)
    settings = {"knowledge": {"abstain": abstain}}
    manager = _manager(ScriptedModel([["You have 30 days."]]), retriever, **settings)
    final = (await _run(manager, "How long to return?"))[-1]
    assert isinstance(final, Message)
    assert final.text == "You have 30 days."


async def test_answer_without_passages_when_retrieval_fails() -> None:
    model = ScriptedModel([["I don't know."]])
    manager = _manager(model, FixedRetriever([], error=RuntimeError("index gone")))
    final = (await _run(manager, "hello"))[-1]
    assert isinstance(final, Message) and final.citations == ()
    assert "No relevant article" in model.prompts[0][0].content


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty_message"), ("  \n ", "empty_message"), ("x" * 201, "message_too_long")],
)
async def test_bad_request_and_nothing_stored_when_text_is_unusable(text: str, code: str) -> None:
    manager = _manager(ScriptedModel([]))
    with pytest.raises(BadRequest) as caught:
        await _run(manager, text)
    assert caught.value.code == code
    assert isinstance(manager.store, InMemorySessionStore)
    assert manager.store._sessions == {}


async def test_conversation_not_found_when_id_is_unknown() -> None:
    with pytest.raises(ConversationNotFound):
        await _run(_manager(ScriptedModel([])), "hi", "no-such-id")


async def test_closing_early_stores_question_and_frees_lock_when_client_leaves() -> None:
    model = ScriptedModel([["One. ", "Two. ", "Three. "], ["Again."]])
    manager = _manager(model)
    stream = manager.respond(InboundMessage("hi", "test"))
    async with aclosing(stream):
        async for event in stream:
            if isinstance(event, Token):
                break
    (session_id,) = manager.store._sessions  # type: ignore[attr-defined]
    assert [t.role for t in await manager.store.history(session_id)] == ["user"]
    final = (await _run(manager, "again", session_id))[-1]  # the lock was released
    assert isinstance(final, Message)
