"""The output point: the model's answer, checked while it streams.

`OutputFilter` runs the PII redaction in `StreamingRedactor` (which holds text back only
until it is proven clean) and then, on each piece it releases, the output stages that judge
finished text: `links` rewrites, `toxicity` may block, `limits` cuts the answer. A piece
reaches the user only after every stage passed it, so nothing shown is ever a prefix of
something later redacted or blocked. After a block, `blocked` holds the verdict and nothing
more is released: the user gets the policy's reply instead of the rest of the answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from policies.base import Context, TextPolicy
from policies.stream import StreamingRedactor
from policies.verdicts import Block, Finding


class OutputFilter:
    """One answer's filter. Synchronous; driven from the policy engine's worker thread."""

    def __init__(
        self,
        redactor: StreamingRedactor,
        stages: Sequence[TextPolicy],
        context: Context,
        max_chars: int = 0,
    ) -> None:
        self.stream = redactor
        self._stages = stages
        self.context = context
        self._max_chars = max_chars
        self._released = 0
        self.blocked: Block | None = None
        self.truncated = False
        self.findings: list[Finding] = []

    @property
    def done(self) -> bool:
        """True once the answer was blocked or cut: stop generating."""
        return self.blocked is not None or self.truncated

    def add(self, text: str) -> list[int]:
        """Hold streamed `text`; where it could be released (cheap, no model calls)."""
        return [] if self.done else self.stream.add(text)

    def release(self, cuts: list[int]) -> str:
        """Redact and release up to the best cut, then pass it through the stages."""
        return self._judge(self.stream.release(cuts))

    def flush(self) -> str:
        """The answer ended: everything still held, redacted and judged."""
        tail = self.stream.flush()
        return "" if self.done else self._judge(tail)

    def _judge(self, text: str) -> str:
        if self.stream.replaced:
            for kind, count in Counter(self.stream.replaced).items():
                self.findings.append(Finding("pii", kind, "redact", entity_type=kind, count=count))
            self.stream.replaced.clear()
        if not text or self.done:
            return ""
        for stage in self._stages:
            verdict = stage.check(text, self.context)
            self.findings.extend(verdict.findings)
            if isinstance(verdict, Block):
                self.blocked = verdict
                return ""
            text = verdict.text
        if self._max_chars and self._released + len(text) > self._max_chars:
            text = _cut(text, self._max_chars - self._released)
            self.truncated = True
            self.findings.append(Finding("limits", "max_answer_chars", "rewrite"))
        self._released += len(text)
        return text


def _cut(text: str, room: int) -> str:
    """At most `room` characters of `text`, ending at a word, with an ellipsis."""
    if room <= 0:
        return "…"
    head = text[:room]
    if room < len(text) and not text[room].isspace() and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip() + " …"
