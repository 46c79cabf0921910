"""The streaming output filter: redact the model's answer while it is still being written.

A language model streams tokens, and PII can be split across them ("4111 1111" then
" 1111 1111"). The filter holds text back until it reaches a safe cut, redacts everything it
holds in one pass (so detectors see the whole entity and its context), and releases only the
part before the cut. Nothing it releases is ever taken back or re-redacted.
"""

from __future__ import annotations

import re

from policies.pii import Redactor, splice

# Characters always kept back on a forced release: long enough to hold an unfinished e-mail
# address, card or phone number until the rest of it arrives.
TAIL_CHARS = 40

# End of a sentence: . ! or ? (and any closing quotes/brackets) followed by whitespace, or a
# newline. "3.5", "john.doe@x.com" and "example.com/a.b" have no whitespace after the dot.
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*\s|\n")
# "Mr. Smith", "J. R. Smith", "e.g. this": a dot after these does not end a sentence, and
# cutting there would release a name's first half before the detector sees the whole name.
_ABBREVIATION = re.compile(r"\b(?:(?i:Mr|Mrs|Ms|Mx|Dr|Prof|Sr|Jr|St)|[^\W\d_])\.$")
# A cut between two digit groups ("4111 | 1111", "+44 | 20", "(212) | 555") could split a
# number that is not yet long enough to be recognised.
_NUMBER_END = frozenset("0123456789)")
_NUMBER_START = frozenset("0123456789(+")


class StreamingRedactor:
    """Accumulates streamed text; `feed` returns only what is safe to release, redacted.

    Synchronous and stateful: one instance per answer, driven from one thread. Text is
    released at sentence ends; past `max_hold_chars` without one, it is released at the last
    whitespace at least `TAIL_CHARS` from the end that is not inside a detected entity. Text
    with no usable whitespace stays held until it gets some or `flush()` is called.
    """

    def __init__(self, redactor: Redactor, max_hold_chars: int) -> None:
        if max_hold_chars <= TAIL_CHARS:
            raise ValueError(f"max_hold_chars must exceed {TAIL_CHARS}")
        self._redactor = redactor
        self._max_hold = max_hold_chars
        self._held = ""
        # Entity types replaced in released text, in release order (for the audit).
        self.replaced: list[str] = []
        # The furthest cut already refused (inside an entity): no point redacting again
        # until a cut beyond it appears.
        self._refused = 0

    @property
    def held_chars(self) -> int:
        """How many characters are held back, not yet released."""
        return len(self._held)

    def feed(self, text: str) -> str:
        """Add streamed `text`; return the redacted text that may be shown now (maybe "")."""
        cuts = self.add(text)
        return self.release(cuts) if cuts else ""

    def add(self, text: str) -> list[int]:
        """Hold `text`; return where held text could be released now ([]: nowhere yet).

        Cheap (no redaction): callers may run it anywhere and send only `release` to the
        redactor's thread.
        """
        self._held += text
        cuts = self._sentence_cuts()
        if len(self._held) > self._max_hold:
            cuts |= self._forced_cuts()
        if not cuts or max(cuts) <= self._refused:
            return []
        return sorted(cuts)

    def flush(self) -> str:
        """The answer is complete: redact and return everything still held."""
        held, self._held, self._refused = self._held, "", 0
        if not held:
            return ""
        redaction = self._redactor.redact(held)
        self.replaced.extend(found.entity_type for found in redaction.entities)
        return redaction.text

    def _sentence_cuts(self) -> set[int]:
        cuts = set()
        for match in _BOUNDARY.finditer(self._held):
            if match.group().startswith(".") and _ABBREVIATION.search(
                self._held, 0, match.start() + 1
            ):
                continue
            cuts.add(match.end())
        return cuts

    def _forced_cuts(self) -> set[int]:
        held = self._held
        cuts = set()
        for match in re.finditer(r"\s+", held[: len(held) - TAIL_CHARS]):
            before = held[match.start() - 1 : match.start()]
            after = held[match.end() : match.end() + 1]
            if not (before and after and before in _NUMBER_END and after in _NUMBER_START):
                cuts.add(match.end())
        return cuts

    def release(self, cuts: list[int]) -> str:
        """Redact the held text and release it up to the last of `cuts` outside an entity."""
        redaction = self._redactor.redact(self._held)
        spans = redaction.entities
        allowed = [cut for cut in cuts if not any(f.start < cut < f.end for f in spans)]
        if not allowed:
            self._refused = cuts[-1]
            return ""
        cut = allowed[-1]
        released_spans = [f for f in spans if f.end <= cut]
        self.replaced.extend(found.entity_type for found in released_spans)
        released = splice(self._held[:cut], released_spans)
        self._held = self._held[cut:]
        self._refused = max(0, cuts[-1] - cut)
        return released
