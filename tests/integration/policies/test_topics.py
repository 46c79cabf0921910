"""Blocked topics by example sentences, matched with the real MiniLM embeddings."""

from __future__ import annotations

import pytest

from knowledge.embeddings import HashingEmbedder, MiniLMEmbedder
from policies.base import Context
from policies.schema import default_policy_path, load_policy
from policies.topics import StartedTopicCheck, Topic, TopicRules, TopicStage
from policies.verdicts import Allow, Block

pytestmark = pytest.mark.integration

IN = Context("input")


@pytest.fixture(scope="module")
def shipped() -> TopicStage:
    """The topics the bundled policy file declares (legal and medical advice)."""
    policy = load_policy(default_policy_path())
    stage = TopicStage(policy.topics, policy.messages.blocked, MiniLMEmbedder())
    stage.warm_up()
    return stage


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("my boss fired me without notice, is that even legal?", "legal_advice"),
        ("Should I get a lawyer before signing the lease?", "legal_advice"),
        ("what should I take for a migraine", "medical_advice"),
        ("Hi. Quick one: can I take ibuprofen with my antibiotics?", "medical_advice"),
        ("Where is my parcel?", None),
        ("How do I return a jacket that doesn't fit?", None),
        ("My card was charged twice, can I get a refund?", None),
        ("Do you sell first-aid kits for hiking?", None),
        ("Can I return a medicine cabinet?", None),
        ("Is your return policy legal in California?", None),
    ],
)
def test_message_is_blocked_when_close_to_a_declared_topic(
    shipped: TopicStage, text: str, topic: str | None
) -> None:
    verdict = shipped.check(text, IN)
    if topic is None:
        assert verdict == Allow(text)
    else:
        assert isinstance(verdict, Block)
        assert [(f.stage, f.rule, f.action) for f in verdict.findings] == [
            ("topics", topic, "block")
        ]


def test_topic_reply_is_its_own_when_the_file_gives_one() -> None:
    rules = TopicRules(
        blocked=[Topic(name="competitors", examples=["Is Acme cheaper than you?"], reply="Ask us!")]
    )
    stage = TopicStage(rules, "default reply", MiniLMEmbedder())
    stage.warm_up()
    verdict = stage.check("are acme's prices lower than yours", IN)
    assert isinstance(verdict, Block) and verdict.reply == "Ask us!"
    assert isinstance(stage.check("when do you open on sunday", IN), Allow)


@pytest.mark.parametrize(
    ("text", "blocked"),
    [
        ("what should I take for a migraine", True),
        ("Should I get a lawyer before signing the lease?", True),
        ("Where is my parcel?", False),
        ("Do you sell first-aid kits for hiking?", False),
    ],
)
def test_a_started_check_judges_as_the_stage_does(
    shipped: TopicStage, text: str, blocked: bool
) -> None:
    started = shipped.start(text)
    assert isinstance(started, StartedTopicCheck)
    verdict = started.check(text, IN)
    assert verdict == shipped.check(text, IN)
    assert isinstance(verdict, Block) is blocked


def test_a_started_check_remembers_the_vector_only_for_text_left_unchanged() -> None:
    embedder = MiniLMEmbedder()
    stage = TopicStage(load_policy(default_policy_path()).topics, "no", embedder)
    stage.warm_up()
    written = "Hi, I'm Tuomo Virtanen: what should I take for a migraine?"
    redacted = "Hi, I'm <PERSON>: what should I take for a migraine?"
    started = stage.start(written)
    # The PII stage replaced the name meanwhile: judged on the message as written (the same
    # topic), and the vector of the un-redacted text is not kept for anyone to ask for.
    assert isinstance(started.check(redacted, IN), Block)
    assert written not in embedder._recent and redacted not in embedder._recent
    clean = "Where is my parcel? It was due on Monday."
    assert isinstance(stage.start(clean).check(clean, IN), Allow)
    assert list(embedder._recent) == [clean]  # the retriever's ask for it is a cache hit


def test_a_stage_without_a_background_embedder_starts_as_itself() -> None:
    rules = TopicRules(blocked=[Topic(name="x", examples=["example"])])
    stage = TopicStage(rules, "no", HashingEmbedder())
    stage.warm_up()
    assert stage.start("a message") is stage
    inactive = TopicStage(TopicRules(), "no", MiniLMEmbedder())  # no topics: nothing to start
    assert inactive.start("a message") is inactive
