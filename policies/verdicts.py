"""What a policy decides about a piece of text. Policies return verdicts; they never raise.

Every verdict carries `findings`: what each stage noticed and did, for the audit log and the
metrics. A finding names the stage, the rule, the action and (for PII) the entity type and
how many were found: never the text that was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["redact", "block", "rewrite", "flag", "handoff", "error"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One decision of one stage. `rule` is the stage's own name for what matched (an entity
    type, "heuristic:ignore-previous", a topic name, "rate:per_user"...); `score` is the
    detector's confidence when it has one. Never holds the matched text."""

    stage: str
    rule: str
    action: Action
    entity_type: str = ""
    count: int = 1
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    """The text may go on, as `text` (possibly rewritten, e.g. with PII replaced).

    `entities` names the PII types that were found and replaced, in order of first
    appearance, for the audit record; it never holds the personal data itself. `handoff`,
    when not empty, is why the conversation should go to a person (the policy's trigger).
    """

    text: str
    entities: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    handoff: str = ""


@dataclass(frozen=True, slots=True)
class Block:
    """The text must not go on. `reason` is for the audit log, `reply` is sent to the user;
    `handoff`, when not empty, is why the conversation should go to a person now (a customer
    who speaks of hurting themselves)."""

    reason: str
    reply: str
    findings: tuple[Finding, ...] = ()
    handoff: str = ""


Verdict = Allow | Block
