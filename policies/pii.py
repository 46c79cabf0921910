"""Finding and replacing personal data (PII): the `Redactor` protocol and its implementations.

`PresidioRedactor` is what production runs (presidio + spaCy NER). `PatternRedactor` is an
honest regex-only redactor for fast unit tests; it finds far less (no names, no IBANs).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.errors import ConfigError
from policies.pii_rules import PiiPolicy

log = logging.getLogger(__name__)

_NO_PSL_DOWNLOAD = "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"


@dataclass(frozen=True, slots=True)
class Found:
    """One piece of PII: its type, its span in the ORIGINAL text, the detector's confidence,
    and the text that replaced it (so callers can map positions into the redacted text)."""

    entity_type: str
    start: int
    end: int
    score: float
    replacement: str


@dataclass(frozen=True, slots=True)
class Redaction:
    """Redacted text and what was replaced, sorted by position, never overlapping."""

    text: str
    entities: tuple[Found, ...]

    @property
    def entity_types(self) -> tuple[str, ...]:
        """The types found, each once, in order of first appearance."""
        return tuple(dict.fromkeys(found.entity_type for found in self.entities))


class Redactor(Protocol):
    """Replaces PII in text. Sync and not thread-safe: callers keep it on one thread."""

    def warm_up(self) -> None:
        """Load whatever is heavy; called once before the first `redact`."""
        ...

    def redact(self, text: str) -> Redaction:
        """`text` with every PII span the policy names replaced."""
        ...


def splice(text: str, found: Iterable[Found]) -> str:
    """`text` with each (sorted, non-overlapping) span replaced by its replacement."""
    parts: list[str] = []
    position = 0
    for item in found:
        parts += (text[position : item.start], item.replacement)
        position = item.end
    parts.append(text[position:])
    return "".join(parts)


class PresidioRedactor:
    """Presidio's analyzer (pattern recognizers + spaCy NER) and anonymizer, per a `PiiPolicy`."""

    def __init__(self, policy: PiiPolicy) -> None:
        self._policy = policy
        self._analyzer: Any = None
        self._anonymizer: Any = None

    def warm_up(self) -> None:
        """Import presidio and load the spaCy model (seconds). Refuses a bad policy with
        `ConfigError`: a model that is not installed, or a type no recognizer detects."""
        if self._analyzer is not None or not self._policy.enabled:
            return
        if _NO_PSL_DOWNLOAD not in os.environ and "tldextract" in sys.modules:
            log.warning(
                "tldextract was imported before presidio; e-mail checks may use the network"
            )
        # tldextract (presidio's e-mail validation) reads this when it is first imported and
        # otherwise fetches the public suffix list from the internet on first use; empty means
        # "use the snapshot in the wheel". Offline the fetch fails or waits for a timeout;
        # online it tells a third party that this process handles e-mail addresses.
        os.environ.setdefault(_NO_PSL_DOWNLOAD, "")
        self._check_model_installed()
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        language = self._policy.language
        # A plain AnalyzerEngine() would try to download en_core_web_lg: name our model.
        nlp_engine = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": language, "model_name": self._policy.spacy_model}],
            }
        ).create_engine()
        analyzer = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=[language])
        missing = set(self._policy.entities) - set(analyzer.get_supported_entities(language))
        if missing:
            raise ConfigError(
                f"no presidio recognizer detects {', '.join(sorted(missing))} "
                f"for language {language!r}; remove them from pii.entities"
            )
        # presidio-anonymizer ships py.typed but leaves __init__ unannotated.
        anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        self._analyzer, self._anonymizer = analyzer, anonymizer

    def _check_model_installed(self) -> None:
        # Presidio calls `spacy.cli.download` for a model it cannot find: a typo in the policy
        # file would reach for the network. Refuse it here with a clear message instead.
        import spacy.util

        name = self._policy.spacy_model
        if not (spacy.util.is_package(name) or Path(name).exists()):
            raise ConfigError(f"spaCy model {name!r} (pii.spacy_model) is not installed")

    def redact(self, text: str) -> Redaction:
        """Analyze `text` and replace every entity of the policy's types at its threshold."""
        if not self._policy.enabled or not text.strip():
            return Redaction(text, ())
        if self._analyzer is None:
            raise RuntimeError("PresidioRedactor.warm_up() must run before redact()")
        results = self._analyzer.analyze(
            text=text,
            language=self._policy.language,
            entities=list(self._policy.entities),
            score_threshold=self._policy.score_threshold,
        )
        results = [r for r in results if not self._policy.allows(text[r.start : r.end])]
        if not results:
            return Redaction(text, ())
        found = [self._found(item, results) for item in self._resolve(text, results)]
        found.sort(key=lambda item: item.start)
        return Redaction(splice(text, found), tuple(found))

    def _resolve(self, text: str, results: list[Any]) -> list[Any]:
        """Presidio's own conflict resolution, returning spans in the original text."""
        from presidio_anonymizer.entities import ConflictResolutionStrategy, OperatorConfig

        # The default strategy (MERGE_SIMILAR_OR_CONTAINED) leaves partial overlaps of
        # different types in place; REMOVE_INTERSECTIONS trims the lower-scored one so the
        # spans tile. The "keep" operator leaves the text as is, so the spans it reports are
        # positions in the original text, which is what `Found` promises.
        kept = self._anonymizer.anonymize(
            text=text,
            analyzer_results=results,
            operators={"DEFAULT": OperatorConfig("keep")},
            conflict_resolution=ConflictResolutionStrategy.REMOVE_INTERSECTIONS,
        )
        return list(kept.items)

    def _found(self, item: Any, results: list[Any]) -> Found:
        scores = [
            result.score
            for result in results
            if result.entity_type == item.entity_type
            and result.start < item.end
            and item.start < result.end
        ]
        replacement = self._policy.replacement.format(entity_type=item.entity_type)
        return Found(item.entity_type, item.start, item.end, max(scores, default=0.0), replacement)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# (entity type, score, pattern). Scores order the types when spans overlap: a Luhn-valid
