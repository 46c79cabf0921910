"""Finding and replacing personal data (PII): the `Redactor` protocol and its implementations.

`PresidioRedactor` is what production runs (presidio + spaCy NER + the policy's own
recognizers). `PatternRedactor` is an honest regex-only redactor for fast unit tests; it
finds far less (no names, no built-in IBANs) but applies the same custom recognizers and
operators.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.errors import ConfigError
from policies.names import STREET_WORD, find_names, next_to_number
from policies.pii_rules import HASH_SALT_ENV, PiiPolicy, RecognizerSpec

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


def fold(text: str) -> tuple[str, list[int]]:
    """What the detectors read, and where each of its characters came from in `text`.

    Personal data hidden from a pattern with characters a reader never sees or reads as
    plain ones: format characters (zero-width spaces and joiners, soft hyphens, bidi marks)
    dropped; compatibility forms folded (NFKC: full-width `＠` and digits, ligatures, no-break
    spaces); any script's decimal digits made ASCII; dashes made `-`. The same folding the
    injection rules read (`policies.injection.normalise`), without lower-casing.
    """
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if char.isascii():
            out.append(char)
            origin.append(index)
            continue
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        if category == "Pd":
            folded = "-"
        elif char.isdecimal():
            folded = str(unicodedata.decimal(char))
        else:
            folded = unicodedata.normalize("NFKC", char)
        out.append(folded)
        origin.extend([index] * len(folded))
    return "".join(out), origin


def redact_folded(text: str, redact: Callable[[str], Redaction]) -> Redaction:
    """`redact` run on `fold(text)`, its spans mapped back onto `text`: what it finds in the
    folded text is replaced in the original, hidden characters inside a span with it."""
    if text.isascii():  # nothing to fold (most messages): no per-character pass
        return redact(text)
    folded, origin = fold(text)
    if folded == text:
        return redact(text)
    found = redact(folded).entities
    if not found:
        return Redaction(text, ())
    mapped = tuple(
        Found(f.entity_type, origin[f.start], origin[f.end - 1] + 1, f.score, f.replacement)
        for f in found
    )
    return Redaction(splice(text, mapped), mapped)


# Entity types found by judgement (spaCy's NER, the first-name list) rather than by a
# pattern with a checksum: in a help center's own text they are product and menu words far
# more often than people ("Gift cards", "select Download invoice", "Shipped").
JUDGED_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"})


class KeepingRedactor:
    """A redactor that leaves some of what `inner` finds alone: every finding of
    `skip_types`, and every span whose text (word for word, case and all) is in `known`.

    The help center's own words are not personal data: a passage is screened for structured
    PII only (a leaked e-mail address or card number), and an answer keeps any phrase the
    passages it was grounded in hold, while a customer's name it repeats is still replaced.
    """

    def __init__(
        self, inner: Redactor, *, skip_types: frozenset[str] = frozenset(), known: str = ""
    ) -> None:
        self.inner = inner
        self.skip_types = skip_types
        self.known = known

    def warm_up(self) -> None:
        self.inner.warm_up()

    def redact(self, text: str) -> Redaction:
        redaction = self.inner.redact(text)
        kept = tuple(f for f in redaction.entities if not self._keeps(text[f.start : f.end], f))
        if len(kept) == len(redaction.entities):
            return redaction
        return Redaction(splice(text, kept), kept)

    def _keeps(self, span: str, found: Found) -> bool:
        if found.entity_type in self.skip_types:
            return True
        if not self.known or not span.strip():
            return False
        return re.search(rf"(?<!\w){re.escape(span)}(?!\w)", self.known) is not None


def luhn_valid(digits: str) -> bool:
    """The payment-card checksum (ISO/IEC 7812) over a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """The IBAN checksum (ISO 13616, mod 97) over `text` with spaces and dashes removed."""
    compact = re.sub(r"[\s-]", "", text).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


