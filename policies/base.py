"""The contract every policy stage keeps: `TextPolicy`, the `Context` it is called with,
and the strict base for the stages' sections of the policy file.

A stage is a small class that looks at one piece of text at one point of the turn and
returns a `Verdict` (`policies.verdicts`): `Allow` (maybe with the text rewritten), or
`Block` with the reply the user gets. A stage never raises: a detector that fails returns
what its section's `on_error` says (by default `Block` for safety stages) with an "error"
finding, so a broken model degrades the turn, not the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from policies.verdicts import Verdict

Point = Literal["input", "retrieval", "output", "storage"]
POINTS: tuple[Point, ...] = ("input", "retrieval", "output", "storage")


class Strict(BaseModel):
    """Base of every section of the policy file: unknown keys are errors (a misspelt key
    silently ignored is a policy not applied), and a loaded policy is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Context:
    """Where a text is being checked. `channel` is "widget", "slack", "webhook", "api"...;
    `conversation` and `user` are opaque ids (never personal data); `ip` may be empty.
    `acted`: a business action really ran for this answer (the `claims` stage lets its
    reply say what was done); `quoted`: the answer is the help center's own sentences (what
    they say was done, the help center says, not the bot)."""

    point: Point
    channel: str = "api"
    conversation: str = ""
    user: str = ""
    ip: str = ""
    acted: bool = False
    quoted: bool = False


class TextPolicy(Protocol):
    """One stage of the policy pipeline.

    `check` is synchronous and may be CPU-bound: the engine calls every stage on its own
    worker thread, one call at a time, so a stage needs no locking of its own. It must not
    raise. `warm_up` loads models (seconds) and may raise `ConfigError` for a policy that
    cannot work (a model that is not installed); it runs before the stage serves.
    """

    @property
    def name(self) -> str:
        """The stage's name in the policy file and the audit log ("pii", "injection"...)."""
        ...

    def warm_up(self) -> None: ...

    def check(self, text: str, context: Context) -> Verdict: ...


@runtime_checkable
class StartsEarly(Protocol):
    """A stage that can begin on the message as written, before the stages ahead of it have
    finished: `start` returns the check to call when its turn comes (`TopicStage` embeds the
    message on the embedding thread while the PII stage runs)."""

    def start(self, text: str) -> TextPolicy: ...


@runtime_checkable
class Abandonable(Protocol):
    """A started check that can be dropped when an earlier stage has blocked the message."""

    def abandon(self) -> None: ...