# card beats the phone-like digit run that also matches it.
_PATTERNS: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    (
        "EMAIL_ADDRESS",
        1.0,
        re.compile(r"[\w+-][\w.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    ),
    ("CREDIT_CARD", 1.0, re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")),
    ("IP_ADDRESS", 0.95, re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")),
    (
        "US_SSN",
        0.85,
        re.compile(r"(?<![\d-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
    ),
    (
        "PHONE_NUMBER",
        0.5,
        # optional +country code, optional (area code), then 2-4 digit groups
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?"
            r"\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"
        ),
    ),
)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _plausible(entity_type: str, span: str) -> bool:
    digits = re.sub(r"\D", "", span)
    if entity_type == "CREDIT_CARD":
        return 13 <= len(digits) <= 19 and _luhn_valid(digits)
    if entity_type == "PHONE_NUMBER":
        return 7 <= len(digits) <= 15
    return True


class PatternRedactor:
    """Regex-only redactor (e-mails, Luhn-valid cards, phone-like digit runs, IPv4, US SSNs).

    An in-memory stand-in for unit tests, honest about its limits: types it has no pattern
    for (PERSON, IBAN_CODE...) are silently not found. Same `Redactor` protocol as presidio.
    """

    def __init__(self, policy: PiiPolicy | None = None) -> None:
        self._policy = policy or PiiPolicy()

    def warm_up(self) -> None:
        """Nothing to load; regexes compile at import."""

    def redact(self, text: str) -> Redaction:
        policy = self._policy
        if not policy.enabled:
            return Redaction(text, ())
        candidates = [
            (entity_type, score, match.start(), match.end())
            for entity_type, score, pattern in _PATTERNS
            if entity_type in policy.entities and score >= policy.score_threshold
            for match in pattern.finditer(text)
            if _plausible(entity_type, match.group()) and not policy.allows(match.group())
        ]
        # Greedy by score, then length: the same outcome as presidio's conflict resolution
        # for the overlaps these patterns produce (one span wins whole, no partial trims).
        candidates.sort(key=lambda c: (-c[1], c[2] - c[3], c[2]))
        kept: list[Found] = []
        for entity_type, score, start, end in candidates:
            if all(end <= other.start or other.end <= start for other in kept):
                replacement = policy.replacement.format(entity_type=entity_type)
                kept.append(Found(entity_type, start, end, score, replacement))
        kept.sort(key=lambda found: found.start)
        return Redaction(splice(text, kept), tuple(kept))