def checksum_passes(checksum: str, span: str) -> bool:
    """Whether `span` passes a recognizer's `checksum` ("none" passes everything)."""
    if checksum == "luhn":
        digits = re.sub(r"\D", "", span)
        return 12 <= len(digits) <= 19 and luhn_valid(digits)
    if checksum == "iban":
        return iban_valid(span)
    return True


class Replacer:
    """What replaces a span under the policy's `operator` (replace, mask or hash)."""

    def __init__(self, policy: PiiPolicy) -> None:
        self._policy = policy

    def check(self) -> None:
        """Refuse `hash` without a salt: an unsalted hash of a phone number is reversible by
        hashing every phone number, so it would not hide anything. Refuse `pseudonym`
        without a vault key: the real values could not be kept, nor the tags kept apart."""
        if self._policy.operator == "hash" and not self._policy.salt():
            raise ConfigError(
                f"pii.operator hash needs a salt: set pii.hash_salt or ${HASH_SALT_ENV}"
            )
        if self._policy.operator == "pseudonym":
            from policies.pseudonyms import check_key

            check_key(self._policy.vault_key())

    def __call__(self, entity_type: str, value: str) -> str:
        policy = self._policy
        if policy.operator == "mask":
            # Last 4 as on a card receipt, but never more than a third of the value, so a
            # short name or PIN is not shown whole.
            keep = min(4, len(value) // 3)
            return "*" * (len(value) - keep) + value[len(value) - keep :]
        if policy.operator == "hash":
            digest = hashlib.sha256((policy.salt() + value).encode()).hexdigest()[:12]
            return policy.replacement.format(entity_type=f"{entity_type}:{digest}")
        return policy.replacement.format(entity_type=entity_type)


# Words that confirm a match when within CONTEXT_BEFORE words before it or CONTEXT_AFTER
# after it. Two after: customer messages and signatures put the label after the number
# ("555 0182 (mobile)", "9380 6377 office") as often as before it.
CONTEXT_BEFORE = 5
CONTEXT_AFTER = 2


class PresidioRedactor:
    """Presidio's analyzer (pattern recognizers + spaCy NER) and anonymizer, per a `PiiPolicy`.

    Sentence by sentence: each piece between the cuts `StreamingRedactor` would make is
    analyzed on its own, so redacting a whole text gives exactly what streaming it gives
    (bench/policy_pii.py, 2,000 generated sentences: 75 streamed differently when the whole
    text went to spaCy at once, 0 this way). The price: context words reach only within a
    sentence ("my credit card? 563208187515" loses "card"); a card scheme's first digits
    make up for it on most cards (1 of 184 still missed on the same sentences).
    """

    def __init__(self, policy: PiiPolicy) -> None:
        self._policy = policy
        self._replace = Replacer(policy)
        self._analyzer: Any = None
        self._anonymizer: Any = None
        self._first_names = (
            policy.first_names and policy.language == "en" and "PERSON" in policy.entities
        )

    def warm_up(self) -> None:
        """Import presidio and load the spaCy model (seconds). Refuses a bad policy with
        `ConfigError`: a model that is not installed, or a type no recognizer detects."""
        if self._analyzer is not None or not self._policy.enabled:
            return
        self._replace.check()
        if _NO_PSL_DOWNLOAD not in os.environ and "tldextract" in sys.modules:
            log.warning(
                "tldextract was imported before presidio; e-mail checks may use the network"
            )
        # tldextract (presidio's e-mail validation) reads this when it is first imported and
        # otherwise fetches the public suffix list from the internet on first use; empty means
        # "use the snapshot in the wheel". Offline the fetch fails or waits for a timeout;
        # online it tells a third party that this process handles e-mail addresses.
        os.environ.setdefault(_NO_PSL_DOWNLOAD, "")
        # Presidio logs the words around each match at DEBUG ("Context list is: want 4111…"):
        # raw personal data. Its loggers stay at WARNING whatever the app's log level.
        for name in ("presidio-analyzer", "presidio-anonymizer"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # ...and it warns on every message naming a number ("Entity CARDINAL is not mapped
        # to a Presidio entity"): spaCy labels we do not redact, on purpose.
        analyzer_log = logging.getLogger("presidio-analyzer")
        if not any(isinstance(f, _UnmappedLabels) for f in analyzer_log.filters):
            analyzer_log.addFilter(_UnmappedLabels())
        self._check_model_installed()
        if self._first_names:
            from policies import names

            names.warm_up()
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
        from presidio_anonymizer import AnonymizerEngine

        language = self._policy.language
        nlp_engine = _nlp_engine(language, self._policy.spacy_model)
        enhancer = _span_context_enhancer(LemmaContextAwareEnhancer)
        # Building the registry warns once per recognizer of another language (a dozen
        # lines at every start that say nothing wrong): quiet while it is built.
        presidio_log = logging.getLogger("presidio-analyzer")
        presidio_log.setLevel(logging.ERROR)
        try:
            analyzer = AnalyzerEngine(
                nlp_engine=nlp_engine,
                supported_languages=[language],
                context_aware_enhancer=enhancer,
            )
        finally:
            presidio_log.setLevel(logging.WARNING)
        for spec in self._policy.recognizers:
            analyzer.registry.add_recognizer(_presidio_recognizer(spec, language))
        _gate_phone_recognizer(analyzer.registry, language)
        # Presidio's own recognizers too: its phone recognizer's "call" and "number" were
        # never seen either.
        _unstop(nlp_engine, {w for r in analyzer.registry.recognizers for w in r.context or ()})
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
        """Analyze `text` and replace every entity of the policy's types at its threshold
        (read through `fold`: hidden and full-width characters do not hide anything)."""
        if not self._policy.enabled or not text.strip():
            return Redaction(text, ())
        return redact_folded(text, self._redact)

    def _redact(self, text: str) -> Redaction:
        if self._analyzer is None:
            raise RuntimeError("PresidioRedactor.warm_up() must run before redact()")
        results = self._analyze(text)
        results = [r for r in results if not self._policy.allows(text[r.start : r.end])]
        if not results:
            return Redaction(text, ())
        found = [self._found(text, item, results) for item in self._resolve(text, results)]
        found.sort(key=lambda item: item.start)
        return Redaction(splice(text, found), tuple(found))

    def _analyze(self, text: str) -> list[Any]:
        """Presidio's results for `text`, piece by piece, in positions of `text`."""
        language = self._policy.language
        pieces = [(a, b) for a, b in _pieces(self, text) if text[a:b].strip()]
        # One spaCy batch for all the pieces (nlp.pipe): cheaper than a call per piece.
        texts = [_unescaped(text[a:b]) for a, b in pieces]
        batch = self._analyzer.nlp_engine.process_batch(texts, language, batch_size=len(texts))
        results = []
        for (start, _), piece, (_, artifacts) in zip(pieces, texts, batch, strict=True):
            found = self._analyzer.analyze(
                text=piece,
                language=language,
                entities=list(self._policy.entities),
                score_threshold=self._policy.score_threshold,
                nlp_artifacts=artifacts,
            )
            found = _names(piece, found, self._first_names)
            results += [_shifted(result, start) for result in found]
        return results

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

    def _found(self, text: str, item: Any, results: list[Any]) -> Found:
        scores = [
            result.score
            for result in results
            if result.entity_type == item.entity_type
            and result.start < item.end
            and item.start < result.end
        ]
        replacement = self._replace(item.entity_type, text[item.start : item.end])
        return Found(item.entity_type, item.start, item.end, max(scores, default=0.0), replacement)


# "\n" and "\t" typed as two characters: pasted JSON, logs, copied signatures.
_ESCAPED_BREAK = re.compile(r"\\[nt]")


def _unescaped(piece: str) -> str:
    """`piece` as the detectors should read it: each escaped line break ("\\n", "\\t") made
    a real one plus a space (same length, so every position still holds). Glued on, it hid
    the words around it from spaCy ("Kvarda\\nPhone:" was one token: no name, no "phone"
    context). bench/policy_pii.py, 2,000 sentences (the generator pastes signatures with
    typed "\\n"): PHONE_NUMBER recall 0.772 -> 0.946, PERSON 0.649 -> 0.695."""
    return _ESCAPED_BREAK.sub(lambda match: ("\n" if match.group() == "\\n" else "\t") + " ", piece)


def _pieces(redactor: Redactor, text: str) -> list[tuple[int, int]]:
    """(start, end) of the pieces between the cuts the streaming filter makes in `text`."""
    from policies.stream import StreamingRedactor  # imports this module: import late

    # `add` only finds the cuts (sentence ends, newlines); it never calls the redactor.
    cuts = StreamingRedactor(redactor, max_hold_chars=sys.maxsize).add(text)
    bounds = [0, *cuts, len(text)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if a < b]


# Fewer digits than any phone number written in full has.
_PHONE_DIGITS = 7


def _gate_phone_recognizer(registry: Any, language: str) -> None:
    """Presidio's own phone recognizer (libphonenumber, "valid" in one of 8 regions), asked
    only about text with at least `_PHONE_DIGITS` digits, and rid of what no one would write
    as a phone number: under 7 digits ("1690" in a street address) or glued to a word, a time
    or a longer number ("17:50:02.814981"). It parsed every piece in 8 regions: 3.8 of the
    stage's ms on a 300-character message. The declared recognizers have these bounds in
    their patterns already."""
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class GatedPhoneRecognizer(PhoneRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> Any:
            if sum(char.isdigit() for char in text) < _PHONE_DIGITS:
                return []
            found = super().analyze(text, entities, nlp_artifacts)
            return [result for result in found if _plausible_phone(text, result)]

    for old in list(registry.recognizers):
        if type(old) is PhoneRecognizer and old.supported_language == language:
            registry.recognizers.remove(old)
            registry.add_recognizer(
                GatedPhoneRecognizer(
                    context=old.context,
                    supported_language=language,
                    supported_regions=old.supported_regions,
                    leniency=old.leniency,
                    name="PhoneRecognizer",  # the name audit and tests know
                )
            )


def _plausible_phone(piece: str, result: Any) -> bool:
    span = piece[result.start : result.end]
    before = piece[result.start - 1] if result.start else " "
    return sum(char.isdigit() for char in span) >= _PHONE_DIGITS and not (
        before.isalnum() or before in "+./:-_"
    )


_CAPITALIZED = re.compile(r"[^\W\d_][\w'-]{2,}")
# A name from the first-name list: above the default threshold (0.4), below spaCy's 0.85.
FIRST_NAME_SCORE = 0.5


def _names(piece: str, results: list[Any], first_names: bool = False) -> list[Any]:
    """Person results made more useful, within one piece (so streaming stays exact):

    - cut at a line break, and dropped when they hold a digit, "/" or "@", or end in a
      street word: no name does ("Slovenia 78582", "3848 Box", a URL);
    - every other whole-word occurrence in the piece of a found name's words (3 letters or
      more, capitalized) is a person too: "Anes ... assistant to Anes Ivarsson".
    - with `first_names`, names that `policies.names` finds and nothing else covers.
    Together with the default `person_after_cue` recognizer, on 2,000 generated sentences
    (bench/policy_pii.py): PERSON recall 0.626 -> 0.634-0.640, precision 0.696 -> 0.74.
    """
    from presidio_analyzer import RecognizerResult

    kept: list[Any] = []
    for result in results:
        if result.entity_type == "PERSON" and "\n" in piece[result.start : result.end]:
            # No name runs over a line break: "Eduard Kvarda\nPhone" is a name and a label.
            line = piece[result.start : result.end].split("\n", 1)[0].rstrip()
            result.end = result.start + len(line)
        span = piece[result.start : result.end].strip()
        if not span:
            continue
        if result.entity_type == "PERSON" and (
            re.search(r"[\d/@]", span)
            or STREET_WORD.search(span)
            or next_to_number(piece, result.start, result.end)
        ):
            continue
        kept.append(result)
    if first_names:
        for start, end in find_names(piece):
            if not any(r.start < end and start < r.end for r in kept):
                kept.append(RecognizerResult("PERSON", start, end, FIRST_NAME_SCORE))
    people = [r for r in kept if r.entity_type == "PERSON"]
    for person in people:
        words = _CAPITALIZED.findall(piece[person.start : person.end])
        for word in words:
            if not word[0].isupper():
                continue
            for match in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", piece):
                if not any(r.start < match.end() and match.start() < r.end for r in kept):
                    kept.append(
                        RecognizerResult("PERSON", match.start(), match.end(), person.score)
                    )
    return kept


def _shifted(result: Any, offset: int) -> Any:
    result.start += offset
    result.end += offset
    return result


def _unstop(nlp_engine: Any, words: Iterable[str]) -> None:
    """Take the recognizers' context words off spaCy's stop list. Presidio looks for context
    only among the non-stop words, and spaCy lists "call", "number", "name"... as stop words,
    so "Call me at 25 761546" never got its context (a test row failed until this)."""
    for nlp in getattr(nlp_engine, "nlp", {}).values():
        for word in words:
            for form in {word, word.lower(), word.capitalize(), word.upper()}:
                nlp.vocab[form].is_stop = False


def _span_context_enhancer(base: Any) -> Any:
    """Presidio's lemma context enhancer, counting the words after a match from its END.

    Presidio counts both ways from the match's first token, so the words "after" a number
    of several groups were its own groups: "51 196 19 99 office" never saw "office"
    (bench/policy_pii.py: 3 of the 5 phone numbers still missed, all labelled after)."""

    class SpanContextEnhancer(base):  # type: ignore[misc]
        def _extract_surrounding_words(
            self, nlp_artifacts: Any, word: str, start: int
        ) -> list[str]:
            if not nlp_artifacts.tokens:
                return [""]
            tokens, indices = nlp_artifacts.tokens, nlp_artifacts.tokens_indices
            first = self._find_index_of_match_token(word, start, tokens, indices)
            end = start + max(len(word.rstrip()), 1) - 1
            last = self._find_index_of_match_token(word, end, tokens, indices)
            lemmas, keywords = nlp_artifacts.lemmas, nlp_artifacts.keywords
            before = self._add_n_words_backward(first, CONTEXT_BEFORE, lemmas, keywords)
            after = self._add_n_words_forward(last, CONTEXT_AFTER, lemmas, keywords)
            return list(set(before + after))

    return SpanContextEnhancer(
        context_prefix_count=CONTEXT_BEFORE,
        context_suffix_count=CONTEXT_AFTER,
        context_matching_mode="whole_word",  # "cc" must not match "accepted"
    )


_NLP_ENGINES: dict[tuple[str, str], Any] = {}
_NLP_LOCK = threading.Lock()


def _nlp_engine(language: str, model: str) -> Any:
    """The loaded spaCy model behind presidio, one per (language, model) in the process.

    Every redactor shares it: each channel's policy section, and each policy reload (a new
    copy per reload held ~30 MB until the old engine was retired, and the allocator kept
    much of it after). What a policy adds to it (`_unstop`: its context words are never
    stop words) only ever widens what counts as context, for every policy alike.
    """
    with _NLP_LOCK:
        engine = _NLP_ENGINES.get((language, model))
        if engine is None:
            from presidio_analyzer.nlp_engine import NlpEngineProvider

            # A plain AnalyzerEngine() would try to download en_core_web_lg: name our model.
            engine = NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": language, "model_name": model}],
                }
            ).create_engine()
            _slim_pipeline(engine)
            _NLP_ENGINES[(language, model)] = engine
        return engine


def _slim_pipeline(nlp_engine: Any) -> None:
    """Run only spaCy's NER, with a rule of thumb for the lemmas presidio's context words need.

    Presidio reads tokens, lemmas (for context words) and entities. en_core_web_sm's NER has
    its own tok2vec, so the shared tok2vec, tagger, parser, attribute ruler and lemmatizer only
    served the lemmas: 9 of spaCy's 18 ms on a 300-character message. `_lemma` gives the forms
    context words are compared in ("cards" -> "card", "called" -> "call"). On 89 messages of
    250-350 characters, `redact` p50 44.5 -> 33.8 ms in one run; recall and precision of
    every type unchanged on bench/policy_pii.py's 2,000 sentences.
    """
    from spacy.language import Language

    if not Language.has_factory(_LEMMA_COMPONENT):
        Language.component(_LEMMA_COMPONENT, func=_set_lemmas)
    for nlp in getattr(nlp_engine, "nlp", {}).values():
        if "parser" in nlp.pipe_names:
            nlp.disable_pipe("parser")
        if "ner" not in nlp.pipe_names or _ner_listens(nlp):
            continue
        for name in ("tok2vec", "tagger", "attribute_ruler", "lemmatizer"):
            if name in nlp.pipe_names:
                nlp.disable_pipe(name)
        if _LEMMA_COMPONENT not in nlp.pipe_names:
            nlp.add_pipe(_LEMMA_COMPONENT, first=True)


_LEMMA_COMPONENT = "switchboard_lemma"


def _ner_listens(nlp: Any) -> bool:
    """Whether the NER reads a shared tok2vec (then that one must keep running)."""
    return any(
        "ner" in getattr(component, "listening_components", ())
        for name, component in nlp.pipeline
        if name in ("tok2vec", "transformer")
    )


def _set_lemmas(doc: Any) -> Any:
    for token in doc:
        token.lemma_ = _lemma(token.lower_)
    return doc


def _lemma(word: str) -> str:
    """A lowercase word's dictionary form, near enough for context words: plural "s"/"ies",
    "-ed" and "-ing" dropped. Its mistakes ("this" -> "thi") are words no one lists as
    context; spaCy's rule lemmatizer needed the tagger's part of speech for the same job."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _presidio_recognizer(spec: RecognizerSpec, language: str) -> Any:
    """A presidio `PatternRecognizer` for a recognizer declared in the policy file."""
    from presidio_analyzer import Pattern, PatternRecognizer

    class _Declared(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool | None:
            # None keeps the pattern's score (True would raise it to 1.0 and bypass the
            # context words); False drops the match.
            return None if checksum_passes(spec.checksum, pattern_text) else False

    patterns = [
        Pattern(name=f"{spec.name}_{index}", regex=item.regex, score=item.score)
        for index, item in enumerate(spec.patterns)
    ]
    return _Declared(
        supported_entity=spec.entity_type,
        name=spec.name,
        supported_language=language,
        patterns=patterns,
        context=list(spec.context),
        deny_list=list(spec.deny_list),
        deny_list_score=spec.deny_list_score,
    )


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


def _plausible(entity_type: str, span: str) -> bool:
    digits = re.sub(r"\D", "", span)
    if entity_type == "CREDIT_CARD":
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
    if entity_type == "PHONE_NUMBER":
        return 7 <= len(digits) <= 15
    return True


_WORD = re.compile(r"\w+")


def _has_context(text: str, start: int, end: int, words: frozenset[str]) -> bool:
    """A context word among the CONTEXT_BEFORE words before the span or CONTEXT_AFTER after
    it, compared as lemmas (`_lemma`, as the presidio pipeline compares them)."""
    before = _WORD.findall(text[:start])[-CONTEXT_BEFORE:]
    after = _WORD.findall(text[end:])[:CONTEXT_AFTER]
    return bool(words & {_lemma(word.lower()) for word in before + after})


def _declared(spec: RecognizerSpec) -> list[tuple[float, Any, bool]]:
    """(score, compiled pattern, is a pattern rather than the deny list) for one recognizer,
    with presidio's flags (case-blind, . matches newlines, ^/$ per line)."""
    import regex  # type: ignore[import-untyped]  # presidio's engine, so patterns agree

    flags = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
    compiled = [(item.score, regex.compile(item.regex, flags), True) for item in spec.patterns]
    if spec.deny_list:
        words = "|".join(map(regex.escape, spec.deny_list))
        deny = regex.compile(rf"(?:^|(?<=\W))({words})(?:(?=\W)|$)", flags)
        compiled.append((spec.deny_list_score, deny, False))
    return compiled


class PatternRedactor:
    """Regex-only redactor (e-mails, Luhn-valid cards, phone-like digit runs, IPv4, US SSNs)
    plus the policy's own recognizers (patterns, context words, checksums, deny lists).

    An in-memory stand-in for unit tests, honest about its limits: types it has no pattern
    for (IBAN_CODE..., and PERSON beyond the default `person_after_cue` recognizer) are
    silently not found. Same `Redactor` protocol as presidio. Context words are compared
    as lowercase words with a plural "s" dropped (presidio compares spaCy lemmas).
    Patterns declared in the policy run on presidio's `regex` engine here too.
    """

    def __init__(self, policy: PiiPolicy | None = None) -> None:
        self._policy = policy or PiiPolicy()
        self._replace = Replacer(self._policy)
        self._declared = [
            (spec, frozenset(_lemma(word.lower()) for word in spec.context), _declared(spec))
            for spec in self._policy.recognizers
        ]

    def warm_up(self) -> None:
        """Nothing to load; regexes compile at import. Refuses `hash` without a salt."""
        if self._policy.enabled:
            self._replace.check()

    def redact(self, text: str) -> Redaction:
        if not self._policy.enabled:
            return Redaction(text, ())
        return redact_folded(text, self._redact)

    def _redact(self, text: str) -> Redaction:
        policy = self._policy
        candidates = [
            (entity_type, score, match.start(), match.end())
            for entity_type, score, pattern in _PATTERNS
            if entity_type in policy.entities and score >= policy.score_threshold
            for match in pattern.finditer(text)
            if _plausible(entity_type, match.group())
        ]
        candidates += self._declared_candidates(text)
        candidates = [c for c in candidates if not policy.allows(text[c[2] : c[3]])]
        # Greedy by score, then length: the same outcome as presidio's conflict resolution
        # for the overlaps these patterns produce (one span wins whole, no partial trims).
        candidates.sort(key=lambda c: (-c[1], c[2] - c[3], c[2]))
        kept: list[Found] = []
        for entity_type, score, start, end in candidates:
            if all(end <= other.start or other.end <= start for other in kept):
                replacement = self._replace(entity_type, text[start:end])
                kept.append(Found(entity_type, start, end, score, replacement))
        kept.sort(key=lambda found: found.start)
        return Redaction(splice(text, kept), tuple(kept))

    def _declared_candidates(self, text: str) -> list[tuple[str, float, int, int]]:
        found = []
        for spec, context, compiled in self._declared:
            for score, pattern, checked in compiled:
                for match in pattern.finditer(text):
                    start, end = match.span()
                    if start == end or (
                        checked and not checksum_passes(spec.checksum, text[start:end])
                    ):
                        continue
                    if context and _has_context(text, start, end, context):
                        score = max(score + 0.35, 0.4)  # presidio's context boost
                    if score >= self._policy.score_threshold:
                        found.append((spec.entity_type, min(score, 1.0), start, end))
        return found


class _UnmappedLabels(logging.Filter):
    """Drops presidio's per-message warning about spaCy labels it does not map."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not mapped to a Presidio entity" not in str(record.msg)
