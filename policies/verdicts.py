"""What a policy decides about a piece of text. Policies return verdicts; they never raise."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Allow:
    """The text may go on, as `text` (possibly rewritten, e.g. with PII replaced).

    `entities` names the PII types that were found and replaced, in order of first
    appearance, for the audit record; it never holds the personal data itself.
    """

    text: str
    entities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    """The text must not go on. `reason` is for the audit log, `reply` is sent to the user."""

    reason: str
    reply: str


Verdict = Allow | Block
