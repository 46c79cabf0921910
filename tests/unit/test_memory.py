"""Conversation memory: follow-ups made stand-alone before retrieval, and the running summary
of turns that left the history window (made by the model, redacted, given to the model)."""

from __future__ import annotations

import itertools
from contextlib import aclosing

import pytest

from bot.errors import ModelError
from bot.llm.base import ScriptedModel
from bot.manager import ConversationManager, context_query, looks_like_followup
from bot.sessions import InMemorySessionStore
from bot.settings import Settings
from bot.types import Citation, InboundMessage, Message, Passage
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import default_policy_path, load_policy
from tests.support import FixedRetriever

SHIPPING = Passage("Express costs $14.95.", Citation("Shipping", "shipping.md"), 0.9)
_IDS = itertools.count(1)


def manager(
    model: ScriptedModel, retriever: FixedRetriever, **sessions: object
) -> ConversationManager:
    cfg = Settings(sessions=sessions)  # type: ignore[arg-type]
    policies = PolicyEngine(load_policy(default_policy_path()), PatternRedactor())
    policies.warm_up()
    return ConversationManager(cfg, InMemorySessionStore(cfg.sessions), policies, retriever, model)


async def ask(m: ConversationManager, text: str, cid: str | None) -> Message:
    message = InboundMessage(text, "web", cid, f"m{next(_IDS)}")
    async with aclosing(m.respond(message)) as events:
        final = [e async for e in events][-1]
    assert isinstance(final, Message)
    return final


@pytest.mark.parametrize(
    ("text", "follow"),
    [
        ("and for express shipping?", True),
        ("What about international?", True),
        ("how much?", True),
        ("Can I return it after 40 days?", True),
        ("How long does standard shipping take to reach Ohio?", False),
        ("I would like to know how to reset the password of my account please", False),
    ],
)
def test_followups_are_recognised(text: str, follow: bool) -> None:
    assert looks_like_followup(text) is follow


@pytest.mark.parametrize(
    ("before", "question", "query"),
    [
        ([], "how much is it?", "how much is it?"),
        (["How much is standard shipping?"], "and for express?",
         "How much is standard shipping? and for express?"),
        # A chain of follow-ups keeps its subject, the stand-alone message it started from,
        # and the follow-up just before (what "that" may point at).
        (["How much is standard shipping?", "and for express?"], "what about to canada?",
         "How much is standard shipping? and for express? what about to canada?"),
        (["How much is standard shipping?", "and for express?", "and to alaska?"],
         "what about to canada?",
         "How much is standard shipping? and to alaska? what about to canada?"),
        # A new stand-alone message is the new subject.
        (["How much is standard shipping?", "How do I reset the password of my account?"],
         "how long is the link good for",
         "How do I reset the password of my account? how long is the link good for"),
    ],
)  # fmt: skip
def test_a_followup_is_searched_with_the_subject_of_its_chain(
    before: list[str], question: str, query: str
) -> None:
    assert context_query(question, before) == query


async def test_a_followup_is_rewritten_by_the_model_before_retrieval() -> None:
    model = ScriptedModel(
        [["Standard shipping is $5.95."], ["How much does express shipping cost?"], ["$14.95."]]
    )
    retriever = FixedRetriever([SHIPPING])
    m = manager(model, retriever)
    first = await ask(m, "How much does standard shipping cost me?", None)
    second = await ask(m, "and for express?", first.conversation_id)
    assert retriever.queries == [
        "How much does standard shipping cost me?",
        "How much does express shipping cost?",
    ]
    rewrite = model.prompts[1]
    assert "stand-alone question" in rewrite[0].content
    assert rewrite[1].content.endswith(
        "Customer: How much does standard shipping cost me?\n"
        "Assistant: Standard shipping is $5.95.\nCustomer: and for express?"
    )
    assert second.text == "$14.95."
    assert model.prompts[2][-1].content == "and for express?"  # the model sees the original


async def test_concat_mode_and_a_failed_rewrite_prefix_the_previous_question() -> None:
    retriever = FixedRetriever([SHIPPING])
    model = ScriptedModel([["A."], ["B."]])
    m = manager(model, retriever, rewrite_followups="concat")
    first = await ask(m, "How much does standard shipping cost me?", None)
    await ask(m, "and for express?", first.conversation_id)
    assert retriever.queries[-1] == "How much does standard shipping cost me? and for express?"

    retriever = FixedRetriever([SHIPPING])
    model = ScriptedModel([["A."], ModelError("down"), ["B."]])
    m = manager(model, retriever)
    first = await ask(m, "How much does standard shipping cost me?", None)
    second = await ask(m, "and for express?", first.conversation_id)
    assert retriever.queries[-1] == "How much does standard shipping cost me? and for express?"
    assert second.text == "B."


async def test_the_running_summary_is_made_redacted_and_given_to_the_model() -> None:
    model = ScriptedModel(
        [
            ["Returns take 30 days."],
            ["Refunds take 5 days."],
            ["The customer (mail: jo.smith@example.org) asked about returns and refunds."],
            ["Yes."],
            ["Still about refunds."],
        ]
    )
    m = manager(
        model, FixedRetriever([SHIPPING]), rewrite_followups="off", history_turns=2,
        summarize_every=2,
    )  # fmt: skip
    first = await ask(m, "How long do I have to return a jacket?", None)
    cid = first.conversation_id
    await ask(m, "How long does the refund take after that?", cid)
    session = await m.session(cid)
    assert session.meta["summary"] == (
        "The customer (mail: <EMAIL_ADDRESS>) asked about returns and refunds."
    )
    summarized = model.prompts[2]
    assert "Customer: How long do I have to return a jacket?" in summarized[1].content
    await ask(m, "Can I get store credit instead of a refund?", cid)
    system = model.prompts[3][0].content
    assert "Earlier in this conversation: The customer (mail: <EMAIL_ADDRESS>)" in system
    # Two more turns left the window: the summary is folded forward, the earlier one given.
    again = model.prompts[4][1].content
    assert again.startswith("Summary so far: The customer (mail: <EMAIL_ADDRESS>)")
    assert "Customer: How long does the refund take after that?" in again
    assert (await m.session(cid)).meta["summary"] == "Still about refunds."
