"""The `handoff` stage: when a conversation should go to a person.

Three triggers: the customer asks for a person ("can I talk to a human?"), the bot said
"I don't know" `after_no_answers` times in a row, or `after_blocks` of the customer's
messages were blocked. This stage only decides and says why (`Allow.handoff`); moving the
conversation to an agent (Slack) is the connectors' job.
"""

from __future__ import annotations

import re

from pydantic import Field

from policies.base import Context, Strict
from policies.pii_rules import NonEmptyText
from policies.verdicts import Allow, Finding, Verdict

ASKED = "asked for a person"

DEFAULT_PHRASES = (
    "talk to a human",
    "talk to a person",
    "talk to someone",
    "speak to a human",
    "speak to a person",
    "speak to someone",
    "speak with someone",
    "real person",
    "human agent",
    "live agent",
    "customer service agent",
    "talk to an agent",
    "speak to an agent",
    "speak with an agent",
    "talk to a representative",
    "speak to a representative",
)


class HandoffRules(Strict):
    """When the bot hands a conversation to a person."""

    enabled: bool = True
    # Phrases meaning "let me talk to a person" (case and spacing ignored, whole words).
    phrases: list[NonEmptyText] = Field(default_factory=lambda: list(DEFAULT_PHRASES))
    # Hand off after this many "I don't know" answers in a row (0: never).
    after_no_answers: int = Field(2, ge=0)
    # Hand off after this many blocked messages in one conversation (0: never).
    after_blocks: int = Field(3, ge=0)


class HandoffStage:
    """Flags a message that asks for a person; `due` checks the counting triggers."""

    name = "handoff"

    def __init__(self, rules: HandoffRules) -> None:
        self._rules = rules
        words = [r"\s+".join(map(re.escape, p.lower().split())) for p in rules.phrases]
        self._asked = re.compile(r"\b(?:" + "|".join(words) + r")\b") if words else None

    def warm_up(self) -> None:
        """Nothing to load."""

    def check(self, text: str, context: Context) -> Verdict:
        if self._rules.enabled and self._asked is not None and self._asked.search(text.lower()):
            finding = Finding(self.name, "asked_for_person", "handoff")
            return Allow(text, findings=(finding,), handoff=ASKED)
        return Allow(text)

    def due(self, no_answers_in_a_row: int, blocks: int) -> str:
        """Why the conversation should go to a person now ("" when it should not)."""
        rules = self._rules
        if not rules.enabled:
            return ""
        if rules.after_no_answers and no_answers_in_a_row >= rules.after_no_answers:
            return f"{no_answers_in_a_row} answers in a row without an answer"
        if rules.after_blocks and blocks >= rules.after_blocks:
            return f"{blocks} messages blocked"
        return ""
