"""The `topics` stage: subjects the bot must not take on, declared by example sentences.

Each blocked topic lists a few examples ("Can I sue my landlord?"); a message whose MiniLM
embedding is at least `threshold` cosine-similar to an example is blocked with the topic's
reply. Examples are embedded once, at warm-up.

The embedding is most of the input policy's time (9-20 ms for 300 characters on 2 cores,
about as long as the PII stage). So the engine calls `start` with the message as written
before the first input stage runs, and the embedding is computed on the embedding thread
while the stages before this one run on the policy worker. That vector is judged, even when
the PII stage has since replaced a name in the text: the topic is the same, and the vector
stays in memory. It is kept for the retriever only when the text reached this stage
unchanged (nothing un-redacted is remembered).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from knowledge.embeddings import Embedder, Vectors
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


@runtime_checkable
class BackgroundEmbedder(Protocol):
    """An embedder that can start one text on its own thread (`MiniLMEmbedder`)."""

    def embed_soon(self, text: str) -> Future[Vectors]: ...

    def remember(self, text: str, vector: Vectors) -> None: ...


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

    def start(self, text: str) -> TopicStage | StartedTopicCheck:
        """This stage's check of `text`, its embedding begun now (see the module's doc).

        The stage itself (checking when called) where nothing can be started early.
        """
        if (
            not self.active
            or not text.strip()
            or not isinstance(self._embedder, BackgroundEmbedder)
        ):
            return self
        try:
            return StartedTopicCheck(self, self._embedder, text, self._embedder.embed_soon(text))
        except Exception:  # the model failed to load: `check` reports it when its turn comes
            return self

    def score(self, text: str) -> tuple[int, float]:
        """The closest topic's index and its similarity to `text`.

        One embedding of the whole message: embedding each sentence as well (to catch a
        topic buried in a long message) cost 166 ms a 300-character message on 2 cores,
        against 30 ms for the message alone.
        """
        assert self._embedder is not None
        return self.closest(self._embedder.embed([text]))

    def closest(self, vector: Vectors) -> tuple[int, float]:
        """The closest topic's index and its similarity to an embedded message."""
        assert self._examples is not None
        similarity = vector @ self._examples.T
        row, column = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        return self._topic_of[int(column)], float(similarity[row, column])

    def check(self, text: str, context: Context) -> Verdict:
        if not self.active or not text.strip():
            return Allow(text)
        return self.judge(text, lambda: self.score(text))

    def judge(self, text: str, score: Callable[[], tuple[int, float]]) -> Verdict:
        try:
            topic_index, similarity = score()
        except Exception as exc:  # degrade: an unchecked topic is logged, not fatal
            finding = Finding(self.name, type(exc).__name__, "error")
            return Allow(text, findings=(finding,))
        if similarity < self._rules.threshold:
            return Allow(text)
        topic = self._rules.blocked[topic_index]
        finding = Finding(self.name, topic.name, "block", score=round(similarity, 3))
        return Block(f"topic {topic.name}", topic.reply or self._reply, (finding,))


class StartedTopicCheck:
    """A topic check whose embedding of the message as written is under way."""

    def __init__(
        self, stage: TopicStage, embedder: BackgroundEmbedder, written: str, vector: Future[Vectors]
    ) -> None:
        self._stage = stage
        self._embedder = embedder
        self._written = written
        self._vector = vector

    @property
    def name(self) -> str:
        return self._stage.name

    def warm_up(self) -> None:
        self._stage.warm_up()

    def check(self, text: str, context: Context) -> Verdict:
        if not text.strip():
            return Allow(text)
        return self._stage.judge(text, lambda: self._score(text))

    def _score(self, text: str) -> tuple[int, float]:
        vector = self._vector.result()
        if text == self._written:  # nothing replaced: the retriever may ask for it next
            self._embedder.remember(text, vector)
        return self._stage.closest(vector)

    def abandon(self) -> None:
        """An earlier stage ended the check: the embedding is not needed."""
        self._vector.cancel()
